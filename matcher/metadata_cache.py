"""Candidate metadata kept in memory, so a search does not read the store for it.

Every Identify answer carries each candidate's metadata (name, alert level).  Reading it from
SQLite cost more CPU than the FAISS search at 1M templates under 8 clients: the audit log's
commits, several per millisecond, invalidate each reader connection's page cache, so every
lookup re-read its pages.  Metadata changes only with an enrolment or a deletion, and both pass
through ``Gallery``, which drops the subject's entry here.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

Metadata = dict[str, str]


class MetadataCache:
    """Bounded subject → metadata map, invalidated per subject; safe against a racing write.

    A lookup that missed loads from the store outside the lock; if any invalidation happened
    meanwhile its result is returned but not kept, so a write that lands during the load can
    never leave its old metadata behind in the cache.
    """

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._entries: dict[str, Metadata] = {}
        self._lock = threading.Lock()
        self._generation = 0

    def get_many(self, subject_ids: Sequence[str], load: Callable[[list[str]], dict[str, Metadata]]) -> dict[str, Metadata]:
        """Metadata of the subjects that exist; ``load`` reads the ones not cached from the store."""
        found: dict[str, Metadata] = {}
        with self._lock:
            generation = self._generation
            for subject in subject_ids:
                entry = self._entries.get(subject)
                if entry is not None:
                    found[subject] = entry
        missing = [s for s in dict.fromkeys(subject_ids) if s not in found]
        if not missing:
            return found
        loaded = load(missing)
        found.update(loaded)
        with self._lock:
            if generation == self._generation:
                for subject, metadata in loaded.items():
                    if len(self._entries) >= self.capacity:
                        del self._entries[next(iter(self._entries))]  # oldest first
                    self._entries[subject] = metadata
        return found

    def invalidate(self, subject_id: str) -> None:
        with self._lock:
            self._entries.pop(subject_id, None)
            self._generation += 1

    def __len__(self) -> int:
        return len(self._entries)
