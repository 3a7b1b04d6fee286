"""The audit trail's group commit: every waiting call's record is durable and chained, or the call fails closed."""

from __future__ import annotations

import threading

import pytest

from matcher.errors import StoreUnavailable
from matcher.store.audit import verify
from matcher.store.sqlite import SQLiteStore
from transport.audit import AuditTrail


def test_concurrent_calls_each_get_their_own_durable_record_in_one_chain(tmp_path):
    store = SQLiteStore(tmp_path / "s.sqlite3")
    trail = AuditTrail(store)
    got: dict[tuple[int, int], int] = {}

    def caller(worker: int) -> None:
        for i in range(50):
            got[(worker, i)] = trail.record({"rpc": "Identify", "worker": worker, "i": i}).sequence

    threads = [threading.Thread(target=caller, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    records = SQLiteStore(tmp_path / "s.sqlite3").audit_records()
    assert len(records) == 400 and sorted(got.values()) == list(range(1, 401))
    assert all((r.data["worker"], r.data["i"]) in got and got[(r.data["worker"], r.data["i"])] == r.sequence for r in records)
    assert verify(records, store.audit_head()) == []


class FailingStore(SQLiteStore):
    failing = True

    def append_audit(self, payloads):
        if self.failing:
            raise OSError("disk full")
        return super().append_audit(payloads)


def test_a_failed_write_fails_its_calls_closed_and_the_next_write_goes_through(tmp_path):
    store = FailingStore(tmp_path / "s.sqlite3")
    trail = AuditTrail(store)
    with pytest.raises(StoreUnavailable, match="disk full"):
        trail.record({"rpc": "Identify"})
    store.failing = False
    assert trail.record({"rpc": "Identify"}).sequence == 1


def test_records_nobody_waited_for_are_written_at_close(tmp_path):
    store = SQLiteStore(tmp_path / "s.sqlite3")
    trail = AuditTrail(store)
    trail.submit({"rpc": "EnrollStream", "i": 1})
    trail.submit({"rpc": "EnrollStream", "i": 2})
    trail.close()
    assert [r.data["i"] for r in store.audit_records()] == [1, 2]
