"""ANSI INCITS 378-2004 finger minutiae records ("FMR\\0", version " 20\\0", like ISO 19794-2:2005).

Layout (big-endian):  record header of 26 bytes — magic, version, a 2-byte record length (or 0
followed by a 4-byte length when the record is 65,536 bytes or more: the header is then 30
bytes), the 4-byte CBEFF product identifier (owner, type), 2-byte capture equipment (4-bit
compliance + 12-bit equipment id), image width/height, x/y resolution in pixels per centimetre,
number of finger views, reserved — then per view the 4-byte view header and 6-byte minutiae of
ISO 2005, except that the angle counts **2° steps (0–179)**, and the same extended data blocks.

Angles are converted to the ISO 256-step code on import and back on export (≤ 1° of rounding).
"""

from __future__ import annotations

import struct

import numpy as np

from matcher.finger.interchange.common import (
    MAGIC,
    U16,
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
    check_writable,
    first,
    pack_minutiae,
    read_extended_data,
    resolution_ppcm,
    to_template,
    unpack_minutiae,
    view_numbers,
    write_extended_data,
)
from matcher.finger.template import ANGLE_STEPS, FingerTemplate

FORMAT_ID = "incits378-2004"
VERSION = b" 20\x00"
#: After magic, version and the length field: CBEFF owner, CBEFF type, equipment, width, height, x/y resolution, views, reserved.
BODY_HEADER = struct.Struct(">HHHHHHHBB")
VIEW_HEADER = struct.Struct(">BBBB")
SHORT_HEADER_BYTES = 8 + 2 + BODY_HEADER.size  # 26
LONG_HEADER_BYTES = 8 + 6 + BODY_HEADER.size  # 30
MINUTIA_BYTES = 6
ANSI_ANGLE_STEPS = 180  # 2° a step
IMPRESSION_TYPES = frozenset({0, 1, 2, 3, 8, 9})  # live/non-live × plain/rolled, swipe, live contactless


def iso_angles(ansi: np.ndarray) -> np.ndarray:
    """2° steps → ISO's 256 steps a turn."""
    return np.mod(np.rint(ansi.astype(np.float64) * ANGLE_STEPS / ANSI_ANGLE_STEPS), ANGLE_STEPS).astype(np.uint8)


def ansi_angles(iso: np.ndarray) -> np.ndarray:
    return np.mod(np.rint(iso.astype(np.float64) * ANSI_ANGLE_STEPS / ANGLE_STEPS), ANSI_ANGLE_STEPS).astype(np.uint8)


def declared_length(data: bytes) -> tuple[int, int] | None:
    """(record length, header size) as an INCITS 378 header declares them, or None if too short to say."""
    if len(data) < 10:
        return None
    short = struct.unpack_from(">H", data, 8)[0]
    if short:
        return short, SHORT_HEADER_BYTES
    if len(data) < 14:
        return None
    return struct.unpack_from(">I", data, 10)[0], LONG_HEADER_BYTES


def length_agrees(data: bytes) -> bool:
    declared = declared_length(data)
    return declared is not None and declared[0] == len(data)


def write(
    templates: FingerTemplate | list[FingerTemplate] | tuple[FingerTemplate, ...],
    cbeff_owner: int = 0,
    cbeff_type: int = 0,
    equipment_id: int = 0,
) -> bytes:
    """Serialise one template (or several views of one image size) as an ANSI INCITS 378-2004 record."""
    views = [templates] if isinstance(templates, FingerTemplate) else list(templates)
    check_writable(views, 255)
    body = bytearray()
    for template, number in zip(views, view_numbers(views)):
        body += VIEW_HEADER.pack(template.position, number << 4, template.image_quality, template.size)
        body += pack_minutiae(template, ansi_angles(template.angle))
        body += write_extended_data()
    res = resolution_ppcm(views[0])
    header = BODY_HEADER.pack(cbeff_owner, cbeff_type, equipment_id & 0x0FFF, views[0].width, views[0].height, res, res, len(views), 0)
    length = SHORT_HEADER_BYTES + len(body)
    if length <= 0xFFFF:
        return MAGIC + VERSION + U16.pack(length) + header + bytes(body)
    return MAGIC + VERSION + U16.pack(0) + U32.pack(length + 4) + header + bytes(body)


def read(data: bytes) -> Record:
    data = check_bytes(data)
    if len(data) < SHORT_HEADER_BYTES:
        raise InvalidIsoRecord(f"record is {len(data)} bytes; the header alone is {SHORT_HEADER_BYTES}", record_field="header")
    if data[:4] != MAGIC:
        raise InvalidIsoRecord(f"format identifier is {data[:4]!r}, not {MAGIC!r}", record_field="header.format_identifier")
    if data[4:8] != VERSION:
        raise InvalidIsoRecord(f"version is {data[4:8]!r}, not {VERSION!r} (ANSI INCITS 378-2004)", record_field="header.version")
    declared = declared_length(data)
    assert declared is not None  # at least 26 bytes
    length, header_bytes = declared
    if length != len(data):
        raise InvalidIsoRecord(f"length field says {length} bytes but the record has {len(data)}", record_field="header.record_length")
    if header_bytes == LONG_HEADER_BYTES and length <= 0xFFFF:
        raise InvalidIsoRecord(f"a 4-byte length field ({length}) is only for records of 65,536 bytes or more", record_field="header.record_length")
    reader = Reader(data, header_bytes - BODY_HEADER.size)
    _owner, _type, _equipment, width, height, xres, yres, count, reserved = reader.take(BODY_HEADER, "header")
    check_image(width, height, xres, yres, "header")
    if reserved:
        raise InvalidIsoRecord(f"reserved byte is {reserved}, not 0", record_field="header.reserved")
    if count == 0:
        raise InvalidIsoRecord("the record holds no finger view", record_field="header.views")
    views, numbers = [], []
    for index in range(count):
        field = f"views[{index}]"
        position, view_impression, quality, n = reader.take(VIEW_HEADER, f"{field}.header")
        check_position(position, f"{field}.finger_position")
        check_range(view_impression & 0x0F, IMPRESSION_TYPES, f"{field}.impression_type", "impression type")
        if quality > 100:
            raise InvalidIsoRecord(f"finger quality {quality} is not 0–100", record_field=f"{field}.finger_quality")
        raw = reader.raw(n * MINUTIA_BYTES, f"{field}.minutiae")
        kind, x, y, _reserved, angle, mq = unpack_minutiae(raw, n, MINUTIA_BYTES)
        check_minutiae(field, kind, x, y, width, height)
        for mask, name, detail in ((angle >= ANSI_ANGLE_STEPS, "angle", "is not 0–179 (2° steps)"), (mq > 100, "quality", "is not 0–100")):
            i = first(mask)
            if i is not None:
                value = (angle if name == "angle" else mq)[i]
                raise InvalidIsoRecord(f"{value} {detail}", record_field=f"{field}.minutiae[{i}].{name}")
        read_extended_data(reader, f"{field}.extended_data")
        numbers.append((position, view_impression >> 4))
        extra = {"view": view_impression >> 4, "impression": view_impression & 0x0F}
        views.append(to_template(field, kind, x, y, iso_angles(angle), mq, width, height, xres, yres, position, quality, extra))
    if reader.remaining:
        raise InvalidIsoRecord(f"{reader.remaining} bytes follow the last view", record_field="header.record_length")
    check_unique_views(numbers, "views")
    return Record(FORMAT_ID, tuple(views))
