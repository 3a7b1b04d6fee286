"""Fingerprint enrollment: image bytes → minutiae template (LEADER) and quality.

Templates and their ISO 19794-2 records belong to the matcher (``matcher.finger``), which must
read stored records without depending on this package.
"""

from enrollment.finger.errors import LowFingerQuality, NoFingerprint
from enrollment.finger.pipeline import FingerExtractor, FingerResult
from enrollment.finger.quality import FingerQuality

__all__ = ["FingerExtractor", "FingerQuality", "FingerResult", "LowFingerQuality", "NoFingerprint"]
