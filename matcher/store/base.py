"""The store: the single source of truth for galleries, subjects, templates and the change log.

In-memory indexes are caches of the store; they can always be rebuilt from it, and snapshots
only make restarts faster.  Every backend (embedded SQLite, Redis) implements ``Store``.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from matcher.errors import ShanakhtError
from matcher.store.audit import AuditRecord
from matcher.templates import Modality, Template


@dataclass(frozen=True)
class ModalitySpec:
    """Which model's templates a gallery accepts for one modality."""

    modality: Modality
    model_id: str
    dimension: int
    #: The lowest quality a sample's image may have to be enrolled, on the modality's quality measure
    #: (``ModalityMatcher.quality_measure``: NFIQ 2 for fingers); 0 = no minimum.
    min_quality: int = 0

    def as_row(self) -> list:
        """The spec as the stores keep it (JSON): ``[modality, model_id, dimension, min_quality]``."""
        return [self.modality.value, self.model_id, self.dimension, self.min_quality]

    @classmethod
    def from_row(cls, row: list) -> "ModalitySpec":
        """Inverse of ``as_row``; rows written before gallery quality minimums have three values."""
        modality, model_id, dimension, *rest = row
        return cls(Modality(modality), model_id, int(dimension), int(rest[0]) if rest else 0)


@dataclass(frozen=True)
class GalleryRecord:
    """A gallery as stored: its name, decision threshold and modalities."""

    name: str
    threshold_fmr: float
    modalities: tuple[ModalitySpec, ...]
    description: str = ""
    quality_policy: str = "warn"  # what enrolment does with a sample that fails quality checks: warn or reject
    # When set (> 0), a 1:N candidate is a hit when its FPIR at the search's size is at most this,
    # instead of when its score reaches -log10(threshold_fmr): the threshold then follows the gallery's size.
    threshold_fpir: float = 0.0
    # Keep each enrolled image sample's image as evidence (sealed, erased with the subject).
    retain_images: bool = False

    def spec(self, modality: Modality) -> ModalitySpec | None:
        return next((m for m in self.modalities if m.modality is modality), None)


@dataclass(frozen=True)
class NewEnrollment:
    """One subject's enrolment as handed to the store (templates already validated)."""

    gallery: str
    subject_id: str
    templates: tuple[Template, ...]
    metadata: dict[str, str] = field(default_factory=dict)
    replace: bool = False


@dataclass(frozen=True)
class EnrollmentResult:
    """What the store committed for one enrolment."""

    subject_id: str
    template_ids: tuple[int, ...]
    sequence: int
    replaced_template_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class StoredTemplate:
    """A template row, vector included (used to rebuild and replay indexes)."""

    template_id: int
    subject_id: str
    modality: Modality
    model_id: str
    finger_position: int
    vector: np.ndarray


@dataclass(frozen=True)
class TemplateInfo:
    """A template row without its vector (what GetSubject shows)."""

    template_id: int
    modality: Modality
    model_id: str
    finger_position: int
    has_image: bool = False  # its sample's image is kept as evidence


@dataclass(frozen=True)
class SubjectRecord:
    """One enrolled subject."""

    gallery: str
    subject_id: str
    metadata: dict[str, str]
    templates: tuple[TemplateInfo, ...]
    enrolled_at: float
    sequence: int


@dataclass(frozen=True)
class Change:
    """One entry of the append-only change log.

    ``op`` is ``"upsert"`` (the subject's templates are now exactly ``template_ids``),
    ``"delete"`` (the subject is gone) or ``"gallery"`` (the gallery was created).
    Applying an entry twice gives the same state, so replay after a crash is safe.
    """

    sequence: int
    gallery: str
    subject_id: str
    op: str
    template_ids: tuple[int, ...]


@dataclass(frozen=True)
class StoredSearch:
    """A search record as a store keeps it: an opaque body (``matcher.adjudication``) and what lists filter on."""

    search_id: str
    created_at: float
    examiner_id: str  # the searcher's key id
    disputed: bool  # a candidate awaits a supervisor
    awaiting: bool  # a candidate awaits a second examiner
    body: str  # JSON


@dataclass(frozen=True)
class Principal:
    """Who may call the service: an API key (stored only as a salted hash) or a client certificate."""

    key_id: str
    name: str
    role: str
    galleries: tuple[str, ...]  # ("*",) = every gallery
    created_at: float
    key_salt: bytes = b""
    key_hash: bytes = b""
    cert_subject: str = ""  # the client certificate's common name, for mTLS principals
    revoked_at: float = 0.0
    #: A console user's sign-in name (unique among users), else empty: an API key or certificate principal.
    user: str = ""
    #: The user's argon2id password hash (PHC string); empty for keys and certificates.
    password_hash: str = ""


@dataclass(frozen=True)
class SessionRecord:
    """A console user's signed-in session: a short-lived random token, stored only as its SHA-256."""

    session_id: str
    key_id: str  # the user's principal
    token_hash: bytes
    created_at: float
    expires_at: float  # moves forward while the session is used (idle time-out)


@dataclass(frozen=True)
class SignInState:
    """Consecutive failed sign-ins of one user name, kept in the store so a restart does not reset them."""

    user: str
    failures: int = 0
    locked_until: float = 0.0


@dataclass(frozen=True)
class DedupJobRecord:
    """A de-duplication run as the store keeps it (``matcher.deduplication``).

    ``cursor``: every subject id at or below it (in string order) has been searched and its pairs
    stored; ``runner``/``lease_until``: which server process works on it, until when, so that
    replicas sharing a store never run one job twice.  ``state`` holds the proto's ``DeduplicationState`` values.
    """

    job_id: str
    gallery: str
    against: str
    min_score: float
    purpose: str
    started_by: str
    started_by_name: str
    state: int
    started_at: float
    subjects_total: int = 0
    subjects_done: int = 0
    pairs_found: int = 0
    cursor: str = ""
    finished_at: float = 0.0
    error: str = ""
    runner: str = ""
    lease_until: float = 0.0


@dataclass(frozen=True)
class DedupPairRecord:
    """A candidate duplicate pair of one run, its fused calibrated score and the score per modality label."""

    gallery_a: str
    subject_a: str
    gallery_b: str
    subject_b: str
    score: float
    modality_scores: dict[str, float] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.gallery_a, self.subject_a, self.gallery_b, self.subject_b)


class Store(abc.ABC):
    """Durable storage of galleries, subjects, templates and the change log.

    A method returns only once its write is durable: an acknowledged enrolment survives a
    ``kill -9`` of the process.
    """

    #: True when this process is the only writer, so every change passes through it in order.
    single_writer: bool = True

    def durability(self) -> str:
        """One sentence: what an acknowledged write survives, for the start-up log."""
        return "acknowledged writes are durable"

    def is_durable(self) -> bool:
        """Whether an acknowledged write survives a crash of the storage host."""
        return True

    def wait_for_changes(self, sequence: int, timeout: float) -> bool:
        """Block until the log holds an entry after ``sequence`` or ``timeout`` passes (replicas poll this)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.last_sequence() > sequence:
                return True
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
        return self.last_sequence() > sequence

    @abc.abstractmethod
    def create_gallery(self, gallery: GalleryRecord) -> int:
        """Create a gallery; return its change sequence. Raises ``AlreadyExists``."""

    @abc.abstractmethod
    def galleries(self) -> list[GalleryRecord]:
        """All galleries, by name."""

    @abc.abstractmethod
    def enroll(self, enrollments: Sequence[NewEnrollment]) -> list[EnrollmentResult | ShanakhtError]:
        """Commit several enrolments in one durable write (group commit).

        Each item succeeds or fails on its own (e.g. ``AlreadyExists``); the returned list has
        one entry per item, in order.
        """

    @abc.abstractmethod
    def delete_subject(self, gallery: str, subject_id: str) -> tuple[int, tuple[int, ...]]:
        """Delete a subject; return (sequence, removed template ids). Raises ``NotFound``."""

    @abc.abstractmethod
    def get_subject(self, gallery: str, subject_id: str) -> SubjectRecord:
        """One subject's record. Raises ``NotFound``."""

    @abc.abstractmethod
    def subject_metadata(self, gallery: str, subject_ids: Sequence[str]) -> dict[str, dict[str, str]]:
        """Metadata of several subjects at once (for candidate lists)."""

    @abc.abstractmethod
    def count_subjects(self, gallery: str) -> int:
        """Number of subjects enrolled in a gallery."""

    @abc.abstractmethod
    def iter_templates(self, gallery: str, modality: Modality, batch: int = 10_000) -> Iterator[list[StoredTemplate]]:
        """Every template of a gallery and modality, in template-id order, in batches."""

    @abc.abstractmethod
    def templates_by_id(self, template_ids: Sequence[int]) -> list[StoredTemplate]:
        """The templates that still exist among ``template_ids``."""

    @abc.abstractmethod
    def changes_since(self, sequence: int, limit: int = 10_000) -> list[Change]:
        """Change-log entries with a sequence greater than ``sequence``, oldest first."""

    @abc.abstractmethod
    def last_sequence(self) -> int:
        """The newest change-log sequence number (0 for an empty store)."""

    # -- principals and audit (access control lives above; the store only keeps them) ------
    @abc.abstractmethod
    def put_principal(self, principal: Principal) -> None:
        """Add a principal. Raises ``AlreadyExists`` for a taken key id or certificate subject."""

    @abc.abstractmethod
    def principals(self) -> list[Principal]:
        """Every principal, revoked ones included."""

    @abc.abstractmethod
    def get_principal(self, key_id: str) -> Principal | None:
        """One principal by key id."""

    @abc.abstractmethod
    def principal_for_cert(self, subject: str) -> Principal | None:
        """The (unrevoked) principal bound to a client-certificate subject."""

    @abc.abstractmethod
    def revoke_principal(self, key_id: str, at: float) -> None:
        """Mark a principal revoked. Raises ``NotFound``."""

    @abc.abstractmethod
    def principal_for_user(self, user: str) -> Principal | None:
        """The (unrevoked) console user with this sign-in name."""

    # -- console sign-in: sessions and failed attempts ----------------------------------------
    @abc.abstractmethod
    def put_session(self, session: SessionRecord) -> None:
        """Store a new session."""

    @abc.abstractmethod
    def get_session(self, session_id: str) -> SessionRecord | None:
        """One session by id (expired ones too: the caller decides)."""

    @abc.abstractmethod
    def touch_session(self, session_id: str, expires_at: float) -> None:
        """Move a session's expiry forward (it was used)."""

    @abc.abstractmethod
    def delete_session(self, session_id: str) -> None:
        """End a session; ending one that is gone is not an error."""

    @abc.abstractmethod
    def sign_in_state(self, user: str) -> SignInState:
        """The user name's failed-attempt count and lock."""

    @abc.abstractmethod
    def count_sign_in_failure(self, user: str, max_failures: int, lock_until: float) -> SignInState:
        """Atomically add one failure; the ``max_failures``-th locks the name until ``lock_until`` and restarts the count."""

    @abc.abstractmethod
    def clear_sign_in_failures(self, user: str) -> None:
        """Forget the failures (a successful sign-in, or a lock that has run out)."""

    @abc.abstractmethod
    def append_audit(self, payloads: Sequence[dict]) -> list[AuditRecord]:
        """Chain and durably append audit payloads, in order, in one write."""

    @abc.abstractmethod
    def audit_records(self, after: int = 0, limit: int = 10_000) -> list[AuditRecord]:
        """Audit records with a sequence above ``after``, exactly as stored."""

    @abc.abstractmethod
    def audit_head(self) -> tuple[int, str]:
        """The chain head: last sequence and hash, kept apart from the records."""

    # -- evidence images and search records (sealed by ``matcher.evidence`` before they get here) ----
    @abc.abstractmethod
    def put_sample_images(self, gallery: str, subject_id: str, sealed: dict[int, bytes]) -> int:
        """Keep sealed images by template id, durably; only for templates the subject still has. Returns how many were kept.

        Deleting the subject, or replacing its enrolment, erases them with its templates.
        """

    @abc.abstractmethod
    def sample_image(self, gallery: str, subject_id: str, template_id: int) -> bytes | None:
        """The sealed image of one of the subject's templates, or None."""

    @abc.abstractmethod
    def put_search(self, search: StoredSearch, probes: dict[int, bytes]) -> None:
        """Store a new search record and its sealed probe images (by sample index) in one durable write."""

    @abc.abstractmethod
    def get_search(self, search_id: str) -> StoredSearch | None:
        """One search record."""

    @abc.abstractmethod
    def update_search(self, search_id: str, change: Callable[[StoredSearch], StoredSearch]) -> StoredSearch:
        """Read, change and write back one record atomically (two examiners deciding at once both count). Raises ``NotFound``."""

    @abc.abstractmethod
    def list_searches(
        self, examiner_id: str | None = None, only: str = "", offset: int = 0, limit: int = 50, oldest_first: bool = False
    ) -> list[StoredSearch]:
        """Records, newest first: one examiner's (or all), ``only`` "disputed" or "awaiting" ones (or all)."""

    @abc.abstractmethod
    def searches_between(self, since: float, until: float) -> Iterator[StoredSearch]:
        """Every record made in [since, until), oldest first (oversight aggregates)."""

    @abc.abstractmethod
    def probe_image(self, search_id: str, sample_index: int) -> bytes | None:
        """A search probe's sealed image, or None."""

    @abc.abstractmethod
    def sealed_images(self) -> Iterator[tuple[tuple, bytes]]:
        """Every sealed image with its reference (``("sample", gallery, subject, template_id)`` or ``("probe", search_id, index)``)."""

    @abc.abstractmethod
    def reseal_image(self, reference: tuple, sealed: bytes) -> None:
        """Replace one sealed image in place (key rotation); a reference that is gone is skipped."""

    # -- de-duplication runs (``matcher.deduplication``) ---------------------------------------
    @abc.abstractmethod
    def put_dedup_job(self, job: DedupJobRecord) -> None:
        """Store a new run durably."""

    @abc.abstractmethod
    def get_dedup_job(self, job_id: str) -> DedupJobRecord | None:
        """One run, or None."""

    @abc.abstractmethod
    def dedup_jobs(self) -> list[DedupJobRecord]:
        """Every run, newest first."""

    @abc.abstractmethod
    def claim_dedup_job(self, job_id: str, runner: str, lease_until: float, now: float, steal: bool = False) -> DedupJobRecord | None:
        """Make ``runner`` the run's worker if it is RUNNING and free (its lease ran out, or ``steal``); None if not."""

    @abc.abstractmethod
    def checkpoint_dedup_job(
        self, job_id: str, runner: str, cursor: str, subjects_done: int, subjects_total: int,
        pairs: Sequence[DedupPairRecord], lease_until: float,
    ) -> DedupJobRecord | None:
        """In one atomic write: upsert ``pairs`` (a pair found again keeps its higher score), count the new ones
        into ``pairs_found``, move the cursor and progress, renew the lease.  Only while the run is RUNNING and
        ``runner``'s: returns None (nothing written) otherwise, so a cancelled run stops at its next batch."""

    @abc.abstractmethod
    def finish_dedup_job(self, job_id: str, state: int, finished_at: float, error: str = "", runner: str | None = None) -> DedupJobRecord | None:
        """Move a RUNNING run to a final state (of ``runner`` only, when given); None if it was not RUNNING."""

    @abc.abstractmethod
    def dedup_pairs(self, job_id: str) -> list[DedupPairRecord]:
        """Every pair a run stored so far."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections and files."""
