"""BackgroundRebuild on its own: a toy index whose "structure" is a set of numbers, built aside and swapped in."""

from __future__ import annotations

import threading

import pytest

from matcher.locks import ReadWriteLock
from matcher.rebuild import BackgroundRebuild, RebuildSteps


class ToyIndex:
    """Holds numbers; a build copies them into a new set (optionally waiting for ``release``, or failing)."""

    def __init__(self, background: bool = True, catch_up_above: int | None = None, wanted: int = 1) -> None:
        self.lock = ReadWriteLock()
        self.contents: set[int] = set()
        self.live: set[int] = set()  # what searches would use: replaced only by a swap
        self.wanted = wanted  # how many more builds the index asks for
        self.started, self.release = threading.Event(), threading.Event()
        self.release.set()
        self.fail = False
        self.attempts = self.swaps = 0
        self.replays: list[list[tuple[str, int]]] = []
        self.finished: list[tuple[set[int] | None, float]] = []
        self.rebuild: BackgroundRebuild[frozenset[int], set[int], tuple[str, int]] = BackgroundRebuild(
            self.lock,
            RebuildSteps(self._needed, self._copy, self._build, self._replay, self._swap, self._finished),
            background=lambda: background,
            name="toy-build",
            failure="toy build failed",
            catch_up_above=catch_up_above,
        )

    def write(self, op: str, value: int) -> None:
        with self.lock.writing():
            (self.contents.add if op == "add" else self.contents.discard)(value)
            (self.live.add if op == "add" else self.live.discard)(value)
            self.rebuild.record((op, value))

    def _needed(self) -> bool:
        return self.wanted > 0

    def _copy(self) -> frozenset[int]:
        return frozenset(self.contents)

    def _build(self, copy: frozenset[int]) -> set[int]:
        self.attempts += 1
        self.started.set()
        assert self.release.wait(30)
        if self.fail:
            raise RuntimeError("no memory for the new structure")
        return set(copy)

    def _replay(self, fresh: set[int], entries: list[tuple[str, int]]) -> None:
        self.replays.append(list(entries))
        for op, value in entries:
            (fresh.add if op == "add" else fresh.discard)(value)

    def _swap(self, fresh: set[int]) -> None:
        self.live = fresh
        self.swaps += 1
        self.wanted -= 1

    def _finished(self, fresh: set[int] | None, seconds: float) -> None:
        self.finished.append((fresh, seconds))


def test_writes_made_during_a_background_build_are_replayed_into_the_new_structure():
    index = ToyIndex(catch_up_above=3)
    for value in range(10):
        index.write("add", value)
    index.release.clear()
    index.rebuild.request()
    assert index.started.wait(30) and index.rebuild.running
    for value in range(100, 110):  # more than catch_up_above: some are replayed before the write lock
        index.write("add", value)
    index.write("remove", 3)
    index.write("remove", 104)
    before = index.live
    index.release.set()
    index.rebuild.wait(30)
    assert not index.rebuild.running and index.swaps == 1 and index.live is not before
    assert index.live == index.contents == (set(range(10)) | set(range(100, 110))) - {3, 104}
    assert [entry for replay in index.replays for entry in replay][-2:] == [("remove", 3), ("remove", 104)]
    assert len(index.replays) >= 2  # caught up off the lock, then the rest under it


@pytest.mark.parametrize("background", [True, False])
def test_a_failing_build_stays_on_the_current_structure_and_is_not_retried_in_a_loop(background):
    index = ToyIndex(background=background)
    index.write("add", 1)
    current = index.live
    index.fail = True
    index.rebuild.request()  # the index keeps asking (wanted stays 1): only a new request may retry
    index.rebuild.wait(30)
    assert not index.rebuild.running and index.attempts == 1 and index.swaps == 0
    assert index.live is current and [fresh for fresh, _ in index.finished] == [None]
    index.write("add", 2)  # journaling stopped with the failed build
    index.fail = False
    index.rebuild.request()  # a later write asks again
    index.rebuild.wait(30)
    assert index.attempts == 2 and index.swaps == 1 and index.live == {1, 2}
    assert index.replays == [[]]


def test_after_a_swap_the_index_is_asked_again_and_builds_once_more_on_the_same_thread():
    index = ToyIndex(wanted=2)
    index.release.clear()
    index.rebuild.request()
    assert index.started.wait(30)
    index.rebuild.request()  # a build runs already: no second one alongside
    index.release.set()
    index.rebuild.wait(30)
    assert not index.rebuild.running and index.attempts == 2 and index.swaps == 2


def test_no_build_while_deferred_then_one_inline_when_background_builds_are_off():
    index = ToyIndex(background=False)
    with index.rebuild.deferred():
        for value in range(3):
            index.write("add", value)
            index.rebuild.request()
        assert index.attempts == 0
    assert index.attempts == 1 and index.swaps == 1 and index.live == {0, 1, 2}  # done when the block ends
    assert not index.rebuild.running
