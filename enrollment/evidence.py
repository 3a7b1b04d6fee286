"""Sample bytes → the bounded image kept as evidence: faces JPEG ≤ 640 px, fingers PNG at 500 dpi.

Why normalise: a client may send a 20 MB camera photo; an examiner comparing a probe with a
candidate needs a few hundred pixels of face, and a million subjects' originals would cost
terabytes.  Fingers keep every ridge: lossless PNG after the pipeline's own 500-dpi resampling
(``enrollment.finger.image``), so the kept print is the one the minutiae were found on.  Decoding
goes through the same guarded decoders as extraction (size and bomb limits, EXIF orientation).
"""

from __future__ import annotations

import io

import cv2
from PIL import Image

from enrollment.finger.image import decode_finger
from enrollment.image import decode_image
from matcher.evidence import EvidenceImage
from matcher.modality import Modality

FACE_MAX_SIDE = 640
FACE_JPEG_QUALITY = 90


def face_evidence(data: bytes) -> EvidenceImage:
    """The photo upright, shrunk to at most 640 px on its long side, as a JPEG."""
    decoded = decode_image(data)
    rgb = decoded.rgb
    height, width = rgb.shape[:2]
    scale = min(1.0, FACE_MAX_SIDE / max(height, width))
    if scale < 1.0:
        width, height = max(1, round(width * scale)), max(1, round(height * scale))
        rgb = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format="JPEG", quality=FACE_JPEG_QUALITY, optimize=True)
    return EvidenceImage(out.getvalue(), "image/jpeg", Modality.FACE, width, height)


def finger_evidence(data: bytes, dpi: float = 0.0, position: int = 0) -> EvidenceImage:
    """The print in 8-bit grey at 500 dpi (as the minutiae were found), as a PNG."""
    finger = decode_finger(data, dpi)
    out = io.BytesIO()
    Image.fromarray(finger.gray, mode="L").save(out, format="PNG", optimize=True)
    return EvidenceImage(out.getvalue(), "image/png", Modality.FINGER, finger.width, finger.height, position)


def evidence_of(modality: Modality, data: bytes, dpi: float = 0.0, position: int = 0) -> EvidenceImage:
    """The kept form of one image sample of ``modality``."""
    if modality is Modality.FACE:
        return face_evidence(data)
    if modality is Modality.FINGER:
        return finger_evidence(data, dpi, position)
    raise ValueError(f"no evidence form for {modality.label} images")
