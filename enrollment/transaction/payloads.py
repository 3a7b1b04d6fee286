"""A record's image payload → encoded bytes our decoders take, its size checked against the record.

WSQ, baseline JPEG and PNG pass through unchanged (the modality's decoder reads them, and the
evidence kept is the agency's own image); uncompressed pixels, lossless JPEG (SOF3, which neither
Pillow nor OpenCV decodes) and JPEG 2000 (not among the formats the face and finger decoders open
from the network) become PNG here, losslessly.  A payload whose own header disagrees with the
record's declared width and height is refused: one of the two is wrong, and a finger image at a
wrong scale matches nobody.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from enrollment.errors import ImageDecodeError
from enrollment.finger.image import WSQ_MAGIC
from enrollment.image import DEFAULT_LIMITS, DecodeLimits

#: Compression names of Type-10/13/14 (field x.011) and their Type-4 binary codes (GCA).
PASS_THROUGH = frozenset({"WSQ20", "JPEGB", "PNG"})
CONVERTED = frozenset({"NONE", "JPEGL", "JP2", "JP2L"})
TYPE4_COMPRESSION = {0: "NONE", 1: "WSQ20", 2: "JPEGB", 3: "JPEGL", 4: "JP2", 5: "JP2L", 6: "PNG"}
_PIL_FORMAT = {"WSQ20": "WSQ", "JPEGB": "JPEG", "PNG": "PNG", "JP2": "JPEG2000", "JP2L": "JPEG2000"}


def encoded_image(
    payload: bytes, compression: str, width: int, height: int, limits: DecodeLimits = DEFAULT_LIMITS
) -> bytes:
    """The image as bytes a decoder takes; ``ImageDecodeError`` when it is not the image the record declares."""
    if width <= 0 or height <= 0 or width > limits.max_side or height > limits.max_side or width * height > limits.max_pixels:
        raise ImageDecodeError(f"declared size {width}×{height} is outside the limits ({limits.max_side} px a side)")
    if not payload:
        raise ImageDecodeError("the record holds no image data")
    if compression == "NONE":
        if len(payload) != width * height:
            raise ImageDecodeError(f"{len(payload)} bytes of uncompressed pixels; {width}×{height} 8-bit pixels need {width * height}")
        return _png(np.frombuffer(payload, np.uint8).reshape(height, width))
    if compression == "JPEGL":
        import imagecodecs

        try:
            pixels = imagecodecs.ljpeg_decode(payload)
        except Exception as exc:  # the codec raises its own error type
            raise ImageDecodeError(f"lossless JPEG does not decode ({exc})") from exc
        _check_size(pixels.shape[1], pixels.shape[0], width, height)
        if pixels.dtype != np.uint8:
            raise ImageDecodeError(f"lossless JPEG of {pixels.dtype} samples; 8-bit expected")
        return _png(pixels)
    if compression not in _PIL_FORMAT:
        raise ImageDecodeError(f"compression {compression!r} is not one of {', '.join(sorted(PASS_THROUGH | CONVERTED))}")
    if compression == "WSQ20":
        import wsq  # noqa: F401  (registers the WSQ plug-in with Pillow)
    try:
        image = Image.open(io.BytesIO(payload), formats=[_PIL_FORMAT[compression]])
        _check_size(image.width, image.height, width, height)
        if compression in PASS_THROUGH and not (compression == "WSQ20" and payload[:4] != WSQ_MAGIC):
            return payload  # (a WSQ stream whose tables follow SOI in another order than our decoder sniffs for: as PNG)
        image.load()
    except ImageDecodeError:
        raise
    except Exception as exc:  # Pillow raises several types for undecodable data
        raise ImageDecodeError(f"not a {compression} image ({exc})") from exc
    return _png(np.asarray(image.convert("L") if image.mode not in ("L", "RGB") else image))


def _check_size(found_w: int, found_h: int, width: int, height: int) -> None:
    if (found_w, found_h) != (width, height):
        raise ImageDecodeError(f"the image is {found_w}×{found_h} but the record declares {width}×{height}")


def _png(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(out, format="PNG", compress_level=1)
    return out.getvalue()
