"""Typed errors of the matching library.

The library never speaks gRPC; the transport maps each class below to one status code in a
single table (``transport.interceptors.STATUS_FOR_ERROR``).  Errors carry the offending field so that a client learns *which* part of its
request was wrong, not only that something was.
"""

from __future__ import annotations


class ShanakhtError(Exception):
    """Base of every error the libraries raise on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidArgument(ShanakhtError):
    """A request field is malformed; ``field`` names it (dotted path, e.g. ``samples[0].template.vector``)."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(detail)
        self.field = field
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.field}: {self.detail}" if self.field else self.detail

    def under(self, prefix: str) -> "InvalidArgument":
        """Qualify the field with the request path it was found under, e.g. ``samples[2]``."""
        self.field = f"{prefix}.{self.field}" if self.field else prefix
        return self


class NotFound(ShanakhtError):
    """A gallery or subject named in the request does not exist."""


class AlreadyExists(ShanakhtError):
    """The subject (or gallery) exists and the request did not ask to replace it."""


class FailedPrecondition(ShanakhtError):
    """The request is well formed but the system is not in a state to serve it."""


class NotPermitted(ShanakhtError):
    """The request is well formed, but the rules forbid this caller to do it (e.g. to verify their own identification)."""


class ModalityUnavailable(ShanakhtError):
    """No extractor or index is configured for the modality the sample uses."""


class DeadlineExceeded(ShanakhtError):
    """The caller's deadline passed before the work could be finished."""


class StoreUnavailable(ShanakhtError):
    """The backing store cannot be reached; nothing was written."""


class Overloaded(ShanakhtError):
    """A bounded resource (queue, batch slot) is full; retry later."""
