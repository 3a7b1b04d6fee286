"""One signature for every modality's extractor: a sample image → templates with a quality report.

The transport hands each image sample to the extractor of its modality and never asks which one
it is: ``FaceExtractor`` and ``FingerExtractor`` implement ``Extractor`` below, and another
modality's extractor does the same.  ``matcher.modality`` is the matching side of the same idea.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

from matcher.calibration import Calibration
from matcher.modality import Modality
from matcher.templates import Template

#: Why a sample is extracted: enrolment gates on quality, identification keeps every face of a frame.
Purpose = Literal["enroll", "identify", "verify", "extract"]

#: Gallery quality policies: accept with warnings, or refuse at enrolment what fails the checks.
QUALITY_POLICIES = ("warn", "reject")


@dataclass(frozen=True)
class SampleImage:
    """An encoded image as a caller sent it, with what the capture device knows about it."""

    data: bytes
    position: int = 0  # finger position 1–10 (ISO/IEC 19794-2), 0 unknown or not a finger
    dpi: float = 0.0  # scan resolution; 0: the modality's default


@dataclass(frozen=True)
class SampleQuality:
    """How much a template can be trusted: accepted, the warnings, and the numbers behind them."""

    accepted: bool = True
    warnings: tuple[str, ...] = ()
    measures: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Extraction:
    """One template taken from a sample, its quality, and (faces) where in the image it was found."""

    template: Template
    quality: SampleQuality
    box: tuple[float, float, float, float] | None = None


class Extractor(Protocol):
    """A modality's image → template pipeline, as the transport sees it."""

    modality: Modality
    model_id: str  # the template format galleries hold (model id of an embedder, record format of minutiae)
    dimension: int  # template length for fixed-length vectors, 0 for variable-length records

    def calibration(self) -> Calibration:
        """The shipped calibration table of the templates this extractor makes."""
        ...

    def extract_sample(
        self, image: SampleImage, purpose: Purpose, main_only: bool, policy: str, minimum: int = 0
    ) -> list[Extraction]:
        """Templates of the sample.

        ``main_only``: the caller wants one template even if the image shows several (the main
        face).  ``policy`` is a name from ``QUALITY_POLICIES``.  ``minimum``: the gallery's lowest
        accepted score on the modality's quality measure at enrolment (0: none; the matcher refuses
        a nonzero one for a modality without a quality measure).  Errors are ``InvalidArgument``
        subclasses whose field is relative to the sample (``image``, ``position``).
        """
        ...
