"""Fingerprint enrollment: image bytes → minutiae template (LEADER), quality, ISO 19794-2 records."""

from enrollment.finger.errors import InvalidIsoRecord, LowFingerQuality, NoFingerprint
from enrollment.finger.iso19794 import from_iso, to_iso
from enrollment.finger.pipeline import FingerExtractor, FingerResult
from enrollment.finger.quality import FingerQuality
from enrollment.finger.template import FingerTemplate

__all__ = [
    "FingerExtractor",
    "FingerQuality",
    "FingerResult",
    "FingerTemplate",
    "InvalidIsoRecord",
    "LowFingerQuality",
    "NoFingerprint",
    "from_iso",
    "to_iso",
]
