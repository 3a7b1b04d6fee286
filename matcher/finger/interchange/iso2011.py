"""ISO/IEC 19794-2:2011 finger minutiae records ("FMR\\0", version "030\\0"), in the ISO/IEC 19794-1:2011 frame.

Layout (big-endian):

* general header, 15 bytes: magic, version, 4-byte record length, 2-byte number of finger
  representations, 1-byte certification flag (0 or 1);
* per finger representation: 4-byte representation length (these 4 bytes included), capture
  date and time (2-byte year, month, day, hour, minute, second, 2-byte millisecond; 0xFF…
  where unknown), capture device technology (0–20), 2-byte device vendor id, 2-byte device
  type id, quality-block count and 5-byte quality blocks (score 0–100 or 255 = failed, 2-byte
  vendor, 2-byte algorithm), — only when the flag is set — certification-block count and 3-byte
  certification blocks (2-byte authority, scheme), finger position, representation number
  (0–15), x/y resolution in pixels per centimetre, impression type, image width/height, a
  byte of minutia field length (high nibble, 5 or 6) and ridge-ending type (low nibble: 0 valley
  skeleton bifurcation, 1 ridge skeleton end point), minutiae count, the minutiae — 2-bit type
  + 14-bit x, 2 reserved bits + 14-bit y, angle in 1.40625° steps, and with 6-byte minutiae a
  quality 0–100 (254 not reported, 255 failed) — and the extended data (2-byte total length,
  then blocks of type, length, data).

A representation's finger quality is its first quality block's score (0 when it has none).
"""

from __future__ import annotations

import struct

import numpy as np

from matcher.finger.interchange.common import (
    MAGIC,
    U8,
    U32,
    InvalidIsoRecord,
    Reader,
    Record,
    check_bytes,
    check_image,
    check_minutiae,
    check_position,
    check_range,
    check_unique_views,
    first,
    pack_minutiae,
    read_extended_data,
    resolution_ppcm,
    to_template,
    unpack_minutiae,
    view_numbers,
    write_extended_data,
)
from matcher.finger.template import FingerTemplate

FORMAT_ID = "iso19794-2:2011"
VERSION = b"030\x00"
GENERAL_HEADER = struct.Struct(">4s4sIHB")
DATETIME = struct.Struct(">HBBBBBH")
DEVICE = struct.Struct(">BHH")  # technology, vendor, type id
QUALITY_BLOCK = struct.Struct(">BHH")  # score, vendor, algorithm
CERTIFICATION_BLOCK = struct.Struct(">HB")  # authority, scheme
FINGER = struct.Struct(">BBHHBHHBB")  # position, representation number, x/y res, impression, width, height, minutia field, count
DATETIME_UNKNOWN = (0xFFFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFFFF)
DATETIME_RANGES = (
    ("year", 1, 0xFFFE, 0xFFFF),
    ("month", 1, 12, 0xFF),
    ("day", 1, 31, 0xFF),
    ("hour", 0, 23, 0xFF),
    ("minute", 0, 59, 0xFF),
    ("second", 0, 59, 0xFF),
    ("millisecond", 0, 999, 0xFFFF),
)
MAX_DEVICE_TECHNOLOGY = 20
IMPRESSION_TYPES = frozenset({*range(10), 24, 28, 29})
RIDGE_ENDING_TYPES = frozenset({0, 1})
QUALITY_FAILED = 255
MINUTIA_QUALITY_UNREPORTED, MINUTIA_QUALITY_FAILED = 254, 255
MAX_REPRESENTATIONS = 176  # finger positions × 16 views, as the standard bounds it


def _check_datetime(values: tuple, field: str) -> None:
    for value, (name, low, high, unknown) in zip(values, DATETIME_RANGES):
        if value != unknown and not low <= value <= high:
            raise InvalidIsoRecord(f"{name} {value} is out of range", record_field=f"{field}.{name}")


def read(data: bytes) -> Record:
    data = check_bytes(data)
    if len(data) < GENERAL_HEADER.size:
        raise InvalidIsoRecord(f"record is {len(data)} bytes; the header alone is {GENERAL_HEADER.size}", record_field="header")
    magic, version, length, count, certification = GENERAL_HEADER.unpack_from(data)
    if magic != MAGIC:
        raise InvalidIsoRecord(f"format identifier is {magic!r}, not {MAGIC!r}", record_field="header.format_identifier")
    if version != VERSION:
        raise InvalidIsoRecord(f"version is {version!r}, not {VERSION!r} (ISO/IEC 19794-2:2011)", record_field="header.version")
    if length != len(data):
        raise InvalidIsoRecord(f"length field says {length} bytes but the record has {len(data)}", record_field="header.record_length")
    if certification not in (0, 1):
        raise InvalidIsoRecord(f"certification flag is {certification}, not 0 or 1", record_field="header.certification_flag")
    if count == 0:
        raise InvalidIsoRecord("the record holds no finger representation", record_field="header.views")
    if count > MAX_REPRESENTATIONS:
        raise InvalidIsoRecord(f"{count} finger representations; at most {MAX_REPRESENTATIONS}", record_field="header.views")
    reader = Reader(data, GENERAL_HEADER.size)
    views, numbers = [], []
    for index in range(count):
        views.append(_representation(reader, f"views[{index}]", bool(certification)))
        numbers.append((views[-1].position, views[-1].extra["view"]))
    if reader.remaining:
        raise InvalidIsoRecord(f"{reader.remaining} bytes follow the last representation", record_field="header.record_length")
    check_unique_views(numbers, "views")
    return Record(FORMAT_ID, tuple(views))


def _representation(outer: Reader, field: str, certified: bool) -> FingerTemplate:
    start = outer.offset
    length = outer.one(U32, f"{field}.length")
    if length < U32.size or start + length > outer.end:
        raise InvalidIsoRecord(
            f"length field says {length} bytes; {outer.end - start} are left in the record", record_field=f"{field}.length"
        )
    reader = Reader(outer.data, outer.offset, start + length)
    outer.offset = start + length
    _check_datetime(reader.take(DATETIME, f"{field}.capture_datetime"), f"{field}.capture_datetime")
    technology, _vendor, _device = reader.take(DEVICE, f"{field}.capture_device")
    if technology > MAX_DEVICE_TECHNOLOGY:
        raise InvalidIsoRecord(f"device technology {technology} is reserved", record_field=f"{field}.capture_device_technology")
    scores = []
    for j in range(reader.one(U8, f"{field}.quality_blocks")):
        score, _qvendor, _algorithm = reader.take(QUALITY_BLOCK, f"{field}.quality_blocks[{j}]")
        if score > 100 and score != QUALITY_FAILED:
            raise InvalidIsoRecord(f"quality score {score} is not 0–100 or 255", record_field=f"{field}.quality_blocks[{j}].score")
        scores.append(score)
    if certified:
        for j in range(reader.one(U8, f"{field}.certification_blocks")):
            reader.take(CERTIFICATION_BLOCK, f"{field}.certification_blocks[{j}]")
    position, number, xres, yres, impression, width, height, minutia_field, n = reader.take(FINGER, f"{field}.finger")
    check_position(position, f"{field}.finger_position")
    if number > 15:
        raise InvalidIsoRecord(f"representation number {number} is not 0–15", record_field=f"{field}.representation_number")
    check_image(width, height, xres, yres, field)
    check_range(impression, IMPRESSION_TYPES, f"{field}.impression_type", "impression type")
    size, ending = minutia_field >> 4, minutia_field & 0x0F
    if size not in (5, 6):
        raise InvalidIsoRecord(f"minutia field length {size} is not 5 or 6", record_field=f"{field}.minutia_field_length")
    check_range(ending, RIDGE_ENDING_TYPES, f"{field}.ridge_ending_type", "ridge ending type")
    raw = reader.raw(n * size, f"{field}.minutiae")
    kind, x, y, reserved, angle, mq = unpack_minutiae(raw, n, size)
    check_minutiae(field, kind, x, y, width, height)
    i = first(reserved != 0)
    if i is not None:
        raise InvalidIsoRecord("the reserved bits above y are set", record_field=f"{field}.minutiae[{i}].y")
    i = first((mq > 100) & (mq != MINUTIA_QUALITY_UNREPORTED) & (mq != MINUTIA_QUALITY_FAILED))
    if i is not None:
        raise InvalidIsoRecord(f"quality {mq[i]} is not 0–100, 254 or 255", record_field=f"{field}.minutiae[{i}].quality")
    read_extended_data(reader, f"{field}.extended_data")
    if reader.remaining:
        raise InvalidIsoRecord(
            f"length field says {length} bytes but the representation ends after {length - reader.remaining}",
            record_field=f"{field}.length",
        )
    mq = np.where(mq > 100, 0, mq)  # not reported / failed: no quality
    quality = next((s for s in scores if s <= 100), 0)
    extra = {"view": number, "impression": impression, "ridge_ending_type": ending, "quality_scores": tuple(scores)}
    return to_template(field, kind, x, y, angle, mq, width, height, xres, yres, position, quality, extra)


def write(templates: FingerTemplate | list[FingerTemplate] | tuple[FingerTemplate, ...], with_quality: bool = True) -> bytes:
    """Serialise templates as one ISO 19794-2:2011 record, one finger representation each (no certification blocks).

    Capture date and device are written as unknown; a template's image quality, when it has one,
    becomes one quality block (vendor and algorithm unknown).
    """
    views = [templates] if isinstance(templates, FingerTemplate) else list(templates)
    if not views or len(views) > MAX_REPRESENTATIONS:
        raise InvalidIsoRecord(f"{len(views)} finger representations; 1–{MAX_REPRESENTATIONS} fit a record", record_field="templates")
    body = bytearray()
    for template, number in zip(views, view_numbers(views)):
        res = resolution_ppcm(template)
        rep = bytearray(DATETIME.pack(*DATETIME_UNKNOWN) + DEVICE.pack(0, 0, 0))
        rep += U8.pack(1) + QUALITY_BLOCK.pack(template.image_quality, 0, 0) if template.image_quality else U8.pack(0)
        rep += FINGER.pack(
            template.position, number, res, res, 0, template.width, template.height, (6 if with_quality else 5) << 4, template.size
        )
        rep += pack_minutiae(template, template.angle, with_quality)
        rep += write_extended_data()
        body += U32.pack(len(rep) + U32.size) + rep
    return GENERAL_HEADER.pack(MAGIC, VERSION, GENERAL_HEADER.size + len(body), len(views), 0) + bytes(body)

