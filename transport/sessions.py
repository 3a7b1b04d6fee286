"""Console users: password sign-in to short-lived session tokens, with a durable lock-out.

One identity authority: a console user is a principal in the server's key store, with a role and
a gallery scope like an API key, plus a sign-in name and an argon2id password hash.  Signing in
exchanges the password for a random session token that is sent as ``x-api-key`` like a key, so
authorization, scopes, redaction and audit are the same code for people and programs.  The token
is stored only as a SHA-256 (256 bits of entropy need no slow hash); the password hash is slow
on purpose (argon2id), because people choose guessable passwords.

Failed sign-ins are counted per user name in the store (so a restart, or another replica, does
not reset them), unknown names included: a lock that only real accounts could reach would tell
an attacker which names exist, and so would a faster answer for them (an unknown name is checked
against a dummy hash).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from matcher.errors import InvalidArgument
from matcher.store.base import Principal, SessionRecord, Store
from transport.audit import AuditTrail, sign_in_payload
from transport.auth import ROLES, SESSION_PREFIX, Authenticator
from transport.errors import Unauthenticated

MAX_USER_LENGTH = 128
#: The one answer for an unknown user and for a wrong password, so that neither can be told apart.
WRONG_CREDENTIALS = "unknown user or wrong password"

_hasher = PasswordHasher()  # argon2id, RFC 9106's second recommended parameters (64 MiB, t=3)


def hash_password(password: str) -> str:
    """The argon2id PHC string of ``password`` (salted; the parameters travel inside it)."""
    if len(password) < 8:
        raise InvalidArgument("password", "must have at least 8 characters")
    return _hasher.hash(password)


def _valid_user(user: str) -> str:
    user = user.strip()
    if not user or len(user) > MAX_USER_LENGTH or any(c.isspace() for c in user):
        raise InvalidArgument("user", f"must be 1–{MAX_USER_LENGTH} characters without spaces")
    return user


def create_user(
    store: Store, user: str, role: str, password: str, galleries: Sequence[str] = (), display_name: str = ""
) -> Principal:
    """Create a console user (a principal that signs in with a password and has no API key)."""
    if role not in ROLES:
        raise InvalidArgument("role", f"{role!r} is not a role; choose one of {', '.join(sorted(ROLES))}")
    user = _valid_user(user)
    principal = Principal(
        key_id="u" + secrets.token_hex(6),
        name=display_name or user,
        role=role,
        galleries=tuple(galleries) or ROLES[role].default_galleries,
        created_at=time.time(),
        user=user,
        password_hash=hash_password(password),
    )
    store.put_principal(principal)
    return principal


@dataclass(frozen=True)
class SignedIn:
    """A successful sign-in: the token to send as ``x-api-key`` and who it stands for."""

    token: str
    expires_at: float
    principal: Principal


class SessionAuthority:
    """Signs users in and out, and resolves session tokens to their principals.

    ``idle_s``: a token unused this long expires (each use moves the expiry, written to the store at
    most every ``idle_s / 10`` s, 30 s at most, so a busy session costs few writes).
    """

    def __init__(self, store: Store, audit: AuditTrail, idle_s: float, max_failures: int, lockout_s: float) -> None:
        self.store = store
        self.audit = audit
        self.idle_s = idle_s
        self.max_failures = max_failures
        self.lockout_s = lockout_s
        self._refresh_s = min(30.0, idle_s / 10)
        self._dummy_hash: str | None = None
        self._lock = threading.Lock()

    def _dummy(self) -> str:
        with self._lock:
            if self._dummy_hash is None:
                self._dummy_hash = _hasher.hash(secrets.token_urlsafe(16))
            return self._dummy_hash

    @staticmethod
    def _locked_message(user: str, until: float) -> str:
        return (f"account {user!r} is locked after repeated failed sign-ins until "
                f"{time.strftime('%H:%M:%S UTC', time.gmtime(until))}; try again then or ask an administrator")

    def sign_in(self, user: str, password: str, peer: str) -> SignedIn:
        """A new session for ``user``; ``Unauthenticated`` (audited) on any failure."""
        user = user.strip()[: MAX_USER_LENGTH + 1]
        now = time.time()
        state = self.store.sign_in_state(user)
        if state.locked_until > now:
            self.audit.record(sign_in_payload("locked", user, None, peer))
            raise Unauthenticated(self._locked_message(user, state.locked_until))
        if state.locked_until:  # a lock that ran out: start counting afresh
            self.store.clear_sign_in_failures(user)
        principal = self.store.principal_for_user(user) if user else None
        if not self._password_matches(principal, password):
            state = self.store.count_sign_in_failure(user, self.max_failures, now + self.lockout_s)
            self.audit.record(sign_in_payload("failed", user, principal, peer))
            if state.locked_until:
                self.audit.record(sign_in_payload("locked out", user, principal, peer))
                raise Unauthenticated(self._locked_message(user, state.locked_until))
            raise Unauthenticated(WRONG_CREDENTIALS)
        assert principal is not None  # _password_matches is False without one
        if state.failures:
            self.store.clear_sign_in_failures(user)
        session_id, secret = "s" + secrets.token_hex(8), secrets.token_urlsafe(32)
        expires = now + self.idle_s
        self.store.put_session(SessionRecord(session_id, principal.key_id, _token_digest(session_id, secret), now, expires))
        self.audit.record(sign_in_payload("signed in", user, principal, peer, session_id))
        return SignedIn(f"{SESSION_PREFIX}.{session_id}.{secret}", expires, principal)

    def _password_matches(self, principal: Principal | None, password: str) -> bool:
        try:
            if principal is None or not principal.password_hash:
                _hasher.verify(self._dummy(), password)  # same work as for a real user
                return False
            return _hasher.verify(principal.password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def resolve(self, session_id: str, secret: str) -> Principal:
        """The principal of a live session; refreshes its idle expiry."""
        record = self.store.get_session(session_id)
        if record is None or not hmac.compare_digest(record.token_hash, _token_digest(session_id, secret)):
            raise Unauthenticated("unknown or ended session; sign in again")
        now = time.time()
        if record.expires_at <= now:
            self.store.delete_session(session_id)
            raise Unauthenticated(f"session expired after {self.idle_s / 60:g} minutes unused; sign in again")
        principal = self.store.get_principal(record.key_id)
        if principal is None or principal.revoked_at:
            raise Unauthenticated("the session's user was removed; ask an administrator")
        if record.expires_at - now < self.idle_s - self._refresh_s:
            self.store.touch_session(session_id, now + self.idle_s)
        return principal

    def sign_out(self, token: str, authenticator: Authenticator) -> None:
        """End the session of ``token`` (an API key is not a session: nothing to end)."""
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != SESSION_PREFIX:
            raise InvalidArgument("x-api-key", "SignOut ends a session; this call was made with an API key")
        self.store.delete_session(parts[1])
        authenticator.forget(token)


def _token_digest(session_id: str, secret: str) -> bytes:
    return hashlib.sha256(f"{session_id}.{secret}".encode()).digest()
