"""Evidence images, search records, examiners' decisions and oversight, as the RPCs see them.

``server.py`` delegates here so that it stays a translator: this module turns requests into
calls of ``matcher.evidence`` (sealing), ``enrollment.evidence`` (normalising),
``matcher.adjudication`` (the ACE-V rules) and ``matcher.oversight`` (aggregates), and their
results into protobuf.  Who may call each RPC at all is ``transport.auth.ROLES``; what a caller
may see *inside* a search record (blind verification) is decided by ``matcher.adjudication``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace

from enrollment.evidence import evidence_of
from matcher.adjudication import (
    CandidateRecord,
    Decision,
    SearchRecord,
    awaiting_for,
    from_stored,
    may_read,
    new_search_id,
    record_decision,
    to_stored,
    visible_decisions,
)
from matcher.errors import InvalidArgument, NotFound
from matcher.evidence import EvidenceImage, Keyring, probe_aad, sample_aad
from matcher.galleries import Galleries, split_samples
from matcher.modality import Modality
from matcher.oversight import Histogram, aggregate
from matcher.store.base import Principal
from matcher.templates import Template
from shanakht.v1 import identity_pb2 as pb
from transport.audit import verify_log
from transport.errors import PermissionDenied

log = logging.getLogger("shanakht.casework")

#: Galleries whose images are kept when a gallery is created without saying (CreateGalleryRequest.retain_images unset).
RETAIN_BY_DEFAULT = frozenset({"criminal_records", "inmates"})
#: Roles whose searches become search records, and who examine candidates.
EXAMINERS = frozenset({"investigator", "supervisor"})
MAX_PAGE = 500


def retain_by_default(name: str) -> bool:
    return name in RETAIN_BY_DEFAULT


def _page_size(value: int) -> int:
    if value > MAX_PAGE:
        raise InvalidArgument("page_size", f"must be 1–{MAX_PAGE} (0 means 50), got {value}")
    return value or 50


def _check_purpose(purpose: str) -> None:
    if not purpose.strip():
        raise InvalidArgument("purpose", "is required: the case or FIR reference the image is viewed for")


def _image_message(image: EvidenceImage) -> pb.EvidenceImage:
    return pb.EvidenceImage(image=image.data, media_type=image.media_type, modality=image.modality.value,
                            finger_position=image.finger_position, width=image.width, height=image.height)


def _histogram(histogram: Histogram) -> pb.ScoreHistogram:
    return pb.ScoreHistogram(edges=list(histogram.edges), counts=histogram.counts)


class Casework:
    """The evidence and adjudication side of the service, over one store and one keyring."""

    def __init__(self, galleries: Galleries, keyring: Keyring) -> None:
        self.galleries = galleries
        self.store = galleries.store
        self.keyring = keyring

    # -- evidence images ---------------------------------------------------------------------
    @staticmethod
    def sample_evidence(samples: Sequence[pb.Sample]) -> list[EvidenceImage | None]:
        """The kept form of each image sample (None for template samples), in sample order."""
        kept: list[EvidenceImage | None] = []
        for sample in samples:
            kind = sample.WhichOneof("kind")
            if kind in ("face", "finger"):
                message = getattr(sample, kind)
                kept.append(evidence_of(Modality.named(kind), message.image, getattr(message, "dpi", 0.0), getattr(message, "position", 0)))
            else:
                kept.append(None)
        return kept

    def keep_enrolled(
        self, gallery: str, subject_id: str, templates: Sequence[Template], sample_of: Sequence[int],
        images: Sequence[EvidenceImage | None], template_ids: Sequence[int],
    ) -> int:
        """Seal and store each image-derived template's image under its template id (after the enrolment committed).

        ``templates`` are what the gallery was handed (one per extracted face or print) and
        ``sample_of`` their request sample; the gallery stores them split as ``split_samples`` says,
        in that order, which is how template ids map back to samples.
        """
        sealed: dict[int, bytes] = {}
        for template_id, (position, _) in zip(template_ids, split_samples(templates)):
            image = images[sample_of[position]]
            if image is not None:
                sealed[template_id] = self.keyring.seal(image, sample_aad(gallery, subject_id, template_id))
        return self.store.put_sample_images(gallery, subject_id, sealed) if sealed else 0

    def image(self, request: pb.GetImageRequest, principal: Principal) -> pb.EvidenceImage:
        """GetImage: an enrolled sample's image (scope checked by the interceptor) or a search probe's (the record's readers)."""
        _check_purpose(request.purpose)
        target = request.WhichOneof("target")
        if target == "sample":
            ref = request.sample
            gallery = self.galleries.get(ref.gallery, "sample.gallery").name
            sealed = self.store.sample_image(gallery, ref.subject_id, ref.template_id)
            if sealed is None:
                raise NotFound(f"no image is kept for template {ref.template_id} of subject {ref.subject_id!r} in gallery {gallery!r}")
            return _image_message(self.keyring.open_sealed(sealed, sample_aad(gallery, ref.subject_id, ref.template_id)))
        if target == "probe":
            search = self._readable(request.probe.search_id, principal, "probe.search_id")
            sealed = self.store.probe_image(search.search_id, request.probe.sample_index)
            if sealed is None:
                raise NotFound(f"search {search.search_id!r} keeps no image for sample {request.probe.sample_index}")
            return _image_message(self.keyring.open_sealed(sealed, probe_aad(search.search_id, request.probe.sample_index)))
        raise InvalidArgument("target", "set sample (an enrolled sample's image) or probe (a search's probe image)")

    # -- search records ----------------------------------------------------------------------
    def record_search(
        self, principal: Principal, request: pb.IdentifyRequest, response: pb.IdentifyResponse, probes: Sequence[EvidenceImage | None]
    ) -> str:
        """Keep an examiner's Identify as a search record with its probe images; returns its id ('' for other roles)."""
        if principal.role not in EXAMINERS:
            return ""
        galleries = tuple(dict.fromkeys(request.galleries))
        search = SearchRecord(
            search_id=new_search_id(),
            created_at=time.time(),
            examiner_id=principal.key_id,
            examiner=principal.name,
            role=principal.role,
            purpose=request.purpose.strip(),
            galleries=galleries,
            gallery_sizes={g: self.galleries.subjects_in([g]) for g in galleries},
            searched_subjects=response.searched_subjects,
            candidates=tuple(
                CandidateRecord(c.subject_id, c.gallery, c.score, c.fpir, c.hit, dict(c.modality_scores)) for c in response.candidates
            ),
            probe_modalities=tuple(self._probe_modality(s) for s in request.samples),
            probe_has_image=tuple(p is not None for p in probes),
        )
        sealed = {i: self.keyring.seal(p, probe_aad(search.search_id, i)) for i, p in enumerate(probes) if p is not None}
        self.store.put_search(to_stored(search), sealed)
        return search.search_id

    @staticmethod
    def _probe_modality(sample: pb.Sample) -> int:
        kind = sample.WhichOneof("kind")
        return sample.template.modality if kind == "template" else Modality.named(kind).value

    def _readable(self, search_id: str, principal: Principal, field: str = "search_id") -> SearchRecord:
        if not search_id:
            raise InvalidArgument(field, "is required")
        stored = self.store.get_search(search_id)
        if stored is None:
            raise NotFound(f"search {search_id!r} does not exist")
        search = from_stored(stored)
        if principal.role not in EXAMINERS | {"admin"} or not may_read(search, principal.key_id, principal.role):
            raise PermissionDenied(f"search {search_id!r} is neither yours nor awaiting your verification")
        return search

    def _candidate_message(self, c: CandidateRecord, principal: Principal, metadata: Mapping[tuple[str, str], dict]) -> pb.SearchCandidate:
        return pb.SearchCandidate(
            candidate=pb.Candidate(
                subject_id=c.subject_id, gallery=c.gallery, score=c.score, fpir=c.fpir, hit=c.hit,
                modality_scores=c.modality_scores, metadata=metadata.get((c.gallery, c.subject_id), {}),
                alert_level=metadata.get((c.gallery, c.subject_id), {}).get("alert_level", "match") if c.hit else "",
            ),
            status=int(c.status),
            decisions=[self._decision_message(d) for d in visible_decisions(c, principal.key_id, principal.role)],
        )

    @staticmethod
    def _decision_message(d: Decision) -> pb.Decision:
        return pb.Decision(decision_id=d.decision_id, examiner=d.examiner, kind=int(d.kind), reason=d.reason, decided_at=d.decided_at,
                           role=d.role)

    def _metadata(self, candidates: Sequence[CandidateRecord]) -> dict[tuple[str, str], dict]:
        """Names and the like are read live: a subject erased since the search shows none."""
        found: dict[tuple[str, str], dict] = {}
        for gallery in dict.fromkeys(c.gallery for c in candidates):
            if gallery in self.galleries.names():
                ids = [c.subject_id for c in candidates if c.gallery == gallery]
                found.update(((gallery, s), m) for s, m in self.store.subject_metadata(gallery, ids).items())
        return found

    def _search_message(self, search: SearchRecord, principal: Principal) -> pb.SearchRecord:
        metadata = self._metadata(search.candidates)
        return pb.SearchRecord(
            search_id=search.search_id, created_at=search.created_at, examiner=search.examiner, role=search.role,
            purpose=search.purpose, galleries=search.galleries, gallery_sizes=search.gallery_sizes,
            searched_subjects=search.searched_subjects,
            candidates=[self._candidate_message(c, principal, metadata) for c in search.candidates],
            probe_modalities=search.probe_modalities, probe_has_image=search.probe_has_image,
        )

    def get_search(self, request: pb.GetSearchRequest, principal: Principal) -> pb.SearchRecord:
        return self._search_message(self._readable(request.search_id, principal), principal)

    def list_searches(self, request: pb.ListSearchesRequest, principal: Principal) -> pb.ListSearchesResponse:
        if request.everyone and principal.role not in ("supervisor", "admin"):
            raise PermissionDenied(f"role {principal.role!r} lists only its own searches; everyone's are for supervisors")
        size = _page_size(request.page_size)
        try:
            offset = int(request.page_token or "0")
            if offset < 0:
                raise ValueError
        except ValueError:
            raise InvalidArgument("page_token", "is not a token this server gave out") from None
        page = self.store.list_searches(None if request.everyone else principal.key_id, "disputed" if request.disputed_only else "",
                                        offset, size + 1)
        more = len(page) > size
        return pb.ListSearchesResponse(
            searches=[self._search_message(from_stored(s), principal) for s in page[:size]],
            next_page_token=str(offset + size) if more else "",
        )

    def record_decision(self, request: pb.RecordDecisionRequest, principal: Principal) -> pb.SearchCandidate:
        if not request.search_id:
            raise InvalidArgument("search_id", "is required")
        decided: list[CandidateRecord] = []

        def change(stored):
            search = from_stored(stored)
            if not may_read(search, principal.key_id, principal.role):
                raise PermissionDenied(f"search {request.search_id!r} is neither yours nor awaiting your verification")
            updated, candidate = record_decision(
                search, request.gallery, request.subject_id, request.kind, request.reason, principal.key_id, principal.name, principal.role
            )
            decided.append(candidate)
            return to_stored(updated)

        self.store.update_search(request.search_id, change)
        candidate = decided[-1]
        return self._candidate_message(candidate, principal, self._metadata([candidate]))

    def verification_queue(self, request: pb.VerificationQueueRequest, principal: Principal) -> pb.VerificationQueueResponse:
        size = _page_size(request.page_size)
        items: list[pb.VerificationItem] = []
        offset = 0
        while len(items) < size:
            page = self.store.list_searches(None, "awaiting", offset, 200, oldest_first=True)
            if not page:
                break
            offset += len(page)
            for stored in page:
                search = from_stored(stored)
                for c in awaiting_for(search, principal.key_id):
                    message = self._candidate_message(replace(c, decisions=()), principal, self._metadata([c]))
                    items.append(pb.VerificationItem(search_id=search.search_id, purpose=search.purpose, created_at=search.created_at,
                                                     candidate=message))
        return pb.VerificationQueueResponse(items=items[:size])

    # -- oversight ---------------------------------------------------------------------------
    def oversight_report(self, request: pb.OversightReportRequest) -> pb.OversightReport:
        for name in ("since", "until"):
            if not math.isfinite(getattr(request, name)):
                raise InvalidArgument(name, "must be a finite number")
        until = request.until or time.time() + 1.0
        if until <= request.since:
            raise InvalidArgument("until", "must be after since")
        report = aggregate(from_stored(s) for s in self.store.searches_between(request.since, until))
        checked, problems = verify_log(self.store)
        return pb.OversightReport(
            rows=[pb.OversightRow(week=r.week, purpose_kind=r.purpose_kind, role=r.role, gallery=r.gallery, searches=r.searches,
                                  searches_with_hits=r.searches_with_hits, identifications=r.identifications, exclusions=r.exclusions,
                                  inconclusive=r.inconclusive) for r in report.rows],
            adjudicated_hits=report.adjudicated_hits, excluded_hits=report.excluded_hits, nominal_fmr=report.nominal_fmr,
            confirmed_scores=_histogram(report.confirmed_scores), excluded_scores=_histogram(report.excluded_scores),
            audit_chain_ok=not problems, audit_records=checked, audit_problems=problems,
        )


def casework_audit(method: str, request, response) -> dict:
    """What a casework call asked for and, when it answered, what it showed (ids, never images or names)."""
    if method == "GetImage":
        target = request.WhichOneof("target")
        if target == "sample":
            return {"subjects": [f"{request.sample.gallery}/{request.sample.subject_id}"], "template_id": request.sample.template_id,
                    "image": bool(response is not None)}
        if target == "probe":
            return {"search_id": request.probe.search_id, "sample_index": request.probe.sample_index, "image": bool(response is not None)}
        return {}
    if method == "GetSearch":
        shown = [f"{c.candidate.gallery}/{c.candidate.subject_id}" for c in response.candidates] if response is not None else []
        return {"search_id": request.search_id, "subjects": shown}
    if method == "RecordDecision":
        kinds = {1: "identification", 2: "exclusion", 3: "inconclusive"}
        return {"search_id": request.search_id, "subjects": [f"{request.gallery}/{request.subject_id}"],
                "decision": kinds.get(request.kind, str(request.kind)), "reason": request.reason,
                **({"candidate_status": pb.CandidateStatus.Name(response.status)} if response is not None else {})}
    if method == "GetOversightReport":
        return {"since": request.since, "until": request.until}
    return {}

