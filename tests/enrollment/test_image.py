"""Decoding: every accepted format, EXIF orientation, and each way bytes can be refused."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFile

from enrollment.errors import ImageDecodeError
from enrollment.image import DecodeLimits, decode_image
from matcher.errors import InvalidArgument


def _photo(width: int = 96, height: int = 64) -> Image.Image:
    """A colour test card: red left half, blue right half, a green marker in the top-left corner."""
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    pixels[:, : width // 2] = (200, 30, 30)
    pixels[:, width // 2 :] = (30, 30, 200)
    pixels[:8, :8] = (0, 255, 0)
    return Image.fromarray(pixels)


def _encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "fmt, kwargs",
    [("JPEG", {"quality": 95}), ("PNG", {}), ("BMP", {}), ("TIFF", {}), ("WEBP", {"lossless": True})],
)
def test_colour_formats_decode_to_rgb(fmt: str, kwargs: dict) -> None:
    decoded = decode_image(_encode(_photo(), fmt, **kwargs))
    assert decoded.rgb.shape == (64, 96, 3) and decoded.rgb.dtype == np.uint8
    assert not decoded.grayscale
    red, blue = decoded.rgb[32, 20], decoded.rgb[32, 80]
    assert red[0] > 150 and red[2] < 80, "channel order must be RGB"
    assert blue[2] > 150 and blue[0] < 80


@pytest.mark.parametrize("fmt", ["PNG", "PPM", "JPEG", "TIFF"])
def test_grayscale_decodes_to_three_equal_channels(fmt: str) -> None:
    gray = Image.fromarray(np.tile(np.arange(0, 256, 4, dtype=np.uint8), (40, 1)))
    decoded = decode_image(_encode(gray, fmt))  # PPM with mode L is written as PGM (P5)
    assert decoded.grayscale
    assert decoded.rgb.shape == (40, 64, 3)
    assert np.array_equal(decoded.rgb[..., 0], decoded.rgb[..., 2])


def test_sixteen_bit_png_is_scaled_not_clipped() -> None:
    ramp = (np.linspace(0, 65535, 64, dtype=np.uint16)[None, :]).repeat(40, axis=0)
    decoded = decode_image(_encode(Image.fromarray(ramp), "PNG"))
    assert decoded.rgb[0, -1, 0] == 255 and decoded.rgb[0, 32, 0] not in (0, 255)


def test_transparent_png_is_composited_on_white() -> None:
    rgba = np.zeros((40, 40, 4), dtype=np.uint8)
    decoded = decode_image(_encode(Image.fromarray(rgba, "RGBA"), "PNG"))
    assert decoded.rgb.min() == 255


def test_exif_orientation_is_applied() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: rotate 90° clockwise to display
    data = _encode(_photo(96, 64), "JPEG", quality=95, exif=exif.tobytes())
    decoded = decode_image(data)
    assert decoded.exif_orientation == 6
    assert decoded.rgb.shape == (96, 64, 3), "width and height swap after rotation"
    # The green top-left marker ends up top-right after a clockwise quarter turn.
    assert decoded.rgb[3, 60, 1] > 200 and decoded.rgb[3, 3, 1] < 100


def test_truncated_jpeg_is_refused() -> None:
    data = _encode(_photo(400, 300), "JPEG", quality=90)
    for cut in (len(data) // 2, len(data) - 2):
        with pytest.raises(ImageDecodeError, match="truncated"):
            decode_image(data[:cut])


def test_one_pixel_image_is_too_small() -> None:
    with pytest.raises(ImageDecodeError, match="too small") as info:
        decode_image(_encode(Image.new("RGB", (1, 1)), "PNG"))
    assert isinstance(info.value, InvalidArgument) and info.value.field == "image"


@pytest.mark.parametrize("data", [b"definitely not an image", b"\x89PNG\r\n\x1a\n" + b"\0" * 30, b"%PDF-1.4\n"])
def test_bytes_that_are_not_an_image(data: bytes) -> None:
    with pytest.raises(ImageDecodeError):
        decode_image(data)


def test_empty_and_oversized_inputs() -> None:
    with pytest.raises(ImageDecodeError, match="empty"):
        decode_image(b"")
    data = _encode(_photo(), "PNG")
    with pytest.raises(ImageDecodeError, match="limit"):
        decode_image(data, DecodeLimits(max_encoded_bytes=len(data) - 1))


def _png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width``×``height`` (the IDAT holds only one row)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 1024)) + chunk(b"IEND", b"")


def test_decompression_bomb_is_refused_from_the_header(monkeypatch) -> None:
    # Refused from the header: decoding pixels at all would fail the test, not just slow it.
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: pytest.fail("pixels were decoded"))
    with pytest.raises(ImageDecodeError, match="refused before decoding"):
        decode_image(_png_declaring(30000, 30000))
    # Below Pillow's own guard, our header check names the dimensions.
    with pytest.raises(ImageDecodeError, match="12000×12000.*refused before decoding"):
        decode_image(_png_declaring(12000, 12000))
