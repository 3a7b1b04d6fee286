"""The gRPC transport: the servicer, start-up and graceful shutdown.

No business logic lives here.  Requests flow server → enrollment (images → templates) →
matcher (galleries, search, store) → native (kernels).  gRPC is known only here and in
``shanakht/`` (interceptors: errors → status codes, access control, audit; client; CLI).
"""

from __future__ import annotations

import collections
import logging
import math
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent import futures
from dataclasses import dataclass, replace
from pathlib import Path

import faiss
import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server

from enrollment.errors import ModelUnavailable
from enrollment.extractor import QUALITY_POLICIES, Extractor
from enrollment.modalities import load_extractors
from matcher.calibration import Calibration
from matcher.errors import AlreadyExists, InvalidArgument, ShanakhtError
from matcher.galleries import Enrolled, EnrollItem, Galleries, default_calibration
from matcher.gallery import Candidate
from matcher.index import use_blas_from
from matcher.modalities import modality_of, template_payload
from matcher.store.base import GalleryRecord, ModalitySpec, Store
from matcher.store.redis import RedisStore
from matcher.store.sqlite import SQLiteStore
from matcher.templates import Modality, Template
from transport import logs
from transport.audit import AuditTrail
from transport.caller import caller
from transport.casework import Casework, retain_by_default
from transport import transaction
from enrollment.transaction.reader import Mapping
from matcher.deduplication import Deduplication
from transport.deduplication import DeduplicationService
from matcher.evidence import Keyring
from transport.auth import Authenticator, TokenBucket, create_key
from transport.extraction import SampleDecoder
from transport.interceptors import AccessInterceptor, ErrorsAndMetricsInterceptor, status_for
from transport.sessions import SessionAuthority
from transport.settings import Settings
from shanakht.v1 import identity_pb2 as pb
from shanakht.v1 import identity_pb2_grpc as pb_grpc

log = logging.getLogger("shanakht.server")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["IdentityService"].full_name

def _deadline(context: grpc.ServicerContext) -> float | None:
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining


class IdentityServicer(pb_grpc.IdentityServiceServicer):
    """Translates protobuf ↔ library calls; see the proto for the contract of each RPC."""

    def __init__(self, galleries: Galleries, settings: Settings, decoder: SampleDecoder, default_modalities: tuple[ModalitySpec, ...]):
        self.galleries = galleries
        self.settings = settings
        self.decoder = decoder
        self.default_modalities = default_modalities  # what a gallery created without modalities holds
        self.sessions: SessionAuthority | None = None  # console sign-in; set by start()
        self.authenticator: Authenticator | None = None
        self.casework: Casework | None = None  # evidence images, search records, decisions; set by start()
        self.transaction_mapping = Mapping.load(Path(settings.transaction_mapping) if settings.transaction_mapping else None)  # ANSI/NIST-ITL fields → subject id, metadata

    @staticmethod
    def _candidate(candidate: Candidate, metadata: Mapping[str, str]) -> pb.Candidate:
        return pb.Candidate(
            subject_id=candidate.subject_id,
            gallery=candidate.gallery,
            score=candidate.score,
            modality_scores=candidate.modality_scores,
            hit=candidate.hit,
            fpir=candidate.fpir,
            metadata=metadata,
            alert_level=metadata.get("alert_level", "match") if candidate.hit else "",
        )

    def _enroll_item(self, request: pb.EnrollRequest) -> tuple[EnrollItem, list[pb.QualityReport], tuple | None]:
        gallery = self.galleries.get(request.gallery)
        extracted = self.decoder.decode(
            request.samples, "enroll", largest_face=request.largest_face, policy=gallery.record.quality_policy,
            minimums={spec.modality: spec.min_quality for spec in gallery.record.modalities},
        )
        templates = tuple(replace(e.template, quality=dict(e.quality.measures)) for e in extracted)
        item = EnrollItem(
            gallery=request.gallery,
            subject_id=request.subject_id,
            templates=templates,
            metadata=dict(request.metadata),
            replace=request.replace,
            check_duplicates=request.check_duplicates,
        )
        # Evidence: the kept image of each sample, and which sample each template came from.
        evidence = (tuple(e.sample for e in extracted), self.casework.sample_evidence(request.samples)) if gallery.record.retain_images else None
        return item, [e.quality for e in extracted], evidence

    def _keep_images(self, item: EnrollItem, evidence: tuple | None, outcome: Enrolled) -> None:
        if evidence is not None:
            self.casework.keep_enrolled(item.gallery, item.subject_id, item.templates, evidence[0], evidence[1], outcome.result.template_ids)

    @staticmethod
    def _enroll_response(outcome: Enrolled, quality: list[pb.QualityReport], index: int = 0) -> pb.EnrollResponse:
        return pb.EnrollResponse(
            subject_id=outcome.result.subject_id,
            template_ids=outcome.result.template_ids,
            sequence=outcome.result.sequence,
            duplicates=[pb.Duplicate(subject_id=d.subject_id, score=d.score) for d in outcome.duplicates],
            quality=quality,
            index=index,
        )

    def _with_metadata(self, candidates: list[Candidate]) -> list[pb.Candidate]:
        metadata = self.galleries.candidate_metadata(candidates)
        return [self._candidate(c, metadata.get((c.gallery, c.subject_id), {})) for c in candidates]

    # -- RPCs -----------------------------------------------------------------------------
    def Enroll(self, request: pb.EnrollRequest, context: grpc.ServicerContext) -> pb.EnrollResponse:
        item, quality, evidence = self._enroll_item(request)
        (outcome,) = self.galleries.enroll([item])
        if isinstance(outcome, ShanakhtError):
            raise outcome
        self._keep_images(item, evidence, outcome)
        return self._enroll_response(outcome, quality)

    def EnrollTransaction(self, request: pb.EnrollTransactionRequest, context: grpc.ServicerContext) -> pb.EnrollTransactionResponse:
        enroll, parsed = transaction.enroll_request(request, self.transaction_mapping)
        try:
            enrolled = self.Enroll(enroll, context)
        except InvalidArgument as error:
            raise transaction.about_record(error, parsed) from error
        return transaction.response(enrolled, enroll, parsed)

    def EnrollStream(self, request_iterator: Iterator[pb.EnrollRequest], context: grpc.ServicerContext):
        """Group commit: items that arrive together are made durable in one write, then acknowledged."""
        pending: queue.Queue = queue.Queue(maxsize=4 * self.settings.stream_batch)
        done = object()

        def put(item: object) -> None:
            while context.is_active():
                try:
                    pending.put(item, timeout=0.5)
                    return
                except queue.Full:
                    continue

        def read() -> None:
            try:
                for request in request_iterator:
                    put(request)
            except Exception as error:  # the client went away; the writer side ends the stream
                put(error)
            put(done)

        threading.Thread(target=read, name="enroll-stream-reader", daemon=True).start()
        with self.galleries.bulk_loading():  # retrain once the stream ends, not at every doubling during it
            yield from self._enroll_batches(pending, context)

    def _enroll_batches(self, pending: queue.Queue, context: grpc.ServicerContext):
        index = 0
        finished = False
        while not finished and context.is_active():
            try:
                batch = [pending.get(timeout=0.5)]
            except queue.Empty:
                continue
            while len(batch) < self.settings.stream_batch:
                try:
                    batch.append(pending.get_nowait())
                except queue.Empty:
                    break
            finished = any(not isinstance(r, pb.EnrollRequest) for r in batch)  # end marker or client error
            failure = next((r for r in batch if isinstance(r, ShanakhtError)), None)
            batch = [r for r in batch if isinstance(r, pb.EnrollRequest)]
            items: list[tuple[EnrollItem, list] | ShanakhtError] = []
            for request in batch:
                try:
                    items.append(self._enroll_item(request))
                except ShanakhtError as error:
                    items.append(error)
            valid = [item[0] for item in items if not isinstance(item, ShanakhtError)]
            outcomes = iter(self.galleries.enroll(valid))
            for request, item in zip(batch, items):
                outcome = item if isinstance(item, ShanakhtError) else next(outcomes)
                if isinstance(outcome, ShanakhtError):
                    yield pb.EnrollResponse(
                        index=index, subject_id=request.subject_id, status_code=status_for(outcome).value[0], error=str(outcome)
                    )
                else:
                    self._keep_images(item[0], item[2], outcome)
                    yield self._enroll_response(outcome, item[1], index)
                index += 1
            if failure is not None:  # e.g. an item outside the caller's gallery scope: end the stream with its status
                raise failure

    def Identify(self, request: pb.IdentifyRequest, context: grpc.ServicerContext) -> pb.IdentifyResponse:
        """Samples fuse into one probe; a photo with several faces (a checkpoint frame) is searched face by face."""
        extracted = self.decoder.decode(request.samples, "identify")
        deadline = _deadline(context)
        if request.min_sequence:
            self.galleries.wait_for_sequence(request.min_sequence, deadline)
        top = request.max_candidates or 10

        def search(templates: list[Template]) -> list[Candidate]:
            return self.galleries.identify(templates, list(request.galleries), top=top, min_score=request.min_score, deadline=deadline)

        def searched() -> int:
            return self.galleries.subjects_in(list(request.galleries))

        quality = [e.quality for e in extracted]
        faces_per_sample = collections.Counter(e.sample for e in extracted if e.box is not None)
        if not faces_per_sample or max(faces_per_sample.values()) == 1:
            return self._search_record(request, pb.IdentifyResponse(
                candidates=self._with_metadata(search([e.template for e in extracted])), quality=quality, searched_subjects=searched()
            ))
        # Several people in one frame: never fuse different faces; search each on its own.
        faces, best = [], {}
        for e in extracted:
            found = search([e.template])
            x1, y1, x2, y2 = e.box or (0, 0, 0, 0)
            faces.append(pb.FaceCandidates(box=pb.Box(x1=x1, y1=y1, x2=x2, y2=y2), candidates=self._with_metadata(found)))
            for c in found:
                if c.score > best.get((c.gallery, c.subject_id), (None, -math.inf))[1]:
                    best[(c.gallery, c.subject_id)] = (c, c.score)
        merged = sorted((c for c, _ in best.values()), key=lambda c: -c.score)[:top]
        return self._search_record(
            request, pb.IdentifyResponse(candidates=self._with_metadata(merged), quality=quality, faces=faces, searched_subjects=searched())
        )

    def _search_record(self, request: pb.IdentifyRequest, response: pb.IdentifyResponse) -> pb.IdentifyResponse:
        """An examiner's search is kept, probes included, for adjudication and oversight."""
        principal = caller()
        if principal is not None and self.casework is not None:
            probes = self.casework.sample_evidence(request.samples) if principal.role in ("investigator", "supervisor") else []
            response.search_id = self.casework.record_search(principal, request, response, probes)
        return response

    def Verify(self, request: pb.VerifyRequest, context: grpc.ServicerContext) -> pb.VerifyResponse:
        extracted = self.decoder.decode(request.samples, "verify")
        if request.min_sequence:
            self.galleries.wait_for_sequence(request.min_sequence, _deadline(context))
        result = self.galleries.verify(request.gallery, request.subject_id, [e.template for e in extracted])
        return pb.VerifyResponse(
            score=result.score,
            match=result.match,
            threshold=result.threshold,
            modality_scores=result.modality_scores,
            quality=[e.quality for e in extracted],
        )

    def ExtractTemplate(self, request: pb.ExtractTemplateRequest, context: grpc.ServicerContext) -> pb.ExtractTemplateResponse:
        if not request.HasField("sample"):
            raise InvalidArgument("sample", "is required")
        (extracted,) = self.decoder.decode([request.sample], "extract", field="sample")
        t = extracted.template
        return pb.ExtractTemplateResponse(
            template=pb.Template(
                modality=t.modality.value, model_id=t.model_id, vector=template_payload(t), finger_position=t.finger_position
            ),
            quality=extracted.quality,
        )

    def GetSubject(self, request: pb.GetSubjectRequest, context: grpc.ServicerContext) -> pb.Subject:
        record = self.galleries.get_subject(request.gallery, request.subject_id)
        return pb.Subject(
            subject_id=record.subject_id,
            gallery=record.gallery,
            metadata=record.metadata,
            templates=[
                pb.TemplateInfo(
                    template_id=t.template_id, modality=t.modality.value, model_id=t.model_id, finger_position=t.finger_position,
                    has_image=t.has_image,
                )
                for t in record.templates
            ],
            enrolled_at=record.enrolled_at,
            sequence=record.sequence,
        )

    def DeleteSubject(self, request: pb.DeleteSubjectRequest, context: grpc.ServicerContext) -> pb.DeleteSubjectResponse:
        return pb.DeleteSubjectResponse(sequence=self.galleries.remove(request.gallery, request.subject_id))

    def CreateGallery(self, request: pb.CreateGalleryRequest, context: grpc.ServicerContext) -> pb.Gallery:
        for name in ("threshold_fmr", "threshold_fpir"):
            if not math.isfinite(getattr(request, name)):
                raise InvalidArgument(name, "must be a finite number")
        specs = tuple(
            ModalitySpec(modality_of(m.modality, f"modalities[{i}].modality"), m.model_id, m.dimension, m.min_quality)
            for i, m in enumerate(request.modalities)
        )
        if request.quality_policy not in ("", *QUALITY_POLICIES):
            raise InvalidArgument("quality_policy", f"must be one of {', '.join(QUALITY_POLICIES)}, got {request.quality_policy!r}")
        record = GalleryRecord(
            name=request.name,
            threshold_fmr=request.threshold_fmr or self.settings.default_threshold_fmr,
            modalities=specs or self.default_modalities,
            description=request.description,
            quality_policy=request.quality_policy or "warn",
            threshold_fpir=request.threshold_fpir,
            retain_images=request.retain_images if request.HasField("retain_images") else retain_by_default(request.name),
        )
        return self._gallery_message(self.galleries.create(record).record)

    @staticmethod
    def _gallery_message(record: GalleryRecord) -> pb.Gallery:
        return pb.Gallery(
            name=record.name,
            threshold_fmr=record.threshold_fmr,
            threshold_score=-math.log10(record.threshold_fmr),
            modalities=[
                pb.ModalitySettings(modality=s.modality.value, model_id=s.model_id, dimension=s.dimension, min_quality=s.min_quality)
                for s in record.modalities
            ],
            description=record.description,
            quality_policy=record.quality_policy,
            threshold_fpir=record.threshold_fpir,
            retain_images=record.retain_images,
        )

    def ListGalleries(self, request: pb.ListGalleriesRequest, context: grpc.ServicerContext) -> pb.ListGalleriesResponse:
        return pb.ListGalleriesResponse(
            galleries=[self._gallery_message(self.galleries.get(name).record) for name in self.galleries.names()]
        )

    def SignIn(self, request: pb.SignInRequest, context: grpc.ServicerContext) -> pb.SignInResponse:
        signed = self.sessions.sign_in(request.user, request.password, context.peer())
        p = signed.principal
        return pb.SignInResponse(session_token=signed.token, expires_at=signed.expires_at, role=p.role, galleries=p.galleries, name=p.name)

    def SignOut(self, request: pb.SignOutRequest, context: grpc.ServicerContext) -> pb.SignOutResponse:
        metadata = dict((k, v) for k, v in context.invocation_metadata() if isinstance(v, str))
        self.sessions.sign_out(metadata.get("x-api-key", ""), self.authenticator)
        return pb.SignOutResponse()

    # -- evidence, search records, decisions, oversight: transport.casework --------------------
    def GetImage(self, request: pb.GetImageRequest, context: grpc.ServicerContext) -> pb.EvidenceImage:
        return self.casework.image(request, caller())

    def ListSearches(self, request: pb.ListSearchesRequest, context: grpc.ServicerContext) -> pb.ListSearchesResponse:
        return self.casework.list_searches(request, caller())

    def GetSearch(self, request: pb.GetSearchRequest, context: grpc.ServicerContext) -> pb.SearchRecord:
        return self.casework.get_search(request, caller())

    def RecordDecision(self, request: pb.RecordDecisionRequest, context: grpc.ServicerContext) -> pb.SearchCandidate:
        return self.casework.record_decision(request, caller())

    def VerificationQueue(self, request: pb.VerificationQueueRequest, context: grpc.ServicerContext) -> pb.VerificationQueueResponse:
        return self.casework.verification_queue(request, caller())

    def GetOversightReport(self, request: pb.OversightReportRequest, context: grpc.ServicerContext) -> pb.OversightReport:
        return self.casework.oversight_report(request)

    def GalleryStats(self, request: pb.GalleryStatsRequest, context: grpc.ServicerContext) -> pb.GalleryStatsResponse:
        stats = self.galleries.statistics(list(request.galleries))
        return pb.GalleryStatsResponse(
            galleries=[
                pb.GalleryStatistics(
                    gallery=s.gallery,
                    subjects=s.subjects,
                    indexes=[
                        pb.IndexStats(
                            modality=Modality.named(i.modality).value,
                            templates=i.templates,
                            index_type=i.index_type,
                            bytes_per_template=i.bytes_per_template,
                            applied_sequence=i.applied_sequence,
                            rebuilding=i.rebuilding,
                        )
                        for i in s.indexes
                    ],
                )
                for s in stats
            ],
            store_sequence=self.galleries.store.last_sequence(),
        )

    # -- de-duplication runs: transport.deduplication ------------------------------------------
    def StartDeduplication(self, request: pb.StartDeduplicationRequest, context: grpc.ServicerContext) -> pb.DeduplicationJob:
        return self.deduplication.start(request, caller())

    def WatchDeduplication(self, request: pb.DeduplicationJobRequest, context: grpc.ServicerContext):
        yield from self.deduplication.watch(request, context.is_active)

    def CancelDeduplication(self, request: pb.DeduplicationJobRequest, context: grpc.ServicerContext) -> pb.DeduplicationJob:
        return self.deduplication.cancel(request)

    def ListDeduplicationJobs(self, request: pb.ListDeduplicationJobsRequest, context: grpc.ServicerContext) -> pb.ListDeduplicationJobsResponse:
        return self.deduplication.list()

    def GetDeduplicationReport(self, request: pb.DeduplicationJobRequest, context: grpc.ServicerContext) -> pb.DeduplicationReport:
        return self.deduplication.report(request)


@dataclass
class RunningServer:
    """A started server and what it needs to shut down cleanly."""

    server: grpc.Server
    port: int
    galleries: Galleries
    health: health.HealthServicer
    settings: Settings
    _snapshotter: threading.Event
    audit: AuditTrail
    deduplication: Deduplication | None = None  # background de-duplication runs, stopped before the store closes

    def stop(self, grace: float | None = None) -> None:
        """Drain in-flight RPCs, snapshot the indexes, close the store."""
        self.health.enter_graceful_shutdown()
        self._snapshotter.set()
        self.server.stop(self.settings.shutdown_grace_s if grace is None else grace).wait()
        if self.deduplication is not None:
            self.deduplication.stop()  # runs stay RUNNING and resume from their cursor at the next start
        self.galleries.stop_following()
        self.audit.close()
        self.galleries.snapshot()
        self.galleries.store.close()
        log.info("server stopped", extra={"port": self.port})


def _ensure_default_galleries(galleries: Galleries, settings: Settings, modalities: tuple[ModalitySpec, ...]) -> None:
    for name in settings.gallery_names:
        if name not in galleries.names():
            try:
                galleries.create(GalleryRecord(name, settings.default_threshold_fmr, modalities, retain_images=retain_by_default(name)))
            except AlreadyExists:  # another replica created it a moment ago
                galleries.catch_up()


def _prepare_auth(settings: Settings, store: Store) -> bool:
    """Whether to enforce access control; on first start, mint the admin key into the data directory."""
    if settings.auth == "off":
        log.warning("access control is OFF: every caller is admin; never run this way outside a test bench")
        return False
    if not store.principals():
        principal, key = create_key(store, "admin", name="bootstrap-admin")
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        path = settings.admin_key_path
        path.touch(mode=0o600)
        path.write_text(key + "\n")
        store.append_audit([{"time": time.time(), "principal": "server", "role": "admin", "rpc": "keys.create",
                             "key_id": principal.key_id, "key_role": "admin", "status": "OK"}])
        log.warning("no principals yet: created the bootstrap admin key", extra={"key_id": principal.key_id, "path": str(path)})
    return True


def _server_credentials(settings: Settings) -> grpc.ServerCredentials:
    """TLS; with --client-ca, client certificates are required and their subject names the principal."""
    if not settings.tls_key:
        raise SystemExit("--tls-cert needs --tls-key")
    pair = (Path(settings.tls_key).read_bytes(), Path(settings.tls_cert).read_bytes())
    ca = Path(settings.client_ca).read_bytes() if settings.client_ca else None
    return grpc.ssl_server_credentials([pair], root_certificates=ca, require_client_auth=ca is not None)


def _periodic_snapshots(galleries: Galleries, interval: float, stop: threading.Event) -> None:
    while not stop.wait(interval):
        try:
            galleries.snapshot()
        except Exception:
            log.exception("snapshot failed")


def open_store(settings: Settings) -> Store:
    """The configured store, refusing one that cannot keep its promise when durability is required."""
    store: Store = RedisStore(settings.redis_url, settings.redis_prefix) if settings.store == "redis" else SQLiteStore(settings.store_path)
    promise = store.durability()
    log.info("store opened", extra={"store": settings.store, "durability": promise})
    if settings.require_durable and not store.is_durable():
        store.close()
        raise SystemExit(f"refusing to start (--require-durable): {promise}")
    return store


@dataclass(frozen=True)
class Models:
    """The extractors this server runs and what follows from them for galleries and scores."""

    decoder: SampleDecoder
    calibration_for: Callable[[ModalitySpec], Calibration]
    default_modalities: tuple[ModalitySpec, ...]  # of galleries created without naming their modalities


def load_models(settings: Settings) -> Models:
    """Every modality's extractor and calibration table; refuses to start on a missing or altered model."""
    try:
        extractors: list[Extractor] = load_extractors(settings.model_dir, settings.model_threads)
        tables = {(e.modality, e.model_id): e.calibration() for e in extractors}
    except ModelUnavailable as error:
        raise SystemExit(f"refusing to start: {error} (run `make install` or `python -m enrollment.models fetch`)") from error

    def calibration_for(spec: ModalitySpec) -> Calibration:
        """The measured table of the model that made these templates, else the modality's null model."""
        table = tables.get((spec.modality, spec.model_id))
        return table if table is not None else default_calibration(spec)

    specs = tuple(ModalitySpec(e.modality, e.model_id, e.dimension) for e in extractors)
    return Models(SampleDecoder(extractors), calibration_for, specs)


def start(settings: Settings) -> RunningServer:
    """Open the store, load the models and galleries, and start serving (non-blocking)."""
    faiss.omp_set_num_threads(settings.search_threads)
    loaded = load_models(settings)
    use_blas_from(settings.blas_threshold, max((s.dimension for s in loaded.default_modalities), default=1))
    keyring = Keyring.open(settings.evidence_key_path)  # before the store: a key others can read stops the start
    store = open_store(settings)
    galleries = Galleries(store, settings.snapshot_dir, loaded.calibration_for, settings.index_policy)
    _ensure_default_galleries(galleries, settings, loaded.default_modalities)
    if not store.single_writer:
        galleries.start_following()

    enforce = _prepare_auth(settings, store)
    audit = AuditTrail(store)
    authenticator = Authenticator(store)
    sessions = SessionAuthority(store, audit, settings.session_idle_s, settings.sign_in_max_failures, settings.sign_in_lockout_s)
    authenticator.sessions = sessions
    access = AccessInterceptor(authenticator, audit, TokenBucket(settings.rate_limit, 2 * settings.rate_limit), enforce)

    options = [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
    ]
    server = grpc.server(
        # OpenMP thread counts are per thread: each handler thread must set FAISS's own.
        futures.ThreadPoolExecutor(
            max_workers=settings.workers, thread_name_prefix="rpc", initializer=faiss.omp_set_num_threads,
            initargs=(settings.search_threads,),
        ),
        interceptors=[ErrorsAndMetricsInterceptor(), access],
        options=options,
        maximum_concurrent_rpcs=settings.max_concurrent_rpcs,
    )
    servicer = IdentityServicer(galleries, settings, loaded.decoder, loaded.default_modalities)
    servicer.sessions, servicer.authenticator = sessions, authenticator
    servicer.casework = Casework(galleries, keyring)
    # De-duplication runs (transport.deduplication): those left RUNNING by a previous process resume.
    deduplication = Deduplication(galleries, settings.dedup_options)
    servicer.deduplication = DeduplicationService(deduplication)
    pb_grpc.add_IdentityServiceServicer_to_server(servicer, server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME), server
    )
    address = f"{settings.host}:{settings.port}"
    if settings.tls_cert:
        port = server.add_secure_port(address, _server_credentials(settings))
    else:
        port = server.add_insecure_port(address)
    if port == 0:
        raise RuntimeError(f"cannot listen on {settings.host}:{settings.port}")
    server.start()
    for service in ("", SERVICE_NAME):
        health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    stop_snapshots = threading.Event()
    if settings.snapshot_interval_s > 0:
        threading.Thread(
            target=_periodic_snapshots, args=(galleries, settings.snapshot_interval_s, stop_snapshots), daemon=True
        ).start()
    if settings.metrics_port:
        start_http_server(settings.metrics_port, addr="127.0.0.1")
    log.info(
        "serving",
        extra={"host": settings.host, "port": port, "data_dir": str(settings.data_dir), "galleries": galleries.names()},
    )
    deduplication.resume()
    return RunningServer(server, port, galleries, health_servicer, settings, stop_snapshots, audit, deduplication)


def serve(settings: Settings) -> None:
    """Run until SIGTERM or SIGINT, then shut down gracefully."""
    logs.configure(settings.log_level, settings.log_format)
    running = start(settings)
    print(f"shanakht listening on {settings.host}:{running.port}", flush=True)
    if settings.admin_key_path.exists():
        print(f"bootstrap admin key: {settings.admin_key_path} (the CLI reads it from ./data or $SHANAKHT_DATA_DIR)", flush=True)
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    stopping.wait()
    log.info("shutting down", extra={"grace_s": settings.shutdown_grace_s})
    running.stop()
