"""Fingerprint bytes → 8-bit grayscale at 500 dpi.

Scanners deliver TIFF, BMP, PNG or PGM (all through ``enrollment.image.decode_image`` with its
size and bomb limits), headerless raw 8-bit pixels of a known size, or WSQ (the FBI wavelet
codec) when the optional ``wsq`` package (idemia's NBIS wrapper, a Pillow plug-in) is installed.

LEADER was trained at 500 dpi, so a print from a 569-dpi sensor is resampled first: minutiae
detection depends on the ridge period in pixels.  File headers are not trusted for dpi (FVC
TIFFs say 1 dpi); the caller's dpi wins, then a plausible header value, then 500.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import cv2
import numpy as np

from enrollment.errors import ImageDecodeError
from enrollment.image import DEFAULT_LIMITS, DecodeLimits, decode_image, height_of, width_of

TARGET_DPI = 500
MIN_DPI, MAX_DPI = 150, 1500
MIN_SIDE_500DPI = 64  # ≈ 3 mm: smaller than this holds too few ridges to match
WSQ_MAGIC = b"\xff\xa0\xff\xa8"
_RAW_ANY_LIMITS = DecodeLimits(min_side=1)  # we check the side ourselves, with a fingerprint message


@dataclass(frozen=True)
class FingerImage:
    """Grayscale ``uint8 [H, W]`` resampled to 500 dpi, plus what it was before."""

    gray: np.ndarray
    source_format: str
    source_width: int
    source_height: int
    source_dpi: float
    scale: float  # 500-dpi pixels per source pixel

    @property
    def pixels(self) -> np.ndarray:
        return self.gray

    width = property(width_of)
    height = property(height_of)


def decode_finger(data: bytes, dpi: float = 0, limits: DecodeLimits = DEFAULT_LIMITS) -> FingerImage:
    """Decode an encoded fingerprint image (TIFF/BMP/PNG/PGM/JPEG, or WSQ) and bring it to 500 dpi."""
    if isinstance(data, (bytes, bytearray, memoryview)) and bytes(data[:4]) == WSQ_MAGIC:
        gray, header_dpi, fmt = _decode_wsq(bytes(data), limits)
    else:
        relaxed = DecodeLimits(limits.max_encoded_bytes, limits.max_pixels, limits.max_side, min_side=1)
        decoded = decode_image(data, relaxed)
        gray = cv2.cvtColor(decoded.rgb, cv2.COLOR_RGB2GRAY) if not decoded.grayscale else decoded.rgb[:, :, 0]
        header_dpi, fmt = _header_dpi(data), decoded.format
    return _normalise(np.ascontiguousarray(gray), fmt, _choose_dpi(dpi, header_dpi))


def decode_raw(data: bytes, width: int, height: int, dpi: float = 0, limits: DecodeLimits = DEFAULT_LIMITS) -> FingerImage:
    """Headerless 8-bit grayscale pixels, row-major, of a size the caller states."""
    if width <= 0 or height <= 0:
        raise ImageDecodeError(f"raw image size {width}×{height} is not positive")
    if width > limits.max_side or height > limits.max_side or width * height > limits.max_pixels:
        raise ImageDecodeError(f"raw image size {width}×{height} exceeds the limits")
    if len(data) != width * height:
        raise ImageDecodeError(f"raw image is {len(data)} bytes; {width}×{height} 8-bit pixels need {width * height}")
    gray = np.frombuffer(bytes(data), dtype=np.uint8).reshape(height, width).copy()
    return _normalise(gray, "RAW", _choose_dpi(dpi, 0))


def wsq_available() -> bool:
    try:
        import wsq  # noqa: F401  (registers the Pillow plug-in)
    except ImportError:
        return False
    return True


def _decode_wsq(data: bytes, limits: DecodeLimits) -> tuple[np.ndarray, float, str]:
    if len(data) > limits.max_encoded_bytes:
        raise ImageDecodeError(f"image is {len(data)} bytes; the limit is {limits.max_encoded_bytes} bytes")
    if not wsq_available():
        raise ImageDecodeError("WSQ images need the optional `wsq` package, which is not installed")
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            if width * height > limits.max_pixels or max(width, height) > limits.max_side:
                raise ImageDecodeError(f"image declares {width}×{height} pixels; over the limit (refused before decoding)")
            gray = np.asarray(image.convert("L"), dtype=np.uint8)
            dpi = float((image.info.get("dpi") or (0, 0))[0] or 0)
    except ImageDecodeError:
        raise
    except Exception as exc:  # the WSQ decoder raises plain exceptions on corrupt data
        raise ImageDecodeError(f"WSQ data is corrupt or truncated: {exc}") from exc
    return gray, dpi, "WSQ"


def _header_dpi(data: bytes) -> float:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(bytes(data))) as image:
            dpi = image.info.get("dpi")
            return float(dpi[0]) if dpi else 0.0
    except Exception:  # header already read successfully once; any oddity means "unknown"
        return 0.0


def _choose_dpi(requested: float, header: float) -> float:
    if requested:
        if not MIN_DPI <= requested <= MAX_DPI:
            raise ImageDecodeError(f"dpi {requested} is outside {MIN_DPI}–{MAX_DPI}", field="dpi")
        return float(requested)
    return float(header) if MIN_DPI <= header <= MAX_DPI else float(TARGET_DPI)


def _normalise(gray: np.ndarray, fmt: str, dpi: float) -> FingerImage:
    h, w = gray.shape
    scale = TARGET_DPI / dpi
    if abs(scale - 1.0) > 1e-3:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
        resampled = cv2.resize(gray, size, interpolation=interpolation)
    else:
        scale, resampled = 1.0, gray
    if min(resampled.shape) < MIN_SIDE_500DPI:
        raise ImageDecodeError(
            f"image is {w}×{h} pixels at {dpi:g} dpi; too small to hold a fingerprint "
            f"(at least {MIN_SIDE_500DPI} px per side at {TARGET_DPI} dpi)"
        )
    return FingerImage(np.ascontiguousarray(resampled), fmt, w, h, dpi, scale)
