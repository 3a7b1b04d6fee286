"""The console's one way to the server: gRPC calls made with the signed-in user's session token.

gRPC failures become ``ServiceError`` here, and the one table below says what each means for the
page (the HTTP status the console answers with); nothing else in the console looks at gRPC codes.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from shanakht.client import connect
from shanakht.v1 import identity_pb2 as pb
from shanakht.v1 import identity_pb2_grpc as pb_grpc

#: gRPC status → HTTP status of the console's answer.  UNAUTHENTICATED means the server ended the
#: session (idle time-out, sign-out elsewhere, user revoked): the console signs the browser out.
HTTP_FOR_GRPC: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.UNIMPLEMENTED: 501,
}


@dataclass(frozen=True)
class ServiceError(Exception):
    """A refused or failed call: the server's message, and what it means for the page."""

    code: grpc.StatusCode
    message: str

    @property
    def http_status(self) -> int:
        return HTTP_FOR_GRPC.get(self.code, 502)

    @property
    def session_ended(self) -> bool:
        return self.code == grpc.StatusCode.UNAUTHENTICATED

    def __str__(self) -> str:
        return self.message


class Service:
    """A channel to the server; each call carries the caller's token as ``x-api-key``."""

    def __init__(self, address: str, tls_ca: str = "", timeout: float = 60.0) -> None:
        self.address = address
        self.timeout = timeout
        self._channel = connect(address, None, tls_ca=tls_ca) if tls_ca else connect(address)
        self._stub = pb_grpc.IdentityServiceStub(self._channel)

    def call(self, method: str, request, token: str | None):
        """``stub.method(request)`` as the holder of ``token`` (None: no credential, for SignIn)."""
        metadata = (("x-api-key", token),) if token else ()
        try:
            return getattr(self._stub, method)(request, metadata=metadata, timeout=self.timeout)
        except grpc.RpcError as error:
            raise ServiceError(error.code(), error.details() or error.code().name) from None

    def close(self) -> None:
        self._channel.close()


__all__ = ["Service", "ServiceError", "HTTP_FOR_GRPC", "pb"]
