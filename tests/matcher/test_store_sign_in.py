"""Both stores keep console users, sessions and failed sign-ins the same way, across a reopen."""

from __future__ import annotations

import time

import pytest

from matcher.errors import AlreadyExists
from matcher.store.base import Principal, SessionRecord
from matcher.store.redis import RedisStore
from matcher.store.sqlite import SQLiteStore
from tests.redis_server import RedisServer


@pytest.fixture(params=["sqlite", "redis"])
def opener(request, tmp_path):
    if request.param == "sqlite":
        yield lambda: SQLiteStore(tmp_path / "s.sqlite3")
        return
    server = RedisServer(tmp_path / "redis").start()
    yield lambda: RedisStore(server.url, "test")
    server.kill()


def user(key_id: str, name: str) -> Principal:
    return Principal(key_id, name, "investigator", ("*",), time.time(), user=name, password_hash="$argon2id$x")


def test_users_are_unique_by_name_and_found_by_it(opener):
    store = opener()
    store.put_principal(user("u1", "khan"))
    with pytest.raises(AlreadyExists):
        store.put_principal(user("u2", "khan"))
    store.close()
    store = opener()
    found = store.principal_for_user("khan")
    assert found is not None and found.key_id == "u1" and found.password_hash == "$argon2id$x"
    assert store.principal_for_user("") is None and store.principal_for_user("nobody") is None
    store.revoke_principal("u1", time.time())
    assert store.principal_for_user("khan") is None
    store.close()


def test_sessions_are_kept_moved_and_ended(opener):
    store = opener()
    now = time.time()
    store.put_session(SessionRecord("s1", "u1", b"\x01" * 32, now, now + 60))
    store.touch_session("s1", now + 120)
    store.touch_session("s1", now + 90)  # never moves back
    store.close()
    store = opener()
    got = store.get_session("s1")
    assert got is not None and got.token_hash == b"\x01" * 32 and got.expires_at == pytest.approx(now + 120, abs=0.01)
    store.delete_session("s1")
    store.delete_session("s1")  # twice is fine
    assert store.get_session("s1") is None
    store.close()


def test_failures_count_lock_and_survive_a_reopen(opener):
    store = opener()
    until = time.time() + 900
    counts = [store.count_sign_in_failure("khan", 3, until).failures for _ in range(2)]
    assert counts == [1, 2]
    locked = store.count_sign_in_failure("khan", 3, until)
    assert locked.failures == 0 and locked.locked_until == pytest.approx(until, abs=0.01)
    store.close()
    store = opener()
    assert store.sign_in_state("khan").locked_until == pytest.approx(until, abs=0.01)
    assert store.sign_in_state("other").failures == 0
    store.clear_sign_in_failures("khan")
    assert store.sign_in_state("khan").locked_until == 0
    store.close()
