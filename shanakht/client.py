"""Client-side connection: API key as metadata on every call, optional (mutual) TLS."""

from __future__ import annotations

import collections
import os
from pathlib import Path

import grpc

MAX_MESSAGE_BYTES = 64 * 1024 * 1024


class _CallDetails(
    collections.namedtuple("_CallDetails", ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression")),
    grpc.ClientCallDetails,
):
    pass


class ApiKeyInterceptor(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds ``x-api-key`` to every call."""

    def __init__(self, key: str) -> None:
        self.key = key

    def _details(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        metadata = list(details.metadata or []) + [("x-api-key", self.key)]
        return _CallDetails(details.method, details.timeout, metadata, details.credentials,
                            getattr(details, "wait_for_ready", None), getattr(details, "compression", None))

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation, details, requests):
        return continuation(self._details(details), requests)

    def intercept_stream_stream(self, continuation, details, requests):
        return continuation(self._details(details), requests)


def resolve_key(explicit: str | None = None, key_file: str | None = None) -> str | None:
    """The API key: explicit, ``SHANAKHT_API_KEY``, a key file, ``SHANAKHT_API_KEY_FILE``, else the
    bootstrap admin key of ``$SHANAKHT_DATA_DIR`` or of ``./data`` (an operator on the server's machine)."""
    if explicit:
        return explicit
    if os.environ.get("SHANAKHT_API_KEY"):
        return os.environ["SHANAKHT_API_KEY"]
    data_dir = os.environ.get("SHANAKHT_DATA_DIR")
    for candidate in (key_file, os.environ.get("SHANAKHT_API_KEY_FILE"), data_dir and f"{data_dir}/admin.key", "data/admin.key"):
        if candidate and Path(candidate).is_file():
            return Path(candidate).read_text().strip()
    return None


def connect(
    address: str, api_key: str | None = None, tls_ca: str = "", tls_cert: str = "", tls_key: str = "", options: list | None = None
) -> grpc.Channel:
    opts = [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES), ("grpc.max_send_message_length", MAX_MESSAGE_BYTES), *(options or [])]
    if tls_ca or tls_cert:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=Path(tls_ca).read_bytes() if tls_ca else None,
            private_key=Path(tls_key).read_bytes() if tls_key else None,
            certificate_chain=Path(tls_cert).read_bytes() if tls_cert else None,
        )
        channel = grpc.secure_channel(address, credentials, options=opts)
    else:
        channel = grpc.insecure_channel(address, options=opts)
    return grpc.intercept_channel(channel, ApiKeyInterceptor(api_key)) if api_key else channel
