"""Image bytes → RGB pixels, refusing anything that is not a sane photo before spending memory on it.

Why it is careful: the service decodes bytes sent by clients.  A 50 KB PNG can declare
30000×30000 pixels (2.7 GB once decoded), a truncated upload can decode to half a grey image
that still "works", and a phone photo is stored sideways with an EXIF flag.  So we:

* cap the encoded size before touching the bytes;
* read only the header first (Pillow's ``Image.open`` is lazy) and refuse oversized dimensions
  before any pixel is decoded;
* refuse truncated files instead of padding them (Pillow's ``LOAD_TRUNCATED_IMAGES`` stays off);
* apply the EXIF orientation, so the face is upright for the detector;
* accept a fixed list of formats, so an exotic decoder is never reached from the network.
"""

from __future__ import annotations

import io
import logging
import re
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from enrollment.errors import ImageDecodeError

log = logging.getLogger(__name__)

MAX_ENCODED_BYTES = 20 * 1024 * 1024
MAX_PIXELS = 50_000_000  # e.g. 8660×5773; a 48 MP phone photo still passes
MAX_SIDE = 20_000
MIN_SIDE = 32  # smaller than this cannot hold a face we could match

# Pillow format names we decode.  "PPM" covers PGM/PPM/PBM; "MPO" is how Pillow names many
# camera JPEGs that carry a second (preview) frame.
ALLOWED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "BMP", "TIFF", "WEBP", "PPM"})

ImageFile.LOAD_TRUNCATED_IMAGES = False


def width_of(image) -> int:
    """Columns of an image whose ``pixels`` are a ``[H, W, …]`` array."""
    return int(image.pixels.shape[1])


def height_of(image) -> int:
    """Rows of an image whose ``pixels`` are a ``[H, W, …]`` array."""
    return int(image.pixels.shape[0])


@dataclass(frozen=True)
class DecodedImage:
    """Decoded pixels, upright, as ``uint8`` RGB ``[H, W, 3]`` (OpenCV-compatible layout, RGB order)."""

    rgb: np.ndarray
    format: str
    grayscale: bool  # the source had one channel; kept so quality checks can know colour was absent
    exif_orientation: int  # 1 = as stored; 2–8 = the transform that was applied

    @property
    def pixels(self) -> np.ndarray:
        return self.rgb

    width = property(width_of)
    height = property(height_of)


@dataclass(frozen=True)
class DecodeLimits:
    """Bounds applied to every image; a gallery may tighten them."""

    max_encoded_bytes: int = MAX_ENCODED_BYTES
    max_pixels: int = MAX_PIXELS
    max_side: int = MAX_SIDE
    min_side: int = MIN_SIDE


DEFAULT_LIMITS = DecodeLimits()


def decode_image(data: bytes, limits: DecodeLimits = DEFAULT_LIMITS) -> DecodedImage:
    """Decode ``data`` into an upright RGB image or raise ``ImageDecodeError`` saying why not."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ImageDecodeError(f"expected image bytes, got {type(data).__name__}")
    size = len(data)
    if size == 0:
        raise ImageDecodeError("image is empty (0 bytes)")
    if size > limits.max_encoded_bytes:
        raise ImageDecodeError(f"image is {size} bytes; the limit is {limits.max_encoded_bytes} bytes")

    with warnings.catch_warnings():
        # Our own limit is stricter than Pillow's bomb warning; don't let it leak to logs.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(bytes(data)))
        except Image.DecompressionBombError as exc:
            # Pillow's own guard (at 2× its MAX_IMAGE_PIXELS) fires inside open() on the header.
            declared = re.search(r"\((\d+) pixels\)", str(exc))
            amount = f"{int(declared.group(1))} pixels" if declared else "too many pixels"
            raise ImageDecodeError(
                f"image declares {amount}; the limit is {limits.max_pixels} pixels (refused before decoding)"
            ) from exc
        except UnidentifiedImageError as exc:
            raise ImageDecodeError("not a recognised image format (JPEG, PNG, BMP, TIFF, WebP, PGM/PPM expected)") from exc
        except (OSError, ValueError, SyntaxError) as exc:
            raise ImageDecodeError(f"cannot read image header: {exc}") from exc

        with image:
            fmt = image.format or "unknown"
            if fmt not in ALLOWED_FORMATS:
                raise ImageDecodeError(f"image format {fmt} is not accepted (JPEG, PNG, BMP, TIFF, WebP, PGM/PPM are)")
            width, height = image.size  # from the header only: nothing decoded yet
            _check_dimensions(width, height, limits)
            try:
                image.load()
                orientation = _exif_orientation(image)
                upright = ImageOps.exif_transpose(image) if orientation not in (0, 1) else image
                rgb, grayscale = _to_rgb(upright)
            except Image.DecompressionBombError as exc:
                raise ImageDecodeError(f"image declares too many pixels (refused): {exc}") from exc
            except (OSError, ValueError, SyntaxError, EOFError) as exc:
                # Pillow reports truncation as OSError("image file is truncated ...").
                raise ImageDecodeError(f"image data is corrupt or truncated ({fmt}): {exc}") from exc

    if fmt in ("JPEG", "MPO") and not _jpeg_has_end_marker(data):
        # libjpeg pads a JPEG cut at a restart boundary with grey and only warns; refuse it.
        raise ImageDecodeError("JPEG is truncated (no end-of-image marker)")
    return DecodedImage(rgb=rgb, format=fmt, grayscale=grayscale, exif_orientation=max(orientation, 1))


def _check_dimensions(width: int, height: int, limits: DecodeLimits) -> None:
    if width < limits.min_side or height < limits.min_side:
        raise ImageDecodeError(
            f"image is {width}×{height} pixels; too small to hold a face (at least {limits.min_side} px per side)"
        )
    if width > limits.max_side or height > limits.max_side or width * height > limits.max_pixels:
        raise ImageDecodeError(
            f"image declares {width}×{height} pixels; the limit is {limits.max_pixels} pixels "
            f"and {limits.max_side} px per side (refused before decoding)"
        )


def _exif_orientation(image: Image.Image) -> int:
    try:
        return int(image.getexif().get(0x0112, 1) or 1)
    except (ValueError, TypeError, OSError, SyntaxError):
        return 1  # unreadable EXIF: keep the pixels as stored


def _to_rgb(image: Image.Image) -> tuple[np.ndarray, bool]:
    """Convert any accepted Pillow mode to ``uint8`` RGB; transparent areas become white."""
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        # 16-bit and float greyscale (scanners, some TIFF/PGM): scale to 8 bits, don't clip.
        array = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if mode.startswith("I;16") or array.max(initial=0) > 255 else 255.0
        gray = np.clip(array * (255.0 / peak), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2)), True
    grayscale = mode in ("1", "L", "LA", "La")
    if mode == "P":
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "La", "RGBa", "PA"):
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        background.alpha_composite(image.convert("RGBA"))
        image = background
    rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
    return np.ascontiguousarray(rgb), grayscale


def _jpeg_has_end_marker(data: bytes) -> bool:
    """True when an end-of-image marker (FFD9) follows the last start-of-scan marker (FFDA).

    Entropy-coded data byte-stuffs 0xFF, so FFD9 cannot occur inside a scan; an EXIF thumbnail's
    own FFD9 comes before the main scan and does not count.  Vendor trailers after EOI are fine.
    """
    view = bytes(data)
    return view.rfind(b"\xff\xd9") > view.rfind(b"\xff\xda") >= 0
