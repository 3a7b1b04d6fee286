"""Finger minutiae record interchange: ISO/IEC 19794-2:2005 and :2011, ANSI INCITS 378-2004, and multi-view records.

Records are built here by hand where a field's layout matters (the :2011 blocks, INCITS's long
length field), so the byte layout is checked against the standards' tables, not only against
our own writer.
"""

from __future__ import annotations

import dataclasses
import struct

import numpy as np
import pytest

from matcher.calibration import Calibration
from matcher.errors import InvalidArgument
from matcher.finger.gallery_index import parse_record
from matcher.finger.interchange import incits378, iso2005, iso2011
from matcher.finger.interchange.common import InvalidIsoRecord
from matcher.finger.interchange.detect import FORMATS, detect_format, read_record, to_record
from matcher.finger.iso19794 import FORMAT_ID, from_iso, to_iso
from matcher.finger.template import FingerTemplate
from matcher.galleries import EnrollItem, Galleries
from matcher.modalities import matcher_for
from matcher.store.base import GalleryRecord, ModalitySpec
from matcher.store.sqlite import SQLiteStore
from matcher.templates import Modality, Template

ISO2005, ISO2011, INCITS = "iso19794-2:2005", "iso19794-2:2011", "incits378-2004"
ALL = (ISO2005, ISO2011, INCITS)
FINGER = matcher_for(Modality.FINGER)


def synthetic(seed: int = 0, n: int = 40, position: int = 0, width: int = 400, height: int = 500, quality: int = 60) -> FingerTemplate:
    """A print's worth of minutiae: random but fixed, all inside the image, types ending/bifurcation."""
    rng = np.random.default_rng(seed)
    return FingerTemplate(
        x=rng.integers(0, width, n).astype(np.uint16),
        y=rng.integers(0, height, n).astype(np.uint16),
        angle=rng.integers(0, 256, n).astype(np.uint8),
        kind=rng.integers(1, 3, n).astype(np.uint8),
        quality=rng.integers(20, 101, n).astype(np.uint8),
        width=width,
        height=height,
        position=position,
        image_quality=quality,
    )


def circular_gap(a: np.ndarray, b: np.ndarray) -> int:
    d = np.abs(a.astype(int) - b.astype(int)) % 256
    return int(np.minimum(d, 256 - d).max(initial=0))


def sample(record: bytes, model_id: str, position: int = 0) -> Template:
    return Template(Modality.FINGER, model_id, np.frombuffer(record, np.uint8).copy(), position)


# -- round trips ------------------------------------------------------------------------------
@pytest.mark.parametrize("format", ALL)
def test_each_format_round_trips_and_is_detected_from_its_bytes(format):
    views = [synthetic(1, position=2), synthetic(2, n=0, position=7, quality=0), synthetic(3, n=255, position=2)]
    record = to_record(views, format)
    assert detect_format(record) == format
    parsed = read_record(record)
    assert parsed.format == format and len(parsed.views) == 3
    for sent, back in zip(views, parsed.views):
        assert (back.width, back.height, back.position, back.image_quality) == (sent.width, sent.height, sent.position, sent.image_quality)
        assert np.array_equal(back.x, sent.x) and np.array_equal(back.y, sent.y) and np.array_equal(back.kind, sent.kind)
        assert np.array_equal(back.quality, sent.quality)
        # INCITS 378 counts angles in 2° steps: within one ISO step (1.40625°) after the round trip; the ISO formats are exact.
        assert circular_gap(back.angle, sent.angle) <= (1 if format == INCITS else 0)
    assert [v.extra["view"] for v in parsed.views] == [0, 0, 1]  # views numbered per finger position


def test_iso2005_layout_and_the_old_functions_still_work():
    template = synthetic(4, n=3, position=7)
    record = to_iso(template)
    assert record == to_record(template) == iso2005.write(template)
    magic, version, length, _eq, w, h, xres, yres, views, reserved = struct.unpack_from(">4s4sIHHHHHBB", record)
    assert (magic, version, length, w, h, xres, yres, views, reserved) == (b"FMR\x00", b" 20\x00", len(record), 400, 500, 197, 197, 1, 0)
    assert struct.unpack_from(">BBBB", record, 24) == (7, 0, 60, 3) and record[-2:] == b"\x00\x00"
    assert from_iso(record).same_minutiae(template)


def test_incits378_header_is_26_bytes_with_cbeff_ids_and_2_degree_angles():
    template = synthetic(5, n=2)
    record = incits378.write(template, cbeff_owner=0x0033, cbeff_type=0x0101, equipment_id=0x123)
    assert len(record) == 26 + 4 + 2 * 6 + 2
    assert struct.unpack_from(">H", record, 8)[0] == len(record)  # 2-byte length
    assert struct.unpack_from(">HHHHHHHBB", record, 10) == (0x0033, 0x0101, 0x123, 400, 500, 197, 197, 1, 0)
    angles = [record[26 + 4 + 6 * i + 4] for i in range(2)]
    assert angles == [round(int(a) * 180 / 256) % 180 for a in template.angle]


def _incits_long_form(template: FingerTemplate, extended: int) -> bytes:
    """An INCITS 378 record of ≥ 65,536 bytes: 2-byte length 0 then a 4-byte length (a 30-byte header)."""
    block = struct.pack(">HH", 0x0101, 4 + extended) + bytes(extended)  # one vendor block
    view = struct.pack(">BBBB", 3, 0, 50, template.size) + incits378.pack_minutiae(template, incits378.ansi_angles(template.angle))
    view += struct.pack(">H", len(block)) + block
    body = struct.pack(">HHHHHHHBB", 0, 0, 0, template.width, template.height, 197, 197, 1, 0) + view
    length = 8 + 6 + len(body)
    return b"FMR\x00 20\x00" + struct.pack(">HI", 0, length) + body


def test_incits378_long_length_form_and_extended_data_blocks():
    template = synthetic(6, n=10)
    record = _incits_long_form(template, 65_500)
    assert len(record) > 0xFFFF and detect_format(record) == INCITS
    (view,) = read_record(record).views
    assert view.position == 3 and np.array_equal(view.x, template.x)
    with pytest.raises(InvalidIsoRecord) as info:  # the long form for a small record is a lie about the shape
        read_record(_incits_long_form(template, 100))
    assert info.value.record_field == "header.record_length"


def _iso2011_by_hand(minutia_bytes: int = 5, certified: bool = True) -> bytes:
    """One representation with a capture date, three quality blocks and two certification blocks."""
    minutiae = [(1, 10, 20, 64, 90), (2, 399, 499, 200, 30)]
    rep = struct.pack(">HBBBBBH", 2024, 5, 17, 13, 45, 30, 250)  # capture date and time
    rep += struct.pack(">BHH", 14, 0x0033, 0x0007)  # capacitive sensor, vendor, device type
    rep += struct.pack(">B", 3) + struct.pack(">BHH", 77, 0x000F, 0x0001) + struct.pack(">BHH", 255, 0x0101, 2)
    rep += struct.pack(">BHH", 40, 0x0102, 3)
    if certified:
        rep += struct.pack(">B", 2) + struct.pack(">HB", 0x0033, 1) + struct.pack(">HB", 0x0101, 2)
    rep += struct.pack(">BBHHBHHBB", 4, 0, 394, 394, 1, 400, 500, minutia_bytes << 4 | 1, len(minutiae))  # 1000 ppi
    for kind, x, y, angle, quality in minutiae:
        rep += struct.pack(">HHB", kind << 14 | x, y, angle) + (bytes([quality]) if minutia_bytes == 6 else b"")
    rep += struct.pack(">H", 8) + struct.pack(">HH", 0x0001, 8) + b"\x00\x01\x02\x03"  # a ridge-count block, kept opaque
    rep = struct.pack(">I", len(rep) + 4) + rep
    return b"FMR\x00030\x00" + struct.pack(">IHB", 15 + len(rep), 1, int(certified)) + rep


@pytest.mark.parametrize("minutia_bytes", [5, 6])
def test_iso2011_record_with_several_quality_and_certification_blocks(minutia_bytes):
    record = _iso2011_by_hand(minutia_bytes)
    assert detect_format(record) == ISO2011
    (view,) = read_record(record).views
    assert view.position == 4 and view.image_quality == 77  # the first quality block's score
    assert view.extra["quality_scores"] == (77, 255, 40) and view.extra["ridge_ending_type"] == 1
    assert view.extra["impression"] == 1 and view.extra["source_dpi"] == (1001, 1001)
    # 1000 ppi rescaled to 500: coordinates and image size halved
    assert (view.width, view.height) == (200, 250)
    assert view.x.tolist() == [5, 199] and view.y.tolist() == [10, 249]
    assert view.kind.tolist() == [1, 2] and view.angle.tolist() == [64, 200]
    assert view.quality.tolist() == ([90, 30] if minutia_bytes == 6 else [0, 0])  # 5-byte minutiae carry no quality
    uncertified = read_record(_iso2011_by_hand(minutia_bytes, certified=False)).views[0]
    assert uncertified.same_minutiae(view)


def test_iso2011_export_layout():
    template = synthetic(7, n=3, position=9, quality=81)
    record = iso2011.write(template)
    assert struct.unpack_from(">4s4sIHB", record) == (b"FMR\x00", b"030\x00", len(record), 1, 0)
    assert struct.unpack_from(">I", record, 15)[0] == len(record) - 15
    assert record[19:28] == b"\xff" * 9  # capture time unknown
    assert struct.unpack_from(">BHHBBHH", record, 28) == (0, 0, 0, 1, 81, 0, 0)  # device unknown, one quality block
    assert struct.unpack_from(">BBHHBHHBB", record, 39) == (9, 0, 197, 197, 0, 400, 500, 0x60, 3)
    assert read_record(record).views[0].same_minutiae(template)
    no_quality = iso2011.write(dataclasses.replace(template, image_quality=0), with_quality=False)
    back = read_record(no_quality).views[0]
    assert back.image_quality == 0 and back.quality.tolist() == [0, 0, 0] and np.array_equal(back.x, template.x)


# -- refusals ---------------------------------------------------------------------------------
def _patch(record: bytes, offset: int, fmt: str, *values) -> bytes:
    out = bytearray(record)
    struct.pack_into(fmt, out, offset, *values)
    return bytes(out)


def _relength(record: bytes, format: str) -> bytes:
    """The record with its length field(s) set to agree with its (edited) size."""
    if format == INCITS:
        return _patch(record, 8, ">H", len(record))
    return _patch(record, 8, ">I", len(record))


one = synthetic(8, n=5, position=2)
R05, R11, R378 = iso2005.write(one), iso2011.write(one), incits378.write(one)
M05, M378 = 24 + 4, 26 + 4  # first minutia of the first view
M11 = 15 + 4 + 9 + 5 + 1 + 5 + 13  # general header, representation header with one quality block, finger fields


def _view_count_2005(record: bytes, n: int) -> bytes:
    return _patch(record, 22, ">B", n)


MALFORMED = [
    # label, record, the record field named
    ("2005 length lies", _patch(R05, 8, ">I", len(R05) + 3), "header.record_length"),
    ("2005 truncated", _relength(R05[:-5], ISO2005), "views[0].minutiae"),
    ("2005 trailing bytes", _relength(R05 + b"\x00\x00", ISO2005), "header.record_length"),
    ("2005 reserved type", _patch(R05, M05 + 6, ">H", 3 << 14 | 5), "views[0].minutiae[1].type"),
    ("2005 x outside image", _patch(R05, M05 + 12, ">H", 1 << 14 | 400), "views[0].minutiae[2].x"),
    ("2005 y outside image", _patch(R05, M05 + 2, ">H", 500), "views[0].minutiae[0].y"),
    ("2005 quality > 100", _patch(R05, M05 + 5, ">B", 101), "views[0].minutiae[0].quality"),
    ("2005 finger position 13", _patch(R05, 24, ">B", 13), "views[0].finger_position"),
    ("2005 reserved impression type", _patch(R05, 25, ">B", 5), "views[0].impression_type"),
    ("2005 zero resolution", _patch(R05, 18, ">H", 0), "header.resolution"),
    ("2005 no views", _relength(_view_count_2005(R05, 0)[:24], ISO2005), "header.views"),
    ("2005 second view missing", _view_count_2005(R05, 2), "views[1].header"),
    ("2005 extended data lies", _patch(R05, len(R05) - 2, ">H", 9), "views[0].extended_data.length"),
    (
        "2005 reserved extended type",
        _relength(R05[:-2] + struct.pack(">HHH", 6, 0, 6) + b"\x00\x00", ISO2005),
        "views[0].extended_data.blocks[0].type",
    ),
    (
        "2005 extended block length lies",
        _relength(R05[:-2] + struct.pack(">HHH", 6, 1, 60) + b"\x00\x00", ISO2005),
        "views[0].extended_data.blocks[0].length",
    ),
    ("unknown version", _patch(R05, 4, ">4s", b"020\x00"), "header.version"),
    ("bad magic", _patch(R05, 0, ">4s", b"FIR\x00"), "header.format_identifier"),
    ("too short", R05[:6], "header"),
    ("378 length lies", _patch(R378, 8, ">H", len(R378) - 1), "header.record_length"),
    ("378 truncated", _relength(R378[:-1], INCITS), "views[0].extended_data.length"),
    ("378 angle 180", _patch(R378, M378 + 4, ">B", 180), "views[0].minutiae[0].angle"),
    ("378 x outside image", _patch(R378, M378 + 6, ">H", 2 << 14 | 999), "views[0].minutiae[1].x"),
    ("378 reserved header byte", _patch(R378, 25, ">B", 1), "header.reserved"),
    ("2011 length lies", _patch(R11, 8, ">I", len(R11) + 1), "header.record_length"),
    ("2011 representation length lies", _relength(_patch(R11, 15, ">I", len(R11) - 15 + 1) + b"\x00", ISO2011), "views[0].length"),
    ("2011 representation runs past the end", _patch(R11, 15, ">I", len(R11)), "views[0].length"),
    ("2011 truncated", _relength(_patch(R11, 15, ">I", len(R11) - 15 - 7)[:-7], ISO2011), "views[0].minutiae"),
    ("2011 certification flag 2", _patch(R11, 14, ">B", 2), "header.certification_flag"),
    ("2011 month 13", _patch(R11, 21, ">B", 13), "views[0].capture_datetime.month"),
    ("2011 device technology 21", _patch(R11, 28, ">B", 21), "views[0].capture_device_technology"),
    ("2011 quality score 150", _patch(R11, 34, ">B", 150), "views[0].quality_blocks[0].score"),
    ("2011 minutia field length 7", _patch(R11, M11 - 2, ">B", 0x70), "views[0].minutia_field_length"),
    ("2011 ridge ending type 2", _patch(R11, M11 - 2, ">B", 0x62), "views[0].ridge_ending_type"),
    ("2011 reserved bits above y", _patch(R11, M11 + 8, ">H", 0x8000 | int(one.y[1])), "views[0].minutiae[1].y"),
    ("2011 minutia quality 200", _patch(R11, M11 + 5, ">B", 200), "views[0].minutiae[0].quality"),
    ("2011 reserved type", _patch(R11, M11, ">H", 3 << 14 | int(one.x[0])), "views[0].minutiae[0].type"),
    ("2011 y outside image", _patch(R11, M11 + 14, ">H", 500), "views[0].minutiae[2].y"),
    ("2011 representation number 16", _patch(R11, M11 - 12, ">B", 16), "views[0].representation_number"),
    ("2011 reserved impression type", _patch(R11, M11 - 7, ">B", 20), "views[0].impression_type"),
    ("2011 no representations", _relength(_patch(R11, 12, ">H", 0)[:15], ISO2011), "header.views"),
    # Two views of finger 2 both numbered 0 (the standards number a finger's views 0, 1, …): the second view's byte 1.
    ("duplicate view number", _patch(iso2005.write([one, one]), 24 + 4 + 30 + 2 + 1, ">B", 0), "views[1].view_number"),
]


@pytest.mark.parametrize("label, record, field", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_records_are_refused_naming_the_field(label, record, field):
    with pytest.raises(InvalidIsoRecord) as info:
        read_record(record)
    error = info.value
    assert isinstance(error, InvalidArgument) and error.field == "iso_record"
    assert error.record_field == field, (label, str(error))
    assert error.detail.startswith(field + ":"), error.detail


def test_a_lying_length_is_refused_whichever_header_shape_is_tried():
    # Neither the ISO 2005 4-byte length nor the INCITS 2-byte length agrees: both readings are quoted.
    lying = _patch(R05, 8, ">I", len(R05) + 7)
    with pytest.raises(InvalidIsoRecord, match="length field says") as info:
        read_record(lying)
    assert "ISO/IEC 19794-2:2005" in info.value.detail and "INCITS 378" in info.value.detail
    # A format's own reader refuses the other's records by the field that tells them apart.
    with pytest.raises(InvalidIsoRecord) as info:
        iso2005.read(R378)
    assert info.value.record_field == "header.record_length"
    with pytest.raises(InvalidIsoRecord) as info:
        incits378.read(R05)
    assert info.value.record_field == "header.record_length"
    with pytest.raises(InvalidIsoRecord) as info:
        iso2011.read(R05)
    assert info.value.record_field == "header.version"


def test_stored_records_are_single_view():
    assert parse_record(R05).same_minutiae(one)
    with pytest.raises(InvalidIsoRecord) as info:
        parse_record(iso2005.write([one, synthetic(9, position=3)]))
    assert info.value.record_field == "header.views"
    with pytest.raises(InvalidIsoRecord):
        parse_record(R378)  # stored records are ISO 2005; other formats are converted by ``split`` first


# -- multi-view records: split, by the finger modality --------------------------------------
def test_split_turns_each_view_into_a_stored_single_view_2005_template():
    views = [synthetic(10, position=2), synthetic(11, position=3), synthetic(12, position=0)]
    for format in ALL:
        parts = FINGER.split(sample(to_record(views, format), format, position=0), "samples[0].template")
        assert [p.model_id for p in parts] == [FORMAT_ID] * 3 and [p.finger_position for p in parts] == [2, 3, 0]
        for part, view in zip(parts, views):
            stored = parse_record(part.vector)
            assert stored.position == part.finger_position and np.array_equal(stored.x, view.x)
            assert detect_format(FINGER.payload(part.vector)) == FORMAT_ID
    # A position sent beside the record stands for the views that have none, and must agree with the rest.
    with pytest.raises(InvalidArgument) as info:
        FINGER.split(sample(to_record(views, INCITS), INCITS, position=3), "samples[4].template")
    assert info.value.field == "samples[4].template.finger_position" and "view 0" in info.value.detail
    unknown = [synthetic(13, position=0), synthetic(14, position=0)]
    parts = FINGER.split(sample(to_record(unknown, ISO2011), ISO2011, position=6), "samples[0].template")
    assert [p.finger_position for p in parts] == [6, 6] and all(parse_record(p.vector).position == 6 for p in parts)


def test_a_single_view_2005_record_is_kept_byte_for_byte():
    sent = sample(R05, ISO2005)
    (kept,) = FINGER.split(sent, "samples[0].template")
    assert kept is sent


def test_a_model_id_that_contradicts_the_bytes_is_refused():
    for format, record in ((ISO2005, R378), (INCITS, R05), (ISO2011, R05), (INCITS, R11)):
        with pytest.raises(InvalidArgument) as info:
            FINGER.split(sample(record, format), "samples[2].template")
        assert info.value.field == "samples[2].template.model_id" and detect_format(record) in info.value.detail
    with pytest.raises(InvalidArgument) as info:
        FINGER.split(sample(_patch(R378, 8, ">H", 3), INCITS), "samples[1].template")
    assert info.value.field == "samples[1].template.vector" and "header.record_length" in info.value.detail
    other = sample(R05, "someone-elses-format")  # not an interchange format: left for the gallery to refuse by model
    assert FINGER.split(other, "samples[0].template") == [other]


# -- through a real gallery ------------------------------------------------------------------
LINEAR = Calibration("test", (0.0, 100.0), (0.0, 10.0))  # a stand-in table: these tests check plumbing


@pytest.fixture
def galleries(tmp_path):
    g = Galleries(SQLiteStore(tmp_path / "s.sqlite3"), None, lambda spec: LINEAR)
    g.create(GalleryRecord("g", 1e-4, (ModalitySpec(Modality.FINGER, FORMAT_ID, 0),)))
    yield g
    g.store.close()


def test_a_three_view_record_enrols_as_three_templates_and_each_view_is_found(galleries):
    fingers = {2: synthetic(20, position=2), 3: synthetic(21, position=3), 7: synthetic(22, position=7)}
    record = to_record(list(fingers.values()), INCITS)
    (outcome,) = galleries.enroll([EnrollItem("g", "P", (sample(record, INCITS),))])
    assert len(outcome.result.template_ids) == 3
    stored = galleries.get_subject("g", "P").templates
    assert sorted(t.finger_position for t in stored) == [2, 3, 7] and {t.model_id for t in stored} == {FORMAT_ID}
    galleries.enroll([EnrollItem("g", "Q", (sample(to_iso(synthetic(30, position=3)), ISO2005),))])
    for position, view in fingers.items():
        probe = sample(iso2011.write(view), ISO2011)
        (best, *_) = galleries.identify([probe], ["g"], top=2)
        assert best.subject_id == "P"
    assert galleries.verify("g", "P", [sample(to_iso(fingers[3]), ISO2005)]).score > 0


def test_probe_records_are_split_and_checked_per_sample(galleries):
    galleries.enroll([EnrollItem("g", "P", (sample(to_iso(synthetic(40, position=2)), ISO2005),))])
    same_finger_twice = to_record([synthetic(41, position=2), synthetic(42, position=2)], ISO2011)
    with pytest.raises(InvalidArgument) as info:
        galleries.identify([sample(same_finger_twice, ISO2011)], ["g"])
    assert info.value.field == "samples[0].template.vector" and "two views of finger 2" in info.value.detail
    # Numbering stays the request's: the bad second sample is samples[1], however many views samples[0] held.
    two_views = to_record([synthetic(43, position=4), synthetic(44, position=5)], INCITS)
    with pytest.raises(InvalidArgument) as info:
        galleries.identify([sample(two_views, INCITS), sample(to_iso(synthetic(45, position=5)), ISO2005)], ["g"])
    assert info.value.field == "samples[1].finger_position" and "samples[0]" in info.value.detail
    with pytest.raises(InvalidArgument) as info:
        galleries.verify("g", "P", [sample(two_views, INCITS), sample(_patch(R05, 8, ">I", 1), ISO2005)])
    assert info.value.field == "samples[1].template.vector"
    (outcome,) = galleries.enroll([EnrollItem("g", "X", (sample(two_views, INCITS), sample(R378, ISO2011)))])
    assert isinstance(outcome, InvalidArgument) and outcome.field == "samples[1].template.model_id"
    assert galleries.statistics(["g"])[0].subjects == 1  # nothing of X was stored


def test_every_interchange_format_is_a_model_id_of_the_finger_format():
    assert set(FORMATS) == set(ALL)
