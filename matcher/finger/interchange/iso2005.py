"""ISO/IEC 19794-2:2005 finger minutiae records ("FMR\\0", version " 20\\0"): the format templates are stored in.

Layout (big-endian):  24-byte record header — magic, version, 4-byte record length, 2-byte
capture equipment (4-bit certification + 12-bit device type), image width/height, x/y
resolution in pixels per *centimetre*, number of finger views, reserved — then per view a
4-byte header (finger position, view number ≪ 4 | impression type, finger quality, minutiae
count), 6 bytes per minutia (2-bit type + 14-bit x, 2 reserved bits + 14-bit y, angle in
1.40625° steps, quality 0–100) and the extended data (2-byte total length, then blocks of
type, length, data).

ANSI INCITS 378-2004 shares the magic and the version; ``matcher.finger.interchange.detect``
tells them apart by which header's length field agrees with the record's size.
"""

from __future__ import annotations

import struct

from matcher.finger.interchange.common import (
    MAGIC,
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
    pack_minutiae,
    read_extended_data,
    resolution_ppcm,
    to_template,
    unpack_minutiae,
    view_numbers,
    write_extended_data,
)
from matcher.finger.template import FingerTemplate

FORMAT_ID = "iso19794-2:2005"
VERSION = b" 20\x00"
HEADER = struct.Struct(">4s4sIHHHHHBB")
VIEW_HEADER = struct.Struct(">BBBB")
MINUTIA_BYTES = 6
IMPRESSION_TYPES = frozenset({0, 1, 2, 3, 8})  # live/non-live × plain/rolled, swipe
IMPRESSION_LIVE_PLAIN = 0


def write(templates: FingerTemplate | list[FingerTemplate] | tuple[FingerTemplate, ...], equipment_id: int = 0) -> bytes:
    """Serialise one template (or several views of one image size) as an ISO 19794-2:2005 record."""
    views = [templates] if isinstance(templates, FingerTemplate) else list(templates)
    check_writable(views, 255)
    body = bytearray()
    for template, number in zip(views, view_numbers(views)):
        body += VIEW_HEADER.pack(template.position, number << 4 | IMPRESSION_LIVE_PLAIN, template.image_quality, template.size)
        body += pack_minutiae(template, template.angle)
        body += write_extended_data()
    res = resolution_ppcm(views[0])
    length = HEADER.size + len(body)
    header = HEADER.pack(MAGIC, VERSION, length, equipment_id & 0x0FFF, views[0].width, views[0].height, res, res, len(views), 0)
    return header + bytes(body)


def read(data: bytes) -> Record:
    """Parse a whole record strictly; every view as a 500-dpi ``FingerTemplate``."""
    data = check_bytes(data)
    if len(data) < HEADER.size:
        raise InvalidIsoRecord(f"record is {len(data)} bytes; the header alone is {HEADER.size}", record_field="header")
    magic, version, length, _equipment, width, height, xres, yres, count, reserved = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise InvalidIsoRecord(f"format identifier is {magic!r}, not {MAGIC!r}", record_field="header.format_identifier")
    if version != VERSION:
        raise InvalidIsoRecord(f"version is {version!r}, not {VERSION!r} (ISO/IEC 19794-2:2005)", record_field="header.version")
    if length != len(data):
        raise InvalidIsoRecord(f"length field says {length} bytes but the record has {len(data)}", record_field="header.record_length")
    check_image(width, height, xres, yres, "header")
    if reserved:
        raise InvalidIsoRecord(f"reserved byte is {reserved}, not 0", record_field="header.reserved")
    if count == 0:
        raise InvalidIsoRecord("the record holds no finger view", record_field="header.views")
    reader = Reader(data, HEADER.size)
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
        bad = next((i for i in range(n) if mq[i] > 100), None)
        if bad is not None:
            raise InvalidIsoRecord(f"quality {mq[bad]} is not 0–100", record_field=f"{field}.minutiae[{bad}].quality")
        read_extended_data(reader, f"{field}.extended_data")
        numbers.append((position, view_impression >> 4))
        extra = {"view": view_impression >> 4, "impression": view_impression & 0x0F}
        views.append(to_template(field, kind, x, y, angle, mq, width, height, xres, yres, position, quality, extra))
    if reader.remaining:
        raise InvalidIsoRecord(f"{reader.remaining} bytes follow the last view", record_field="header.record_length")
    check_unique_views(numbers, "views")
    return Record(FORMAT_ID, tuple(views))


def length_agrees(data: bytes) -> bool:
    """Whether the 4-byte length field of an ISO 2005 header matches the record's size."""
    return len(data) >= 12 and struct.unpack_from(">I", data, 8)[0] == len(data)


