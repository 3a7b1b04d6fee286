"""Search records and examiners' decisions: ACE-V with blind verification, as a small state machine.

Why here and not in the transport: who may conclude what about a candidate is the rule an
oversight body audits, so it is written once, as plain functions over frozen records, and the
RPCs only call it.  A candidate becomes a *confirmed identification* only when two different
examiners record *identification*, the second without having been shown the first's decision;
any disagreement between them is a *dispute* that only a supervisor (or admin) resolves.

States (``Status``) and what moves them:

- PENDING → first decision: identification → AWAITING_VERIFICATION; exclusion → EXCLUDED;
  inconclusive → INCONCLUSIVE.
- AWAITING_VERIFICATION → a *different* examiner: identification → CONFIRMED; exclusion or
  inconclusive → DISPUTED.  The examiner who identified cannot verify it (``NotPermitted``).
- DISPUTED → a supervisor's or admin's decision: identification → CONFIRMED, exclusion →
  EXCLUDED, inconclusive → INCONCLUSIVE.  Anyone else: ``NotPermitted``.
- CONFIRMED, EXCLUDED, INCONCLUSIVE are final: a further decision is ``FailedPrecondition``.
"""

from __future__ import annotations

import enum
import json
import re
import secrets
import time
from dataclasses import asdict, dataclass, field, replace

from matcher.errors import FailedPrecondition, InvalidArgument, NotFound, NotPermitted
from matcher.store.base import StoredSearch

MAX_REASON = 2000
RESOLVERS = frozenset({"supervisor", "admin"})  # roles whose decision resolves a dispute and who see every decision


class Kind(enum.IntEnum):
    """What an examiner concludes (values are the proto's ``DecisionKind``)."""

    IDENTIFICATION = 1
    EXCLUSION = 2
    INCONCLUSIVE = 3


class Status(enum.IntEnum):
    """Where a candidate stands (values are the proto's ``CandidateStatus``)."""

    PENDING = 0
    AWAITING_VERIFICATION = 1
    CONFIRMED = 2
    EXCLUDED = 3
    INCONCLUSIVE = 4
    DISPUTED = 5


FINAL = frozenset({Status.CONFIRMED, Status.EXCLUDED, Status.INCONCLUSIVE})
_OUTCOME = {Kind.IDENTIFICATION: Status.CONFIRMED, Kind.EXCLUSION: Status.EXCLUDED, Kind.INCONCLUSIVE: Status.INCONCLUSIVE}
_FIRST = {Kind.IDENTIFICATION: Status.AWAITING_VERIFICATION, Kind.EXCLUSION: Status.EXCLUDED, Kind.INCONCLUSIVE: Status.INCONCLUSIVE}


@dataclass(frozen=True)
class Decision:
    """One examiner's conclusion about one candidate."""

    decision_id: str
    examiner_id: str  # key id: who, unambiguously
    examiner: str  # display name
    role: str
    kind: Kind
    reason: str
    decided_at: float


@dataclass(frozen=True)
class CandidateRecord:
    """A candidate as the search returned it (no names: metadata is read live, so erasure reaches it), and its adjudication."""

    subject_id: str
    gallery: str
    score: float
    fpir: float
    hit: bool
    modality_scores: dict[str, float] = field(default_factory=dict)
    status: Status = Status.PENDING
    decisions: tuple[Decision, ...] = ()

    def decided_by(self, examiner_id: str) -> bool:
        return any(d.examiner_id == examiner_id for d in self.decisions)


@dataclass(frozen=True)
class SearchRecord:
    """What an investigator's search asked and found."""

    search_id: str
    created_at: float
    examiner_id: str
    examiner: str
    role: str
    purpose: str
    galleries: tuple[str, ...]
    gallery_sizes: dict[str, int]
    searched_subjects: int
    candidates: tuple[CandidateRecord, ...]
    probe_modalities: tuple[int, ...]  # Modality values, in sample order
    probe_has_image: tuple[bool, ...]

    def candidate(self, gallery: str, subject_id: str) -> CandidateRecord:
        for c in self.candidates:
            if (c.gallery, c.subject_id) == (gallery, subject_id):
                return c
        raise NotFound(f"subject {subject_id!r} of gallery {gallery!r} is not a candidate of search {self.search_id!r}")

    @property
    def disputed(self) -> bool:
        return any(c.status is Status.DISPUTED for c in self.candidates)

    @property
    def awaiting(self) -> bool:
        return any(c.status is Status.AWAITING_VERIFICATION for c in self.candidates)


def new_search_id() -> str:
    return "s" + secrets.token_hex(8)


def purpose_kind(purpose: str) -> str:
    """The purpose's leading word of letters ("FIR", "case"), never the reference itself; "other" when there is none."""
    match = re.match(r"\s*([^\W\d_]+)", purpose)
    return match.group(1) if match else "other"


# -- the state machine ------------------------------------------------------------------------
def decide(candidate: CandidateRecord, decision: Decision, searcher_id: str) -> CandidateRecord:
    """The candidate after ``decision``, or the error that refuses it (nothing changes then)."""
    status = candidate.status
    if status in FINAL:
        raise FailedPrecondition(f"candidate {candidate.gallery}/{candidate.subject_id} is already {status.name.lower()}; decisions are final")
    if status is Status.PENDING:
        new = _FIRST[decision.kind]
    elif status is Status.AWAITING_VERIFICATION:
        identifier = next(d for d in reversed(candidate.decisions) if d.kind is Kind.IDENTIFICATION)
        if identifier.examiner_id == decision.examiner_id:
            raise NotPermitted("you recorded this identification; a different examiner must verify it (blind verification)")
        new = Status.CONFIRMED if decision.kind is Kind.IDENTIFICATION else Status.DISPUTED
    else:  # DISPUTED
        if decision.role not in RESOLVERS:
            raise NotPermitted("the examiners disagreed on this candidate; only a supervisor may resolve the dispute")
        new = _OUTCOME[decision.kind]
    return replace(candidate, status=new, decisions=(*candidate.decisions, decision))


def record_decision(
    search: SearchRecord, gallery: str, subject_id: str, kind: int, reason: str, examiner_id: str, examiner: str, role: str
) -> tuple[SearchRecord, CandidateRecord]:
    """Validate and apply one decision; returns the new search record and the decided candidate."""
    if kind not in Kind._value2member_map_:
        raise InvalidArgument("kind", "must be DECISION_IDENTIFICATION, DECISION_EXCLUSION or DECISION_INCONCLUSIVE")
    reason = reason.strip()
    if not reason:
        raise InvalidArgument("reason", "is required: say why (what was compared, which features)")
    if len(reason) > MAX_REASON:
        raise InvalidArgument("reason", f"is {len(reason)} characters; at most {MAX_REASON}")
    current = search.candidate(gallery, subject_id)
    decision = Decision("d" + secrets.token_hex(8), examiner_id, examiner, role, Kind(kind), reason, time.time())
    decided = decide(current, decision, search.examiner_id)
    candidates = tuple(decided if c is current else c for c in search.candidates)
    return replace(search, candidates=candidates), decided


# -- who sees what ----------------------------------------------------------------------------
def may_read(search: SearchRecord, examiner_id: str, role: str) -> bool:
    """The owner; supervisors and admins; an investigator verifying it (a candidate awaits verification, or they decided one)."""
    if role in RESOLVERS or search.examiner_id == examiner_id:
        return True
    return search.awaiting or any(c.decided_by(examiner_id) for c in search.candidates)


def visible_decisions(candidate: CandidateRecord, examiner_id: str, role: str) -> tuple[Decision, ...]:
    """Blind verification: others' decisions stay hidden from an examiner until they have decided this candidate."""
    if role in RESOLVERS or candidate.decided_by(examiner_id):
        return candidate.decisions
    return ()


def awaiting_for(search: SearchRecord, examiner_id: str) -> list[CandidateRecord]:
    """Candidates this examiner may verify: awaiting a second examiner, not in their own search, not decided by them."""
    if search.examiner_id == examiner_id:
        return []
    return [c for c in search.candidates if c.status is Status.AWAITING_VERIFICATION and not c.decided_by(examiner_id)]


# -- storage form -----------------------------------------------------------------------------
def to_stored(search: SearchRecord) -> StoredSearch:
    body = json.dumps(asdict(search), sort_keys=True)
    return StoredSearch(search.search_id, search.created_at, search.examiner_id, search.disputed, search.awaiting, body)


def from_stored(stored: StoredSearch) -> SearchRecord:
    data = json.loads(stored.body)
    candidates = tuple(
        CandidateRecord(
            **{**c, "status": Status(c["status"]), "decisions": tuple(Decision(**{**d, "kind": Kind(d["kind"])}) for d in c["decisions"])}
        )
        for c in data["candidates"]
    )
    return SearchRecord(
        **{**data, "galleries": tuple(data["galleries"]), "candidates": candidates,
           "probe_modalities": tuple(data["probe_modalities"]), "probe_has_image": tuple(data["probe_has_image"])}
    )
