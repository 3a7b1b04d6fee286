"""Who may call what: API keys and client certificates, roles, gallery scopes, rate limits.

Keys are 256-bit random secrets shown once at creation and stored only as a salted SHA-256:
with that much entropy a slow password hash buys nothing, and the check stays cheap on every
call.  Roles follow the table in DESIGN.md; a key's gallery scope narrows its role further.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from matcher.errors import InvalidArgument
from transport.errors import PermissionDenied, RateLimited, Unauthenticated
from matcher.store.base import Principal, Store

KEY_PREFIX = "shk"
SESSION_PREFIX = "shs"  # console session tokens (transport.sessions), sent as x-api-key like keys
ALL_GALLERIES = "*"
#: Methods every authenticated principal may call, whatever its role (ending one's own session).
EVERY_ROLE = frozenset({"SignOut"})


@dataclass(frozen=True)
class RolePolicy:
    """What a role may call, where by default, and what it may see."""

    methods: frozenset[str]
    default_galleries: tuple[str, ...]
    purpose_required: frozenset[str] = frozenset()
    sees_metadata: bool = True


#: Adjudication (``matcher.adjudication``): search records, examiners' decisions, the blind-verification queue.
CASEWORK = frozenset({"ListSearches", "GetSearch", "RecordDecision", "VerificationQueue"})

#: Gallery-wide de-duplication runs (``transport.deduplication``): admins run them, supervisors read them.
DEDUPLICATION = frozenset({"StartDeduplication", "WatchDeduplication", "CancelDeduplication", "ListDeduplicationJobs", "GetDeduplicationReport"})
DEDUPLICATION_READ = frozenset({"WatchDeduplication", "ListDeduplicationJobs", "GetDeduplicationReport"})

EVERY_METHOD = frozenset(
    {"Enroll", "EnrollStream", "EnrollTransaction", "Identify", "Verify", "ExtractTemplate", "GetSubject", "DeleteSubject",
     "CreateGallery", "ListGalleries", "GalleryStats", "GetImage", "GetOversightReport"}
) | CASEWORK | DEDUPLICATION

ROLES: dict[str, RolePolicy] = {
    # Hotel Eye and checkpoints: identify against watchlists, see no names or metadata.
    "checkpoint": RolePolicy(frozenset({"Identify"}), ("watchlist",), sees_metadata=False),
    # Investigators: search everything, always for a stated case or FIR; see evidence images; decide candidates.
    "investigator": RolePolicy(
        frozenset({"Identify", "Verify", "GetSubject", "ExtractTemplate", "ListGalleries", "GetImage"}) | CASEWORK,
        (ALL_GALLERIES,),
        purpose_required=frozenset({"Identify", "Verify", "GetSubject", "GetImage"}),
    ),
    # Supervisors: an investigator's rights, everyone's search records, resolve examiners' disputes, read oversight.
    "supervisor": RolePolicy(
        frozenset({"Identify", "Verify", "GetSubject", "ExtractTemplate", "ListGalleries", "GetImage", "GetOversightReport"}) | CASEWORK | DEDUPLICATION_READ,
        (ALL_GALLERIES,),
        purpose_required=frozenset({"Identify", "Verify", "GetSubject", "GetImage"}),
    ),
    # Prison intake: enrol and check inmates; the records and enrolled images of its own galleries
    # (a possible duplicate is shown beside the new inmate).
    "intake": RolePolicy(
        frozenset({"Enroll", "EnrollTransaction", "Verify", "Identify", "ExtractTemplate", "GetSubject", "GetImage"}), ("inmates",),
        purpose_required=frozenset({"GetSubject", "GetImage"}),
    ),
    # An oversight body: aggregates and the audit chain's status; never an image, a name or metadata.
    "oversight": RolePolicy(frozenset({"GetOversightReport"}), (ALL_GALLERIES,), sees_metadata=False),
    "admin": RolePolicy(EVERY_METHOD, (ALL_GALLERIES,)),
}


def _digest(salt: bytes, secret: str) -> bytes:
    return hashlib.sha256(salt + secret.encode()).digest()


def create_key(store: Store, role: str, galleries: Sequence[str] = (), name: str = "", cert_subject: str = "") -> tuple[Principal, str]:
    """Create a principal; returns it and the API key to hand over (shown once, never stored)."""
    if role not in ROLES:
        raise InvalidArgument("role", f"{role!r} is not a role; choose one of {', '.join(sorted(ROLES))}")
    key_id = "k" + secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    salt = secrets.token_bytes(16)
    principal = Principal(
        key_id=key_id,
        name=name or f"{role}-{key_id}",
        role=role,
        galleries=tuple(galleries) or ROLES[role].default_galleries,
        created_at=time.time(),
        key_salt=salt,
        key_hash=_digest(salt, secret),
        cert_subject=cert_subject,
    )
    store.put_principal(principal)
    return principal, f"{KEY_PREFIX}.{key_id}.{secret}"


class TokenBucket:
    """Per-principal rate limit: ``rate`` calls per second, bursts up to ``burst``."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self._state: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, who: str) -> None:
        if self.rate <= 0:
            return
        now = time.monotonic()
        with self._lock:
            tokens, last = self._state.get(who, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens < 1.0:
                self._state[who] = (tokens, now)
                raise RateLimited(f"rate limit of {self.rate:g} calls/s exceeded for {who}; retry later")
            self._state[who] = (tokens - 1.0, now)


class Authenticator:
    """Resolves a call's credential to a principal; verified keys are cached briefly (revocation ≤ ``ttl`` s)."""

    def __init__(self, store: Store, ttl: float = 2.0) -> None:
        self.store = store
        self.ttl = ttl
        #: Resolves console session tokens (``transport.sessions.SessionAuthority``); None: sessions refused.
        self.sessions = None
        self._cache: dict[str, tuple[Principal, float]] = {}
        self._lock = threading.Lock()

    def from_key(self, key: str) -> Principal:
        fingerprint = hashlib.sha256(key.encode()).hexdigest()
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(fingerprint)
        if cached and cached[1] > now:
            return cached[0]
        parts = key.split(".")
        if len(parts) == 3 and parts[0] == SESSION_PREFIX and self.sessions is not None:
            principal = self.sessions.resolve(parts[1], parts[2])
        else:
            if len(parts) != 3 or parts[0] != KEY_PREFIX:
                raise Unauthenticated("malformed API key")
            principal = self.store.get_principal(parts[1])
            if principal is None or principal.revoked_at or not principal.key_hash:
                raise Unauthenticated("unknown or revoked API key")
            if not hmac.compare_digest(principal.key_hash, _digest(principal.key_salt, parts[2])):
                raise Unauthenticated("unknown or revoked API key")
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[fingerprint] = (principal, now + self.ttl)
        return principal

    def forget(self, key: str) -> None:
        """Drop a credential from the cache at once (a session that was signed out)."""
        with self._lock:
            self._cache.pop(hashlib.sha256(key.encode()).hexdigest(), None)

    def from_certificate(self, subject: str) -> Principal:
        principal = self.store.principal_for_cert(subject)
        if principal is None:
            raise Unauthenticated(f"client certificate {subject!r} is not registered; create a principal for it")
        return principal


def authorize(principal: Principal, method: str, galleries: Sequence[str] | None, purpose: str | None) -> None:
    """Raise ``PermissionDenied`` unless the principal's role and scope allow the call.

    ``galleries`` is None for calls that touch no gallery, and empty for calls that touch all.
    """
    policy = ROLES.get(principal.role)
    if policy is None or (method not in policy.methods and method not in EVERY_ROLE):
        raise PermissionDenied(f"role {principal.role!r} may not call {method}")
    if galleries is not None and ALL_GALLERIES not in principal.galleries:
        if not galleries:
            raise PermissionDenied(f"{method} without a gallery reaches every gallery; role {principal.role!r} is limited to {', '.join(principal.galleries)}")
        outside = [g for g in galleries if g not in principal.galleries]
        if outside:
            raise PermissionDenied(f"gallery {outside[0]!r} is outside the scope of key {principal.key_id} ({', '.join(principal.galleries)})")
    if method in policy.purpose_required and not (purpose or "").strip():
        raise InvalidArgument("purpose", f"role {principal.role!r} must state a purpose (case or FIR reference) for {method}")
