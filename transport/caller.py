"""Who is calling, for the handlers that keep a record of who did what (search records, decisions).

The access interceptor resolves the principal before the handler runs, on the same thread; it
binds it here so that a handler can ask without the principal being threaded through every
signature (the servicer's methods keep gRPC's ``(request, context)`` shape).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

from matcher.store.base import Principal

_CALLER: contextvars.ContextVar[Principal | None] = contextvars.ContextVar("shanakht_caller", default=None)


@contextlib.contextmanager
def calling(principal: Principal) -> Iterator[None]:
    """Bind ``principal`` as the caller for the duration of one handler."""
    token = _CALLER.set(principal)
    try:
        yield
    finally:
        _CALLER.reset(token)


def caller() -> Principal | None:
    """The principal of the call being handled, or None outside one."""
    return _CALLER.get()
