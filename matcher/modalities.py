"""The modality registry: which ``ModalityMatcher`` implements each ``Modality``.

Face and finger are registered here; another modality is registered by whoever composes the
system (``register(IrisModality())``), and galleries, stores and the transport pick it up through
``matcher_for`` without a change of their own.
"""

from __future__ import annotations

from matcher.errors import InvalidArgument
from matcher.finger.modality import FingerModality
from matcher.modality import Modality, ModalityMatcher
from matcher.templates import Template, validate_finger_position
from matcher.vector_modality import VectorModality

_REGISTERED: dict[Modality, ModalityMatcher] = {}


def register(implementation: ModalityMatcher) -> None:
    """Make ``implementation`` the matcher of its modality (replacing any earlier one)."""
    _REGISTERED[implementation.modality] = implementation


def unregister(modality: Modality) -> None:
    _REGISTERED.pop(modality, None)


def registered() -> tuple[Modality, ...]:
    """The modalities that have an implementation, in the order of their protobuf values."""
    return tuple(sorted(_REGISTERED, key=lambda m: m.value))


def matcher_for(modality: Modality) -> ModalityMatcher:
    try:
        return _REGISTERED[modality]
    except KeyError:
        raise InvalidArgument("modality", f"{modality.label} has no matcher on this server") from None


def modality_of(value: int, field: str) -> Modality:
    """The registered modality with protobuf value ``value``, or ``InvalidArgument`` naming ``field``."""
    modality = next((m for m in _REGISTERED if m.value == value), None)
    if modality is None:
        names = ", ".join(f"{m.value} ({m.label})" for m in registered())
        raise InvalidArgument(field, f"must be one of {names}, got {value}")
    return modality


def decode_template(modality: Modality, model_id: str, data: bytes, finger_position: int, field: str) -> Template:
    """A template a caller sent (``field`` names it in the request), decoded and checked by its modality."""
    if not model_id:
        raise InvalidArgument(f"{field}.model_id", "must not be empty")
    validate_finger_position(finger_position, f"{field}.finger_position")
    return Template(modality, model_id, matcher_for(modality).decode(data, f"{field}.vector"), finger_position)


def template_payload(template: Template) -> bytes:
    """The bytes a store keeps for ``template`` (and ``ExtractTemplate`` returns)."""
    return matcher_for(template.modality).payload(template.vector)


register(VectorModality(Modality.FACE))
register(FingerModality())
