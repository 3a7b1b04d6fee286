"""Console sign-in over real gRPC: session tokens, sign-out, idle time-out, durable lock-out, audit."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import grpc
import pytest

from tests.conftest import REPO
from shanakht.v1 import identity_pb2 as pb

PASSWORD = "correct horse battery"


def create_user(server, user: str, role: str, password: str = PASSWORD, galleries: str = "") -> dict:
    """Through the CLI, as an operator would (the password on standard input)."""
    args = [sys.executable, "-m", "cli", "user", "create", user, "--role", role, "--password-stdin", "--json",
            "--data-dir", str(server.data_dir)]
    if galleries:
        args += ["--galleries", galleries]
    done = subprocess.run(args, input=password + "\n", capture_output=True, text=True, cwd=REPO, check=True)
    return json.loads(done.stdout)


def sign_in(server, user: str, password: str) -> pb.SignInResponse:
    return server.stub(None).SignIn(pb.SignInRequest(user=user, password=password), timeout=30)


def refusal(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value


def test_a_user_signs_in_uses_the_token_like_a_key_and_signs_out(server_factory):
    server = server_factory(extra_args=["--session-idle-s", "600"])
    made = create_user(server, "inspector.khan", "investigator")
    assert made["role"] == "investigator" and made["galleries"] == ["*"]

    signed = sign_in(server, "inspector.khan", PASSWORD)
    assert signed.role == "investigator" and list(signed.galleries) == ["*"] and signed.name == "inspector.khan"
    assert signed.session_token.startswith("shs.") and signed.expires_at > time.time() + 500
    session = server.stub(signed.session_token)
    assert {g.name for g in session.ListGalleries(pb.ListGalleriesRequest(), timeout=10).galleries} >= {"watchlist", "inmates"}
    # The role's rules hold for a session as for a key: an investigator may not delete.
    denied = refusal(lambda: session.DeleteSubject(pb.DeleteSubjectRequest(gallery="watchlist", subject_id="x"), timeout=10))
    assert denied.code() == grpc.StatusCode.PERMISSION_DENIED

    session.SignOut(pb.SignOutRequest(), timeout=10)
    after = refusal(lambda: session.ListGalleries(pb.ListGalleriesRequest(), timeout=10))
    assert after.code() == grpc.StatusCode.UNAUTHENTICATED

    # Both ends of the session are in the audit log, under the user's name.
    exported = subprocess.run([sys.executable, "-m", "cli", "audit", "export", "--data-dir", str(server.data_dir)],
                              cwd=REPO, check=True, capture_output=True, text=True).stdout
    records = [r for r in map(json.loads, exported.splitlines()) if r.get("rpc") in ("SignIn", "SignOut")]
    assert [(r["rpc"], r["name"], r["status"]) for r in records] == [
        ("SignIn", "inspector.khan", "OK"), ("SignOut", "inspector.khan", "OK")]

    # The token is stored only hashed: its secret half is nowhere in the store file.
    secret = signed.session_token.split(".")[2].encode()
    assert secret not in (server.data_dir / "shanakht.sqlite3").read_bytes()
    wal = server.data_dir / "shanakht.sqlite3-wal"
    assert not wal.exists() or secret not in wal.read_bytes()


def test_sign_in_is_the_only_call_open_without_a_credential(server_factory):
    server = server_factory()
    anonymous = server.stub(None)
    for call in (lambda: anonymous.ListGalleries(pb.ListGalleriesRequest(), timeout=10),
                 lambda: anonymous.SignOut(pb.SignOutRequest(), timeout=10)):
        assert refusal(call).code() == grpc.StatusCode.UNAUTHENTICATED
    wrong = refusal(lambda: sign_in(server, "nobody", "whatever-it-is"))
    assert wrong.code() == grpc.StatusCode.UNAUTHENTICATED  # answered by SignIn itself, not refused for lack of a key


def test_unknown_user_and_wrong_password_look_the_same_and_five_failures_lock_durably(server_factory):
    server = server_factory()
    create_user(server, "officer.bano", "intake")
    unknown = refusal(lambda: sign_in(server, "officer.nobody", PASSWORD))
    wrong = [refusal(lambda: sign_in(server, "officer.bano", "not the password")) for _ in range(4)]
    assert unknown.code() == grpc.StatusCode.UNAUTHENTICATED and unknown.details() == wrong[0].details()
    assert all(w.details() == "unknown user or wrong password" for w in wrong)

    fifth = refusal(lambda: sign_in(server, "officer.bano", "not the password"))
    assert fifth.code() == grpc.StatusCode.UNAUTHENTICATED and "locked" in fifth.details()
    # Locked: even the right password is refused, with the distinct message.
    locked = refusal(lambda: sign_in(server, "officer.bano", PASSWORD))
    assert "locked" in locked.details() and locked.details() != wrong[0].details()

    server.stop()
    server.start()  # the count is in the store: a restart does not lift the lock
    assert "locked" in refusal(lambda: sign_in(server, "officer.bano", PASSWORD)).details()

    # An operator lifts it; the user signs in; every attempt is in the audit log, which still verifies.
    subprocess.run([sys.executable, "-m", "cli", "user", "unlock", "officer.bano", "--data-dir", str(server.data_dir)],
                   cwd=REPO, check=True, capture_output=True)
    assert sign_in(server, "officer.bano", PASSWORD).role == "intake"
    server.stop()
    exported = subprocess.run([sys.executable, "-m", "cli", "audit", "export", "--data-dir", str(server.data_dir)],
                              cwd=REPO, check=True, capture_output=True, text=True).stdout
    outcomes = [r["outcome"] for r in map(json.loads, exported.splitlines()) if r.get("rpc") == "SignIn"]
    assert outcomes == ["failed"] * 6 + ["locked out", "locked", "locked", "signed in"]
    verified = subprocess.run([sys.executable, "-m", "cli", "audit", "verify", "--data-dir", str(server.data_dir)],
                              cwd=REPO, capture_output=True, text=True)
    assert verified.returncode == 0, verified.stdout
    assert "not the password" not in exported and PASSWORD not in exported


def test_a_session_expires_when_idle_and_use_keeps_it_alive(server_factory):
    server = server_factory(extra_args=["--session-idle-s", "5"])
    create_user(server, "inspector.idle", "investigator")
    session = server.stub(sign_in(server, "inspector.idle", PASSWORD).session_token)
    for _ in range(3):  # used every 2.5 s for 7.5 s: longer than the idle time-out, never idle that long
        time.sleep(2.5)
        session.ListGalleries(pb.ListGalleriesRequest(), timeout=10)
    time.sleep(5.5)
    expired = refusal(lambda: session.ListGalleries(pb.ListGalleriesRequest(), timeout=10))
    assert expired.code() == grpc.StatusCode.UNAUTHENTICATED and "expired" in expired.details()
