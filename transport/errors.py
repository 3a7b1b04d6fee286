"""Typed errors of the transport: who is calling and whether they may.

Like the libraries' errors (``matcher.errors``, ``enrollment.errors``) they are ``ShanakhtError``
subclasses, so the one table in ``transport.interceptors`` maps them to status codes.
"""

from __future__ import annotations

from matcher.errors import Overloaded, ShanakhtError


class Unauthenticated(ShanakhtError):
    """No valid credential (API key or client certificate) came with the call."""


class PermissionDenied(ShanakhtError):
    """The caller is known but its role or gallery scope does not allow this call."""


class RateLimited(Overloaded):
    """The caller exceeded its request rate; retry later."""
