"""Typed errors of the fingerprint pipeline.

Subclasses of the library's ``InvalidArgument`` (through ``enrollment.errors``), so ``server.py``
maps them with the same table as the face errors; ``field`` is the request field at fault.
"""

from __future__ import annotations

from collections.abc import Sequence

from enrollment.errors import IMAGE_FIELD, ImageDecodeError, LowQuality
from matcher.errors import InvalidArgument

__all__ = ["ImageDecodeError", "LowFingerQuality", "NoFingerprint"]


class NoFingerprint(InvalidArgument):
    """The image decoded, but it holds no fingerprint (blank, a face photo, too few ridges)."""

    def __init__(self, detail: str = "no fingerprint found in the image", field: str = IMAGE_FIELD) -> None:
        super().__init__(field, detail)


class LowFingerQuality(LowQuality):
    """A fingerprint is there but too poor to enrol; ``reasons`` says why, one per check."""

    def __init__(self, reasons: Sequence[str], field: str = IMAGE_FIELD) -> None:
        super().__init__(reasons, field)
        self.detail = self.message = "fingerprint quality too low: " + "; ".join(self.reasons)
        self.args = (self.message,)
