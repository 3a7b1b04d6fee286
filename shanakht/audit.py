"""The audit trail: who searched whom, why, and what they were shown.

Records are written durably *before* the response leaves the server (fail closed: a call whose
record cannot be written is answered UNAVAILABLE).  One writer thread group-commits whatever
records are waiting, so auditing costs one fsync per batch, not one per call.
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from typing import IO, Any

from matcher.errors import StoreUnavailable
from matcher.store.audit import AuditRecord, verify
from matcher.store.base import Store

log = logging.getLogger(__name__)


def probe_hash(serialized: bytes) -> str:
    """A fingerprint of the probe: lets an auditor match a record to a probe without storing biometrics."""
    return hashlib.sha256(serialized).hexdigest()


class AuditTrail:
    """Queue + writer thread over ``Store.append_audit``."""

    def __init__(self, store: Store, batch: int = 512, wait_s: float = 5.0) -> None:
        self.store = store
        self.batch = batch
        self.wait_s = wait_s
        self._queue: queue.Queue[tuple[dict, Future] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._write, name="audit-writer", daemon=True)
        self._thread.start()

    def submit(self, payload: dict[str, Any]) -> Future:
        """Queue one record; the future resolves once it is durable (lets a stream wait for many at once)."""
        payload.setdefault("time", time.time())
        future: Future = Future()
        self._queue.put((payload, future))
        return future

    def record(self, payload: dict[str, Any]) -> AuditRecord:
        """Append one record and return once it is durable."""
        return self.wait(self.submit(payload))

    def wait(self, future: Future) -> AuditRecord:
        try:
            return future.result(timeout=self.wait_s)
        except StoreUnavailable:
            raise
        except Exception as error:
            raise StoreUnavailable(f"the audit log could not be written ({error}); the call was not answered") from error

    def _write(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            items = [item]
            while len(items) < self.batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)
                    break
                items.append(nxt)
            try:
                records = self.store.append_audit([payload for payload, _ in items])
                for (_, future), record in zip(items, records):
                    future.set_result(record)
            except Exception as error:  # every waiting call fails closed
                log.error("audit write failed", extra={"error": str(error), "records": len(items)})
                for _, future in items:
                    future.set_exception(error)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)


def all_records(store: Store, after: int = 0) -> Iterator[AuditRecord]:
    while True:
        page = store.audit_records(after)
        if not page:
            return
        yield from page
        after = page[-1].sequence


def verify_log(store: Store) -> tuple[int, list[str]]:
    """(records checked, problems); no problems means the chain is intact up to the head."""
    records = list(all_records(store))
    return len(records), verify(records, store.audit_head())


def export(store: Store, since: float, out: IO[str]) -> int:
    """Write records made at or after ``since`` (Unix time) as JSON lines; returns how many."""
    count = 0
    for record in all_records(store):
        data = record.data
        if float(data.get("time", 0)) >= since:
            out.write(json.dumps({"sequence": record.sequence, "hash": record.hash, "prev_hash": record.prev_hash, **data}, sort_keys=True) + "\n")
            count += 1
    return count
