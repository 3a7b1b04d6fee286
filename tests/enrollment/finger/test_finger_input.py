"""Bad input is refused with a typed error naming the field; good formats decode to 500 dpi."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from enrollment.errors import ImageDecodeError
from enrollment.errors import NoFingerprint
from matcher.finger.iso19794 import InvalidIsoRecord
from enrollment.finger.image import decode_finger, decode_raw, wsq_available
from matcher.finger.iso19794 import from_iso, to_iso
from matcher.finger.template import FingerTemplate
from matcher.errors import InvalidArgument

DB1 = "fvc2002_db1_b/images/fingerprintmatching/FVC2002/DB1_B"


def encode(array: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, fmt)
    return buffer.getvalue()


def test_not_an_image_is_a_decode_error():
    with pytest.raises(ImageDecodeError) as info:
        decode_finger(b"this is not an image at all")
    assert info.value.field == "image"


def test_one_pixel_image_is_refused():
    with pytest.raises(ImageDecodeError, match="too small to hold a fingerprint"):
        decode_finger(encode(np.zeros((1, 1), np.uint8), "PNG"))


def test_blank_white_image_is_no_fingerprint(finger_extractor):
    with pytest.raises(NoFingerprint, match="blank"):
        finger_extractor.extract(encode(np.full((300, 300), 255, np.uint8), "PNG"))


def test_face_photo_is_no_fingerprint(finger_extractor, face_photo):
    with pytest.raises(NoFingerprint) as info:
        finger_extractor.extract(face_photo.read_bytes())
    assert info.value.field == "image"


def test_formats_and_dpi(finger_data):
    gray = np.asarray(Image.open(finger_data / DB1 / "101_1.tif").convert("L"))
    for fmt in ("BMP", "PNG", "TIFF", "PPM"):
        image = decode_finger(encode(gray, fmt))
        assert image.gray.shape == gray.shape and np.array_equal(image.gray, gray)
    raw = decode_raw(gray.tobytes(), gray.shape[1], gray.shape[0], dpi=569)
    assert raw.gray.shape == (round(gray.shape[0] * 500 / 569), round(gray.shape[1] * 500 / 569))
    with pytest.raises(ImageDecodeError):
        decode_raw(gray.tobytes()[:-1], gray.shape[1], gray.shape[0])
    with pytest.raises(ImageDecodeError) as info:
        decode_finger(encode(gray, "PNG"), dpi=20)
    assert info.value.field == "dpi"


@pytest.mark.skipif(not wsq_available(), reason="optional `wsq` package not installed")
def test_wsq_decodes(finger_data):
    gray = np.asarray(Image.open(finger_data / DB1 / "101_1.tif").convert("L"))
    image = decode_finger(encode(gray, "WSQ"))
    assert image.source_format == "WSQ" and image.gray.shape == gray.shape
    assert np.abs(image.gray.astype(int) - gray.astype(int)).mean() < 8  # lossy, but close


def small_template() -> FingerTemplate:
    return FingerTemplate.from_arrays(
        np.array([10, 200, 33]), np.array([20, 100, 250]), np.array([0.1, 3.0, 6.2]),
        np.array([1, 2, 1]), np.array([0.9, 0.6, 0.55]), width=300, height=400, position=7, image_quality=55,
    )


def test_iso_round_trip_is_exact():
    template = small_template()
    record = to_iso(template)
    assert record[:4] == b"FMR\x00" and len(record) == 24 + 4 + 3 * 6 + 2
    back = from_iso(record)
    assert back.same_minutiae(template) and (back.width, back.height, back.position) == (300, 400, 7)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda r: r[:8] + (len(r) + 5).to_bytes(4, "big") + r[12:], "length field"),
        (lambda r: r[:-4], "length field"),
        (lambda r: r[:8] + (len(r) - 4).to_bytes(4, "big") + r[12:-4], "truncated"),
        (lambda r: b"XYZ\x00" + r[4:], "format identifier"),
        (lambda r: r[:10], "header"),
    ],
)
def test_bad_iso_records_are_typed_errors(mutate, message):
    with pytest.raises(InvalidIsoRecord, match=message) as info:
        from_iso(mutate(to_iso(small_template())))
    assert isinstance(info.value, InvalidArgument) and info.value.field == "iso_record"
