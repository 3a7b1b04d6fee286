"""What a gallery needs to know of a biometric modality, and nothing else.

A modality (face, finger, the next one: iris, palm, a second face model) is one implementation of
``ModalityMatcher``: how its templates are checked, stored, indexed, searched 1:N, compared 1:1
and calibrated when no measured table exists, and how several probes of it combine.  ``Gallery``
and ``Galleries`` iterate over the modalities a gallery holds and ask their implementation; they
never branch on which one it is.  Implementations are registered in ``matcher.modalities``.

``Modality`` itself is only an identity (a number shared with the protobuf enum, and a label), so
a new modality is a new value plus its implementation, not an edit of every file.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Protocol

import numpy as np

from matcher import fusion
from matcher.calibration import Calibration
from matcher.errors import InvalidArgument
from matcher.policy import IndexPolicy

if TYPE_CHECKING:  # annotations only: templates and the store import this module
    from matcher.index import SubjectHits
    from matcher.store.base import ModalitySpec
    from matcher.templates import Template


class Modality:
    """A modality's identity: ``value`` as in the protobuf enum ``shanakht.v1.Modality``, ``label`` for people.

    One instance per value (``Modality(2) is Modality.FINGER``), so identities compare with ``is``
    and key dictionaries.  ``Modality(value, label)`` defines a new one; ``Modality(value)`` looks
    one up and raises ``ValueError`` for a value nobody defined, as an enum would.
    """

    __slots__ = ("value", "label")
    _by_value: ClassVar[dict[int, Modality]] = {}
    FACE: ClassVar[Modality]
    FINGER: ClassVar[Modality]

    value: int
    label: str

    def __new__(cls, value: int, label: str | None = None) -> Modality:
        known = cls._by_value.get(value)
        if known is not None:
            if label is not None and label != known.label:
                raise ValueError(f"modality {value} is {known.label!r}, not {label!r}")
            return known
        if label is None:
            raise ValueError(f"{value!r} is not a known modality")
        if any(m.label == label for m in cls._by_value.values()):
            raise ValueError(f"a modality labelled {label!r} exists already")
        self = super().__new__(cls)
        object.__setattr__(self, "value", int(value))
        object.__setattr__(self, "label", label)
        cls._by_value[int(value)] = self
        return self

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("a Modality is immutable")

    def __reduce__(self):
        return (Modality, (self.value, self.label))

    def __repr__(self) -> str:
        return f"Modality({self.value}, {self.label!r})"

    @classmethod
    def named(cls, label: str) -> Modality:
        """The modality with this label (``ValueError`` if none)."""
        for modality in cls._by_value.values():
            if modality.label == label:
                return modality
        raise ValueError(f"{label!r} is not a known modality")


Modality.FACE = Modality(1, "face")
Modality.FINGER = Modality(2, "finger")


class ModalityIndex(Protocol):
    """One gallery's in-memory index of one modality: a cache of the store, rebuilt from it at will."""

    applied_sequence: int

    def stack(self, vectors: Sequence[np.ndarray]) -> object: ...
    def set_subject(self, subject_id: str, template_ids: np.ndarray, vectors: object, sequence: int = 0) -> None: ...
    def add_many(self, subject_ids: list[str], template_ids: np.ndarray, vectors: object) -> None: ...
    def remove_subject(self, subject_id: str, sequence: int = 0) -> int: ...
    def mark_applied(self, sequence: int) -> None: ...
    def bulk_loading(self) -> AbstractContextManager: ...
    def apply_policy(self) -> None: ...
    def wait_for_build(self, timeout: float | None = None) -> None: ...
    def contains(self, subject_id: str) -> bool: ...
    def subject_ids(self) -> list[str]: ...
    def search(self, probes: object, top_subjects: int) -> list[SubjectHits]: ...
    def best_similarity(self, probes: object, subject_id: str) -> float | None: ...
    def memory_bytes(self) -> int: ...
    def save(self, path: Path) -> None: ...

    @property
    def rebuilding(self) -> bool: ...
    @property
    def size(self) -> int: ...
    @property
    def subject_count(self) -> int: ...
    @property
    def index_type(self) -> str: ...


class ModalityMatcher(abc.ABC):
    """The matching side of one modality.

    ``independent_probes`` says how several probes of this modality in one request combine:
    several photos of a face are views of one trait, so the best view counts (corrected for the
    extra chances); several fingers are independent evidence, so their calibrated scores add and
    the sum is turned back into ``-log10(FMR)`` (``matcher.fusion``).
    """

    modality: Modality
    independent_probes: bool = False
    #: The quality measure (a key of the quality report, 0–100) a gallery's ``min_quality`` is read
    #: on; "" = the modality has no single quality score, so a gallery cannot set a minimum.
    quality_measure: ClassVar[str] = ""

    # -- gallery settings and templates ---------------------------------------------------
    def check_spec(self, spec: ModalitySpec, field: str) -> None:
        """Refuse a gallery modality setting this modality cannot hold (``field`` names it in the request)."""
        if spec.min_quality and not self.quality_measure:
            raise InvalidArgument(
                f"{field}.min_quality", f"{self.modality.label} samples have no single quality score to set a minimum on; use 0"
            )
        if not 0 <= spec.min_quality <= 100:
            raise InvalidArgument(f"{field}.min_quality", f"must be 0–100 ({self.quality_measure}), got {spec.min_quality}")
        self.check_settings(spec, field)

    @abc.abstractmethod
    def check_settings(self, spec: ModalitySpec, field: str) -> None:
        """The modality's own checks of a gallery setting (dimension, model)."""

    def split(self, template: Template, field: str) -> list[Template]:
        """The templates a sent template stands for, in the form galleries check and store (``field`` names it).

        Called once per template sample, before the gallery checks model and contents, so the
        results are numbered by the sample they came from.  Most templates are one template
        (the default); a modality whose interchange records may carry several (fingers: one
        record, several finger views) returns one template per part, each in the stored form.
        """
        return [template]

    @abc.abstractmethod
    def check_template(self, template: Template, spec: ModalitySpec, field: str) -> None:
        """Refuse a template the gallery's setting ``spec`` cannot hold (model id already checked)."""

    def check_probes(self, probes: Sequence[tuple[int, Template]]) -> None:
        """Refuse probes of this modality that are one piece of evidence twice (numbered as in the request).

        Identical templates are refused for every modality already; a modality adds what else is
        "the same" (fingers: the same finger position twice).
        """

    @abc.abstractmethod
    def decode(self, data: bytes, field: str) -> np.ndarray:
        """A template's bytes as a caller sent them, validated: what ``Template.vector`` holds."""

    @abc.abstractmethod
    def payload(self, vector: np.ndarray) -> bytes:
        """The bytes a store keeps for a template (also what ``ExtractTemplate`` returns)."""

    @abc.abstractmethod
    def from_payload(self, data: bytes) -> np.ndarray:
        """Inverse of ``payload`` for rows the store wrote (validated on the way in)."""

    # -- indexes ----------------------------------------------------------------------------
    @abc.abstractmethod
    def new_index(self, spec: ModalitySpec, policy: IndexPolicy, vector_dir: Path | None) -> ModalityIndex:
        """An empty index for a gallery's templates of this modality."""

    @abc.abstractmethod
    def load_index(self, spec: ModalitySpec, policy: IndexPolicy, path: Path, vector_dir: Path | None) -> ModalityIndex | None:
        """The snapshot at ``path``, or ``None`` when it is absent or unusable (the gallery then rebuilds from the store)."""

    # -- scores -----------------------------------------------------------------------------
    @abc.abstractmethod
    def default_calibration(self, spec: ModalitySpec) -> Calibration:
        """The calibration of a model that ships no measured table (or raise: some modalities have no null model)."""

    def fuse(self, scores: Sequence[float], probes: int, calibration: Calibration | None = None) -> float:
        """One subject's calibrated scores from ``probes`` probes of this modality, as one calibrated score.

        Independent probes: ``-log10`` of the chance that impostor scores sum this high
        (``matcher.fusion.independent``; probes that found nothing count as 0).  Views of one
        trait: the best view, corrected for having had ``probes`` chances (``fusion.best_of``).
        Where the modality's calibration measured how far real probes of this many parts depart
        from that (``Calibration.fusion_for``), its correction is applied.
        """
        if probes <= 1:
            return float(max(scores))
        fused = fusion.independent(scores, probes) if self.independent_probes else fusion.best_of(max(scores), probes)
        correction = calibration.fusion_for(probes) if calibration is not None else None
        return fused if correction is None else float(correction.score(fused))

