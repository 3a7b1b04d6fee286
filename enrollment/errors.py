"""Typed errors of the enrollment library, every modality's.

Each is a subclass of a ``matcher.errors`` class so that the transport maps it to a status code
through the same single table (``transport.interceptors``); the field is relative to the sample
(``image``), so the transport can qualify it with the request path (``samples[2].finger.image``).
"""

from __future__ import annotations

from collections.abc import Sequence

from matcher.errors import FailedPrecondition, InvalidArgument

IMAGE_FIELD = "image"


class ModelUnavailable(FailedPrecondition):
    """A model listed in the manifest is missing from the cache or its SHA-256 differs.

    The server refuses to start on this error: serving with a wrong model would produce
    templates that silently do not match the gallery.
    """


class ImageDecodeError(InvalidArgument):
    """The bytes are not an image we accept (format, size, truncation, decompression bomb)."""

    def __init__(self, detail: str, field: str = IMAGE_FIELD) -> None:
        super().__init__(field, detail)


class NoFaceFound(InvalidArgument):
    """The image decoded, but no face could be located in it."""

    def __init__(self, detail: str = "no face found in the image", field: str = IMAGE_FIELD) -> None:
        super().__init__(field, detail)


class MultipleFaces(InvalidArgument):
    """Enrollment needs exactly one face; the image holds several and the request did not pick one."""

    def __init__(self, count: int, field: str = IMAGE_FIELD) -> None:
        super().__init__(
            field,
            f"{count} faces found; enrollment needs exactly one (ask for the largest face to pick one)",
        )
        self.count = count


class NoFingerprint(InvalidArgument):
    """The image decoded, but it holds no fingerprint (blank, a face photo, too few ridges)."""

    def __init__(self, detail: str = "no fingerprint found in the image", field: str = IMAGE_FIELD) -> None:
        super().__init__(field, detail)


class LowQuality(InvalidArgument):
    """The trait is there but fails the gallery's quality policy; ``reasons`` says why, one per check."""

    trait = "face"

    def __init__(self, reasons: Sequence[str], field: str = IMAGE_FIELD) -> None:
        self.reasons = tuple(reasons)
        super().__init__(field, f"{self.trait} quality too low: " + "; ".join(self.reasons))


class LowFingerQuality(LowQuality):
    """A fingerprint is there but too poor to enrol."""

    trait = "fingerprint"
