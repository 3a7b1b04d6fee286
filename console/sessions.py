"""Browser sessions: a signed cookie naming a server-side session; CSRF tokens; idle time-out.

The cookie carries only a random session id, signed (itsdangerous) so that a guessed or altered id
is refused before any lookup.  Everything else, the gRPC session token above all, stays in this
process's memory: a stolen cookie is useless once the session ends or idles out, and the console
never writes a credential to disk.  Each session has its own CSRF token, checked on every POST.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from itsdangerous import BadSignature, Signer

COOKIE = "shanakht_console"


@dataclass
class ConsoleSession:
    """One browser's state.  ``token`` is the gRPC session token once signed in, else empty."""

    session_id: str
    csrf: str
    last_seen: float
    lang: str = "en"
    token: str = ""
    user: str = ""
    name: str = ""
    role: str = ""
    galleries: tuple[str, ...] = ()
    notice: Any = None  # a message for the next page (e.g. why the user was signed out): a message id or a Notice
    #: Searches made in this session (id → purpose), so images of a search are fetched for its purpose.
    purposes: dict[str, str] = field(default_factory=dict)

    @property
    def signed_in(self) -> bool:
        return bool(self.token)


class SessionStore:
    """In-memory sessions keyed by id; idle ones expire after ``idle_s``."""

    def __init__(self, secret: bytes, idle_s: float) -> None:
        self._signer = Signer(secret, salt="shanakht-console-session")
        self.idle_s = idle_s
        self._sessions: dict[str, ConsoleSession] = {}
        self._lock = threading.Lock()

    def new(self, lang: str = "en", notice: Any = None) -> ConsoleSession:
        session = ConsoleSession(secrets.token_urlsafe(24), secrets.token_urlsafe(24), time.monotonic(), lang, notice=notice)
        with self._lock:
            self._sweep()
            self._sessions[session.session_id] = session
        return session

    def cookie_value(self, session: ConsoleSession) -> str:
        return self._signer.sign(session.session_id).decode()

    def from_cookie(self, value: str | None) -> tuple[ConsoleSession | None, ConsoleSession | None]:
        """(live session, session that just idled out) for a cookie value; (None, None) if unknown or forged."""
        if not value:
            return None, None
        try:
            session_id = self._signer.unsign(value).decode()
        except BadSignature:
            return None, None
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                return None, None
            now = time.monotonic()
            if now - session.last_seen > self.idle_s:
                del self._sessions[session_id]
                return None, session
            session.last_seen = now
            return session, None

    def drop(self, session: ConsoleSession) -> None:
        with self._lock:
            self._sessions.pop(session.session_id, None)

    def _sweep(self) -> None:
        now = time.monotonic()
        for session_id in [k for k, s in self._sessions.items() if now - s.last_seen > self.idle_s]:
            del self._sessions[session_id]


def csrf_ok(session: ConsoleSession | None, submitted: object) -> bool:
    """Whether a form's CSRF token is this session's (constant-time)."""
    return session is not None and isinstance(submitted, str) and bool(submitted) and hmac.compare_digest(session.csrf, submitted)
