"""``BackgroundRebuild``: replace an index's search structure with one built aside, losing no write.

Training and filling a new structure (an IVF over millions of entries) takes minutes, and
searches and writes must not wait for it.  So the build starts from a copy taken under the
index's read lock and runs off the lock, on a background thread; every write made meanwhile is
journaled and replayed into the new structure, which is then swapped in under the write lock.

Both index kinds use it: ``matcher.index.VectorIndex`` (exact → IVF-PQ, retrained as it grows)
and ``matcher.finger.index.FingerIndex`` (binary flat → binary IVF).  What an index copies,
builds, journals and swaps is its own (``RebuildSteps``); this module orders the steps, owns the
thread and the journal, and decides when to build again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Generic, TypeVar

from matcher.locks import ReadWriteLock

log = logging.getLogger(__name__)

Contents = TypeVar("Contents")  # an index's copy of what it holds, the input of a build
Built = TypeVar("Built")  # the new structure
Entry = TypeVar("Entry")  # one journaled write, in whatever form the index replays


def _nothing(built: object, seconds: float) -> None:
    """The default ``finished`` step: nothing to release."""


@dataclass(frozen=True)
class RebuildSteps(Generic[Contents, Built, Entry]):
    """What an index supplies to ``BackgroundRebuild``, and under which of its locks each step runs."""

    # No lock: does the index want a new structure now (a threshold crossed, grown, too many tombstones)?
    needed: Callable[[], bool]
    # Under the read lock: a consistent copy of the contents (no writer runs, searches go on).
    copy: Callable[[], Contents]
    # No lock: the new structure, from the copy.
    build: Callable[[Contents], Built]
    # Journaled writes, in order, into the new structure (under the write lock, or off it while catching up).
    replay: Callable[[Built, list[Entry]], None]
    # Under the write lock: make the new structure the one searched.
    swap: Callable[[Built], None]
    # No lock, after every attempt: the swapped-in structure and the build's seconds, or ``None`` after a failure.
    finished: Callable[[Built | None, float], None] = _nothing


class BackgroundRebuild(Generic[Contents, Built, Entry]):
    """Runs an index's ``RebuildSteps``: at most one build at a time, on a background thread or inline.

    A failed build is logged and the index stays on its current structure; it is not retried in a
    loop (a build that fails every time must not keep a core busy), only when a later write asks
    again.  After a successful swap the index is asked again whether another build is needed (it
    may have doubled meanwhile); the same thread goes on, so ``running`` and ``wait`` span the chain.
    """

    def __init__(
        self,
        lock: ReadWriteLock,
        steps: RebuildSteps[Contents, Built, Entry],
        *,
        background: Callable[[], bool],
        name: str,
        failure: str,
        catch_up_above: int | None = None,
        logger: logging.Logger = log,
    ) -> None:
        """``background`` is read at each request (False: build inline, for tests and tools).

        ``catch_up_above``: while more journaled writes than this wait, replay them off the write
        lock (``None``: replay all of them under it).  ``failure`` is logged with the exception.
        """
        self._lock = lock
        self._steps = steps
        self._background = background
        self._name = name
        self._failure = failure
        self._catch_up_above = catch_up_above
        self._log = logger
        self._guard = threading.Lock()  # writers on several threads may all see the threshold crossed
        self._active = False  # a build runs, on its thread or inline
        self._thread: threading.Thread | None = None
        self._deferred = False
        self._deferrals = 0
        self._journal: list[Entry] | None = None

    def record(self, entry: Entry) -> None:
        """Journal a write, under the index's write lock: the running build's copy does not hold it."""
        if self._journal is not None:
            self._journal.append(entry)

    def request(self) -> None:
        """Build if the index needs it and no build runs; call after a write, outside the index's locks."""
        if self._deferred or not self._steps.needed():
            return
        with self._guard:
            if self._active:
                return
            self._active = True
            if self._background():
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                try:
                    self._thread.start()
                except RuntimeError:
                    self._active, self._thread = False, None
                    raise
                return
        self._run()

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """No build until the block ends, then one if needed: a bulk load builds once, not once per doubling."""
        with self._guard:
            self._deferrals += 1
            self._deferred = True
        try:
            yield
        finally:
            with self._guard:  # several loads may overlap: building waits for the last one
                self._deferrals -= 1
                self._deferred = self._deferrals > 0
        self.request()

    @property
    def active(self) -> bool:
        """A build runs (background or inline): the index's copy for it must stay valid."""
        return self._active

    @property
    def running(self) -> bool:
        """A background build is running: searches go on against the current structure, one core is busy."""
        return self._thread is not None

    def wait(self, timeout: float | None = None) -> None:
        """Block until a background build (if any) has been swapped in or ``timeout`` passed: tests and benchmarks."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _run(self) -> None:
        done = False
        try:
            while not done:
                built = self._build_once()
                with self._guard:  # checked and cleared together, or a request made meanwhile could be lost
                    done = not built or self._deferred or not self._steps.needed()
                    if done:
                        self._active, self._thread = False, None
        finally:
            if not done:  # a step raised past its own handling: the index must not stay "rebuilding" for good
                with self._guard:
                    self._active, self._thread = False, None

    def _build_once(self) -> bool:
        """Copy, build, replay, swap; ``False`` (logged, nothing swapped) when a step failed."""
        swapped = None
        started = time.monotonic()
        try:
            with self._lock.reading():
                # No writer runs while we copy and start the journal, so copy + journal miss nothing;
                # searches go on.
                contents = self._steps.copy()
                journal: list[Entry] = []
                self._journal = journal
            started = time.monotonic()
            built = self._steps.build(contents)
            del contents  # the copy may be the size of the index: gone before the swap
            replayed = self._catch_up(built, journal)
            with self._lock.writing():
                self._steps.replay(built, journal[replayed:])
                self._journal = None
                self._steps.swap(built)
            swapped = built
        except Exception:
            self._log.exception(self._failure)
            with self._lock.writing():
                self._journal = None
        self._steps.finished(swapped, time.monotonic() - started)
        return swapped is not None

    def _catch_up(self, built: Built, journal: list[Entry]) -> int:
        """Replay the writes made during the build while searches and writes go on; how many were replayed.

        The write lock is then held only for the last few and the swap.
        """
        replayed = 0
        while self._catch_up_above is not None and len(journal) - replayed > self._catch_up_above:
            end = len(journal)
            self._steps.replay(built, journal[replayed:end])
            replayed = end
        return replayed


class RebuildingIndex:
    """What both index kinds do alike around their own storage: sequence bookkeeping and rebuild status.

    A subclass sets ``self._lock``, ``self._rebuild`` and ``self.applied_sequence`` and implements
    ``_remove_locked(subject_id) -> int`` (called under the write lock).
    """

    _lock: ReadWriteLock
    _rebuild: BackgroundRebuild
    applied_sequence: int

    def _remove_locked(self, subject_id: str) -> int:
        raise NotImplementedError

    def remove_subject(self, subject_id: str, sequence: int = 0) -> int:
        """Remove every template of a subject (as of change ``sequence``); returns how many were removed."""
        with self._lock.writing():
            removed = self._remove_locked(subject_id)
            self.applied_sequence = max(self.applied_sequence, sequence)
            return removed

    def mark_applied(self, sequence: int) -> None:
        """Every change up to ``sequence`` is reflected (one that did not concern this index included)."""
        with self._lock.writing():
            self.applied_sequence = max(self.applied_sequence, sequence)

    def wait_for_build(self, timeout: float | None = None) -> None:
        """Block until a background build (if any) has been swapped in: tests and benchmarks."""
        self._rebuild.wait(timeout)

    @property
    def rebuilding(self) -> bool:
        """A background build is running: searches go on against the current structure, one core is busy."""
        return self._rebuild.running
