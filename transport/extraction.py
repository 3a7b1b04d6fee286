"""Request samples → templates: a ``pb.Sample`` decoded by its modality, whichever it is.

Keeps ``server.py`` thin.  A template sample is decoded by its modality's matcher
(``matcher.modalities``); an image sample (the ``face`` or ``finger`` of the proto's ``oneof``,
named like the modality) goes to that modality's extractor (``enrollment.extractor``).  Results
come back with their quality report as protobuf and, for faces, where in the photo they were found.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from enrollment.extractor import Extractor, Purpose, SampleImage, SampleQuality
from matcher.errors import InvalidArgument, ModalityUnavailable
from matcher.modalities import decode_template, modality_of
from matcher.modality import Modality
from matcher.templates import Template
from shanakht.v1 import identity_pb2 as pb


@dataclass(frozen=True)
class Extracted:
    """One template taken from one sample, with its quality and (faces) its box."""

    sample: int
    template: Template
    quality: pb.QualityReport
    box: tuple[float, float, float, float] | None = None


def quality_message(quality: SampleQuality) -> pb.QualityReport:
    return pb.QualityReport(accepted=quality.accepted, warnings=list(quality.warnings), measures=quality.measures)


class SampleDecoder:
    """Turns request samples into templates; one image extractor per modality."""

    def __init__(self, extractors: Sequence[Extractor]) -> None:
        self.extractors: dict[Modality, Extractor] = {e.modality: e for e in extractors}

    def decode(
        self,
        samples: Iterable[pb.Sample],
        purpose: Purpose,
        field: str = "samples",
        largest_face: bool = False,
        policy: str = "warn",
        minimums: Mapping[Modality, int] | None = None,
    ) -> list[Extracted]:
        """``minimums``: the gallery's lowest accepted quality per modality (enrolment only)."""
        extracted: list[Extracted] = []
        for i, sample in enumerate(samples):
            try:
                one = self._one(sample, purpose, largest_face, policy, minimums or {})
                extracted.extend(Extracted(i, t, q, box) for t, q, box in one)
            except InvalidArgument as error:
                raise error.under(f"{field}[{i}]")
        return extracted

    def _one(self, sample: pb.Sample, purpose: Purpose, main_only: bool, policy: str, minimums: Mapping[Modality, int]):
        kind = sample.WhichOneof("kind")
        if kind is None:
            *others, last = (f.name for f in sample.DESCRIPTOR.oneofs_by_name["kind"].fields)
            raise InvalidArgument("", f"no {', '.join(others)} or {last} set")
        if kind == "template":
            t = sample.template
            modality = modality_of(t.modality, "template.modality")
            template = decode_template(modality, t.model_id, t.vector, t.finger_position, "template")
            return [(template, pb.QualityReport(accepted=True), None)]
        modality = Modality.named(kind)
        extractor = self.extractors.get(modality)
        if extractor is None:
            raise ModalityUnavailable(f"{modality.label} images are not supported by this server yet; send a template sample instead")
        message = getattr(sample, kind)
        if not message.image:
            raise InvalidArgument(f"{kind}.image", "is empty")
        image = SampleImage(message.image, getattr(message, "position", 0), getattr(message, "dpi", 0.0))
        try:
            results = extractor.extract_sample(image, purpose, main_only, policy, minimums.get(modality, 0))
        except InvalidArgument as error:
            raise error.under(kind)
        return [(r.template, quality_message(r.quality), r.box) for r in results]
