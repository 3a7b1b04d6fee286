"""Both stores honour one contract: atomic group commit, change log, replace, reopen."""

from __future__ import annotations

import numpy as np
import pytest

from matcher.errors import AlreadyExists, NotFound
from matcher.store.base import GalleryRecord, ModalitySpec, NewEnrollment
from matcher.store.redis import RedisStore
from matcher.store.sqlite import SQLiteStore
from matcher.templates import Modality, Template
from tests.conftest import unit_vectors
from tests.redis_server import RedisServer

FACE = ModalitySpec(Modality.FACE, "m", 8)


def templates(n, seed=0):
    return tuple(Template(Modality.FACE, "m", v) for v in unit_vectors(n, 8, seed))


@pytest.fixture(params=["sqlite", "redis"])
def opener(request, tmp_path):
    """A function that (re)opens the same store; Redis runs as a real redis-server with AOF."""
    if request.param == "sqlite":
        yield lambda: SQLiteStore(tmp_path / "s.sqlite3")
        return
    server = RedisServer(tmp_path / "redis").start()
    yield lambda: RedisStore(server.url, "test")
    server.kill()


@pytest.fixture
def store(opener):
    s = opener()
    s.create_gallery(GalleryRecord("g", 1e-4, (FACE,)))
    yield s
    s.close()


def test_sqlite_wal_and_full_sync(tmp_path):
    store = SQLiteStore(tmp_path / "s.sqlite3")
    assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_group_commit_items_fail_alone(store):
    results = store.enroll(
        [
            NewEnrollment("g", "a", templates(2)),
            NewEnrollment("g", "a", templates(1, 1)),
            NewEnrollment("missing", "b", templates(1, 2)),
            NewEnrollment("g", "c", templates(1, 3), {"name": "C"}),
        ]
    )
    assert isinstance(results[1], AlreadyExists) and isinstance(results[2], NotFound)
    assert results[0].sequence < results[3].sequence
    assert store.count_subjects("g") == 2
    assert store.get_subject("g", "c").metadata == {"name": "C"}
    assert len(store.get_subject("g", "a").templates) == 2


def test_change_log_and_replace(store):
    (first,) = store.enroll([NewEnrollment("g", "a", templates(2))])
    (second,) = store.enroll([NewEnrollment("g", "a", templates(1, 5), replace=True)])
    assert second.replaced_template_ids == first.template_ids
    sequence, removed = store.delete_subject("g", "a")
    assert removed == second.template_ids
    changes = store.changes_since(0)
    assert [c.op for c in changes] == ["gallery", "upsert", "upsert", "delete"]
    assert changes[-1].sequence == sequence == store.last_sequence()
    assert store.templates_by_id(first.template_ids) == []
    with pytest.raises(NotFound):
        store.delete_subject("g", "a")


def test_survives_reopen(opener):
    store = opener()
    store.create_gallery(GalleryRecord("g", 1e-3, (FACE,), "d"))
    (result,) = store.enroll([NewEnrollment("g", "a", templates(1))])
    store.close()
    reopened = opener()
    assert reopened.galleries() == [GalleryRecord("g", 1e-3, (FACE,), "d")]
    (stored,) = reopened.templates_by_id(result.template_ids)
    np.testing.assert_array_equal(stored.vector, templates(1)[0].vector)
    reopened.close()


def test_two_writers_appending_to_one_audit_log_keep_one_chain(opener):
    """Each store caches the log's head; a write by another process in between must be relinked, not forked."""
    from matcher.store.audit import verify

    first, second = opener(), opener()
    first.append_audit([{"rpc": "Identify", "n": 1}])
    second.append_audit([{"rpc": "Identify", "n": 2}, {"rpc": "Identify", "n": 3}])
    first.append_audit([{"rpc": "Identify", "n": 4}])  # its cached head is two records old
    records = first.audit_records()
    assert [r.data["n"] for r in records] == [1, 2, 3, 4]
    assert verify(records, first.audit_head()) == []
    first.close()
    second.close()
