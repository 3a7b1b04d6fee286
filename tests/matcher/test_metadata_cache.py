"""The in-memory candidate metadata: served from memory, never stale after a write."""

from __future__ import annotations

from matcher.metadata_cache import MetadataCache


class Store:
    def __init__(self, rows: dict[str, dict[str, str]]) -> None:
        self.rows = rows
        self.loads: list[list[str]] = []

    def load(self, subjects: list[str]) -> dict[str, dict[str, str]]:
        self.loads.append(subjects)
        return {s: self.rows[s] for s in subjects if s in self.rows}


def test_a_second_lookup_is_served_from_memory_and_an_invalidated_subject_is_read_again():
    store = Store({"a": {"name": "A"}, "b": {"name": "B"}})
    cache = MetadataCache()
    assert cache.get_many(["a", "b", "gone"], store.load) == {"a": {"name": "A"}, "b": {"name": "B"}}
    assert cache.get_many(["a", "b"], store.load) == {"a": {"name": "A"}, "b": {"name": "B"}}
    assert store.loads == [["a", "b", "gone"]]
    store.rows["a"] = {"name": "A2"}
    cache.invalidate("a")
    assert cache.get_many(["a", "b"], store.load)["a"] == {"name": "A2"}
    assert store.loads[-1] == ["a"]


def test_a_load_overlapping_a_write_is_returned_but_not_kept():
    store = Store({"a": {"name": "old"}})
    cache = MetadataCache()

    def load_then_write(subjects):
        found = store.load(subjects)  # read before the write committed...
        store.rows["a"] = {"name": "new"}
        cache.invalidate("a")  # ...which is applied before the read returns
        return found

    assert cache.get_many(["a"], load_then_write) == {"a": {"name": "old"}}
    assert cache.get_many(["a"], store.load) == {"a": {"name": "new"}}


def test_the_cache_holds_at_most_its_capacity_oldest_out_first():
    store = Store({f"s{i}": {} for i in range(5)})
    cache = MetadataCache(capacity=3)
    cache.get_many([f"s{i}" for i in range(5)], store.load)
    assert len(cache) == 3
    cache.get_many(["s4"], store.load)
    cache.get_many(["s0"], store.load)
    assert store.loads[1:] == [["s0"]]
