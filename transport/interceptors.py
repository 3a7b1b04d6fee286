"""The interceptor chain: every call passes through here before and after its handler.

``ErrorsAndMetricsInterceptor`` (outermost) turns library errors into status codes, using the
one table below, and counts and times every RPC; ``AccessInterceptor`` authenticates,
rate-limits, authorizes, redacts what a role may not see, and writes the audit record.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import grpc
from prometheus_client import Counter, Histogram

from matcher.errors import (
    AlreadyExists,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    ModalityUnavailable,
    NotFound,
    NotPermitted,
    Overloaded,
    ShanakhtError,
    StoreUnavailable,
)
from matcher.store.base import Principal
from transport.audit import AuditTrail, PendingRecord, probe_hash
from transport.auth import ROLES, Authenticator, TokenBucket, authorize
from transport.errors import PermissionDenied, Unauthenticated
from transport.caller import calling
from transport.casework import casework_audit

log = logging.getLogger("shanakht.server")

# The one place where errors (matcher.errors, enrollment.errors, transport.errors) become gRPC status codes.
STATUS_FOR_ERROR: dict[type[ShanakhtError], grpc.StatusCode] = {
    InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    NotFound: grpc.StatusCode.NOT_FOUND,
    AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    ModalityUnavailable: grpc.StatusCode.UNIMPLEMENTED,
    DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
    StoreUnavailable: grpc.StatusCode.UNAVAILABLE,
    Overloaded: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    NotPermitted: grpc.StatusCode.PERMISSION_DENIED,
}

RPC_TOTAL = Counter("shanakht_rpc_total", "RPCs handled", ["method", "code"])
RPC_SECONDS = Histogram(
    "shanakht_rpc_seconds", "RPC latency", ["method"], buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5)
)


def status_for(error: ShanakhtError) -> grpc.StatusCode:
    for cls in type(error).__mro__:
        if cls in STATUS_FOR_ERROR:
            return STATUS_FOR_ERROR[cls]
    return grpc.StatusCode.INTERNAL


class ErrorsAndMetricsInterceptor(grpc.ServerInterceptor):
    """Maps library errors to status codes, counts and times every RPC, logs failures.

    The first (outermost) link of the chain, so that errors raised by the links after it are mapped too.
    """

    def intercept_service(self, continuation, handler_call_details):
        # gRPC runs interceptors as a call arrives, before it queues for a handler thread: the
        # clock starts here so that the server's time includes that queue.
        arrived = time.perf_counter()
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method.rsplit("/", 1)[-1]

        if handler.unary_unary:
            behaviour = handler.unary_unary

            def unary(request, context):
                with _guarded(method, context, arrived):
                    return behaviour(request, context)

            return grpc.unary_unary_rpc_method_handler(unary, handler.request_deserializer, handler.response_serializer)
        if handler.stream_stream:
            streaming = handler.stream_stream

            def stream(request_iterator, context):
                with _guarded(method, context, arrived):
                    yield from streaming(request_iterator, context)

            return grpc.stream_stream_rpc_method_handler(stream, handler.request_deserializer, handler.response_serializer)
        if handler.unary_stream:  # server streams (WatchDeduplication)
            producing = handler.unary_stream

            def unary_stream(request, context):
                with _guarded(method, context, arrived):
                    yield from producing(request, context)

            return grpc.unary_stream_rpc_method_handler(unary_stream, handler.request_deserializer, handler.response_serializer)
        return handler


@contextmanager
def _guarded(method: str, context: grpc.ServicerContext, started: float) -> Iterator[None]:
    """Library errors → their status code; anything else → INTERNAL with an incident id; always counted."""
    code = grpc.StatusCode.OK
    entered = time.perf_counter()
    try:
        yield
        # Server-side time, so load tests can tell the server's share from the client's and the
        # network's: in all since the call arrived, and in its handler (the rest is gRPC's queue).
        ended = time.perf_counter()
        context.set_trailing_metadata(
            (("server-timing", f"total;dur={(ended - started) * 1e3:.3f}, handler;dur={(ended - entered) * 1e3:.3f}"),)
        )
    except ShanakhtError as error:
        code = status_for(error)
        context.abort(code, str(error))
    except Exception as error:
        code = _fail_internal(error, method, context)
    finally:
        RPC_TOTAL.labels(method, code.name).inc()
        RPC_SECONDS.labels(method).observe(time.perf_counter() - started)


# Which galleries a request touches (None: no gallery at all, [] : every gallery), and its purpose.
_GALLERIES_OF: dict[str, Callable[[object], list[str] | None]] = {
    "Enroll": lambda r: [r.gallery],
    "EnrollStream": lambda r: [r.gallery],
    "EnrollTransaction": lambda r: [r.gallery],
    "Identify": lambda r: list(r.galleries),
    "Verify": lambda r: [r.gallery],
    "GetSubject": lambda r: [r.gallery],
    "DeleteSubject": lambda r: [r.gallery],
    "CreateGallery": lambda r: [r.name],
    "GalleryStats": lambda r: list(r.galleries),
    "ListGalleries": lambda r: [],
    "ExtractTemplate": lambda r: None,
    # A probe's search names no gallery: who may see it is the search record's rule (transport.casework).
    "GetImage": lambda r: [r.sample.gallery] if r.WhichOneof("target") == "sample" else None,
    "ListSearches": lambda r: None,
    "GetSearch": lambda r: None,
    "RecordDecision": lambda r: None,
    "VerificationQueue": lambda r: None,
    "GetOversightReport": lambda r: None,
    "SignOut": lambda r: None,
    # De-duplication runs (transport.deduplication).
    "StartDeduplication": lambda r: [r.gallery, *([r.against] if r.against else [])],
    "WatchDeduplication": lambda r: None,
    "CancelDeduplication": lambda r: None,
    "ListDeduplicationJobs": lambda r: None,
    "GetDeduplicationReport": lambda r: None,
}
_PURPOSE_OF: dict[str, Callable[[object], str]] = {
    "Identify": lambda r: r.purpose,
    "Verify": lambda r: r.purpose,
    "GetSubject": lambda r: r.purpose,
    "DeleteSubject": lambda r: r.reason,
    "GetImage": lambda r: r.purpose,
    "StartDeduplication": lambda r: r.purpose,
}
AUDITED = {"Enroll", "EnrollStream", "EnrollTransaction", "Identify", "Verify", "GetSubject", "DeleteSubject", "CreateGallery", "SignOut",
           "GetImage", "GetSearch", "RecordDecision", "GetOversightReport"}
AUDITED |= {"StartDeduplication", "CancelDeduplication"}
OPEN_SERVICES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
# The one method callable without a credential: it is how a console user gets one.  Its handler
# audits every attempt itself (only it knows who tried and how it ended); the rate limit is per peer host.
OPEN_METHODS = frozenset({"SignIn"})


def _audit_result(method: str, request, response) -> dict:
    """What the caller was shown: subject ids and scores, never biometric data."""
    if method in ("GetImage", "GetSearch", "RecordDecision", "GetOversightReport"):
        return casework_audit(method, request, response)  # refused attempts too: what was asked
    if response is None:
        return {}
    if method == "Identify":
        return {"subjects": [f"{c.gallery}/{c.subject_id}" for c in response.candidates],
                "scores": [round(c.score, 3) for c in response.candidates],
                **({"search_id": response.search_id} if response.search_id else {})}
    if method == "Verify":
        return {"subjects": [f"{request.gallery}/{request.subject_id}"], "scores": [round(response.score, 3)], "match": response.match}
    if method == "EnrollTransaction":
        enrolled = response.enrolled
        return {"subjects": [f"{request.gallery}/{enrolled.subject_id}"], "template_ids": list(enrolled.template_ids),
                "duplicates": [d.subject_id for d in enrolled.duplicates], "records": list(response.samples)}
    if method in ("Enroll", "EnrollStream"):
        return {"subjects": [f"{request.gallery}/{response.subject_id or request.subject_id}"], "template_ids": list(response.template_ids),
                "duplicates": [d.subject_id for d in response.duplicates]}
    if method in ("GetSubject", "DeleteSubject"):
        return {"subjects": [f"{request.gallery}/{request.subject_id}"]}
    if method in ("StartDeduplication", "CancelDeduplication"):
        return {"job_id": response.job_id, "against": response.against, "min_score": round(response.min_score, 3)}
    return {}


class AccessInterceptor(grpc.ServerInterceptor):
    """Authentication, rate limit, authorization, redaction and audit, in that order, for every call.

    Health and reflection stay open (load balancers, grpcurl); everything else needs an API key
    (metadata ``x-api-key``) or a registered client certificate.
    """

    def __init__(self, authenticator: Authenticator, audit: AuditTrail, limiter: TokenBucket, enforce: bool) -> None:
        self.authenticator = authenticator
        self.audit = audit
        self.limiter = limiter
        self.enforce = enforce

    def _principal(self, metadata: dict[str, str], context: grpc.ServicerContext) -> Principal:
        if not self.enforce:
            return ANONYMOUS_ADMIN
        subjects = (context.auth_context() or {}).get("x509_common_name") or []
        if subjects:
            try:
                return self.authenticator.from_certificate(subjects[0].decode())
            except Unauthenticated:
                if "x-api-key" not in metadata:
                    raise
        key = metadata.get("x-api-key") or metadata.get("authorization", "").removeprefix("Bearer ").strip()
        if not key:
            raise Unauthenticated("no credential: send an API key as 'x-api-key' metadata, or a registered client certificate")
        return self.authenticator.from_key(key)

    def _record(self, principal: Principal, method: str, request, response, status: grpc.StatusCode, context) -> None:
        self.audit.wait(self._submit(principal, method, request, response, status, context))

    def _submit(self, principal: Principal, method: str, request, response, status: grpc.StatusCode, context) -> PendingRecord:
        samples = getattr(request, "samples", None)
        galleries = _GALLERIES_OF[method](request) or []
        payload = {
            "principal": principal.key_id,
            "name": principal.name,
            "role": principal.role,
            "rpc": method,
            "galleries": galleries,
            "purpose": _PURPOSE_OF.get(method, lambda r: "")(request),
            "probe_sha256": probe_hash(b"".join(x.SerializeToString() for x in samples)) if samples else "",
            "status": status.name,
            "peer": context.peer(),
            **_audit_result(method, request, response),
        }
        return self.audit.submit(payload)

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None or handler_call_details.method.startswith(OPEN_SERVICES):
            return handler
        method = handler_call_details.method.rsplit("/", 1)[-1]
        metadata = {k: v for k, v in (handler_call_details.invocation_metadata or ()) if isinstance(v, str)}

        if method in OPEN_METHODS and handler_call_details.method.startswith(f"/{_SERVICE}/") and handler.unary_unary:
            open_behaviour = handler.unary_unary

            def open_unary(request, context):
                self.limiter.take("peer:" + context.peer().rsplit(":", 1)[0])
                return open_behaviour(request, context)

            return grpc.unary_unary_rpc_method_handler(open_unary, handler.request_deserializer, handler.response_serializer)

        if handler.unary_unary:
            behaviour = handler.unary_unary

            def unary(request, context):
                principal = self._principal(metadata, context)  # unknown callers cannot be named in the audit
                self.limiter.take(principal.key_id)
                response, status = None, grpc.StatusCode.OK
                try:
                    purpose = _PURPOSE_OF[method](request) if method in _PURPOSE_OF else None
                    authorize(principal, method, _GALLERIES_OF[method](request), purpose)  # refusals are audited too
                    with calling(principal):  # handlers that keep records of who did what read it (transport.caller)
                        response = behaviour(request, context)
                    if not ROLES[principal.role].sees_metadata and method == "Identify":
                        for candidate in response.candidates:
                            candidate.ClearField("metadata")
                        for face in response.faces:
                            for candidate in face.candidates:
                                candidate.ClearField("metadata")
                    return response
                except ShanakhtError as error:
                    status = status_for(error)
                    raise
                except Exception:
                    status = grpc.StatusCode.INTERNAL
                    raise
                finally:
                    if method in AUDITED:
                        self._record(principal, method, request, response, status, context)

            return grpc.unary_unary_rpc_method_handler(unary, handler.request_deserializer, handler.response_serializer)

        if handler.stream_stream:
            behaviour = handler.stream_stream

            def stream(request_iterator, context):
                principal = self._principal(metadata, context)
                self.limiter.take(principal.key_id)
                authorize(principal, method, None, None)
                requests: list = []

                def checked():
                    for request in request_iterator:
                        try:
                            authorize(principal, method, _GALLERIES_OF[method](request), None)
                        except PermissionDenied:
                            self._record(principal, method, request, None, grpc.StatusCode.PERMISSION_DENIED, context)
                            raise
                        requests.append(request)
                        yield request

                # Acknowledgements go out once their audit records are durable.  Waiting per item
                # would cost one fsync each; the responses that are ready together wait together.
                for burst in _bursts(behaviour(checked(), context)):
                    futures = []
                    for response in burst:
                        request = requests[response.index]
                        requests[response.index] = None  # acknowledged: free it
                        status = grpc.StatusCode.OK if response.status_code == 0 else _STATUS_BY_VALUE[response.status_code]
                        futures.append(self._submit(principal, method, request, response, status, context))
                    for future in futures:
                        self.audit.wait(future)
                    yield from burst

            return grpc.stream_stream_rpc_method_handler(stream, handler.request_deserializer, handler.response_serializer)
        if handler.unary_stream:  # server streams (WatchDeduplication): authorized before the first message
            producing = handler.unary_stream

            def unary_stream(request, context):
                principal = self._principal(metadata, context)
                self.limiter.take(principal.key_id)
                authorize(principal, method, _GALLERIES_OF[method](request), None)
                with calling(principal):
                    yield from producing(request, context)

            return grpc.unary_stream_rpc_method_handler(unary_stream, handler.request_deserializer, handler.response_serializer)
        return handler


def _bursts(responses: Iterator, limit: int = 1024) -> Iterator[list]:
    """Run a response generator on its own thread; yield what it has produced so far, in lists.

    The producer keeps working while the consumer waits (on audit durability), so each wait
    covers everything produced meanwhile.  Closing this generator stops the producer.
    """
    ready: queue.Queue = queue.Queue(maxsize=limit)
    stop = threading.Event()
    end = object()

    def produce() -> None:
        try:
            for response in responses:
                while not stop.is_set():
                    try:
                        ready.put(response, timeout=0.2)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    responses.close()
                    return
            ready.put(end)
        except BaseException as error:  # re-raised in the consumer, where gRPC maps it
            ready.put(error)

    threading.Thread(target=produce, name="stream-responses", daemon=True).start()
    try:
        while True:
            burst = [ready.get()]
            while len(burst) < limit:
                try:
                    burst.append(ready.get_nowait())
                except queue.Empty:
                    break
            finished = burst[-1] is end or isinstance(burst[-1], BaseException)
            tail = burst.pop() if finished else None
            if burst:
                yield burst
            if isinstance(tail, BaseException):
                raise tail
            if finished:
                return
    finally:
        stop.set()


_STATUS_BY_VALUE = {code.value[0]: code for code in grpc.StatusCode}
_SERVICE = "shanakht.v1.IdentityService"
ANONYMOUS_ADMIN = Principal("anonymous", "auth off", "admin", ("*",), 0.0)


def _fail_internal(error: Exception, method: str, context: grpc.ServicerContext) -> grpc.StatusCode:
    if not context.is_active():
        raise error  # the client left; nobody to answer
    incident = uuid.uuid4().hex[:12]
    log.exception("unhandled error", extra={"method": method, "incident": incident})
    context.abort(grpc.StatusCode.INTERNAL, f"internal error; incident {incident} is in the server log")
    return grpc.StatusCode.INTERNAL
