"""ISO/IEC 19794-2:2005 finger minutiae records ("FMR\\0", version " 20\\0"), one finger view.

Layout (big-endian):  24-byte record header — magic, version, 4-byte record length, 2-byte
capture equipment, image width/height, x/y resolution in pixels per *centimetre*, number of
views, reserved — then per view a 4-byte header (position, view/impression, quality, count),
6 bytes per minutia (2-bit type + 14-bit x, 2 reserved bits + 14-bit y, angle in 1.40625°
steps, quality 0–100) and a 2-byte extended-data length.

Import is strict: a length field that disagrees with the bytes, a truncated view, a coordinate
outside the image or an unknown type is an ``InvalidIsoRecord`` (field ``iso_record``), because
a record that lies about its size is either corrupt or hostile.  Records at other resolutions
are rescaled to 500 dpi, the unit our matcher works in.
"""

from __future__ import annotations

import struct

import numpy as np

from matcher.errors import InvalidArgument
from matcher.finger.template import MAX_COORD, TEMPLATE_DPI, FingerTemplate

ISO_FIELD = "iso_record"
#: The model id of finger templates and galleries: the record format, whoever extracted the minutiae.
FORMAT_ID = "iso19794-2:2005"


class InvalidIsoRecord(InvalidArgument):
    """An ISO/IEC 19794-2 record is malformed (bad magic, length field, truncation, values)."""

    def __init__(self, detail: str, field: str = ISO_FIELD) -> None:
        super().__init__(field, detail)

MAGIC = b"FMR\x00"
VERSION = b" 20\x00"
HEADER = struct.Struct(">4s4sIHHHHHBB")
VIEW_HEADER = struct.Struct(">BBBB")
MINUTIA = struct.Struct(">HHBB")
CM_PER_INCH = 2.54
MAX_RECORD_BYTES = HEADER.size + 16 * (VIEW_HEADER.size + 255 * MINUTIA.size + 2 + 65535)
IMPRESSION_LIVE_PLAIN = 0


def _ppcm(dpi: int) -> int:
    return int(round(dpi / CM_PER_INCH))


def to_iso(template: FingerTemplate, equipment_id: int = 0) -> bytes:
    """Serialise one template as a one-view ISO 19794-2:2005 record."""
    n = template.size
    body = bytearray(VIEW_HEADER.pack(template.position, IMPRESSION_LIVE_PLAIN, template.image_quality, n))
    for i in range(n):
        body += MINUTIA.pack(
            (int(template.kind[i]) & 0x3) << 14 | int(template.x[i]),
            int(template.y[i]),
            int(template.angle[i]),
            int(template.quality[i]),
        )
    body += b"\x00\x00"  # no extended data
    length = HEADER.size + len(body)
    res = _ppcm(template.dpi)
    header = HEADER.pack(MAGIC, VERSION, length, equipment_id & 0x0FFF, template.width, template.height, res, res, 1, 0)
    return header + bytes(body)


def from_iso(data: bytes, view: int = 0) -> FingerTemplate:
    """Parse a record; return view number ``view`` (0-based) as a 500-dpi ``FingerTemplate``."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InvalidIsoRecord(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < HEADER.size:
        raise InvalidIsoRecord(f"record is {len(data)} bytes; the header alone is {HEADER.size}")
    if len(data) > MAX_RECORD_BYTES:
        raise InvalidIsoRecord(f"record is {len(data)} bytes; more than any valid record")
    magic, version, length, _equip, width, height, xres, yres, views, _ = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise InvalidIsoRecord(f"format identifier is {magic!r}, not {MAGIC!r}")
    if version != VERSION:
        raise InvalidIsoRecord(f"version is {version!r}; only ISO/IEC 19794-2:2005 ({VERSION!r}) is read")
    if length != len(data):
        raise InvalidIsoRecord(f"length field says {length} bytes but the record has {len(data)}")
    if width == 0 or height == 0 or xres == 0 or yres == 0:
        raise InvalidIsoRecord("image size and resolution must be non-zero")
    if not 0 <= view < views:
        raise InvalidIsoRecord(f"record has {views} finger views; view {view} requested")
    offset = HEADER.size
    for index in range(views):
        if offset + VIEW_HEADER.size > len(data):
            raise InvalidIsoRecord(f"truncated: view {index} header missing")
        position, _view_imp, quality, count = VIEW_HEADER.unpack_from(data, offset)
        start = offset + VIEW_HEADER.size
        end = start + count * MINUTIA.size
        if end + 2 > len(data):
            raise InvalidIsoRecord(f"truncated: view {index} declares {count} minutiae")
        (extended,) = struct.unpack_from(">H", data, end)
        next_offset = end + 2 + extended
        if next_offset > len(data):
            raise InvalidIsoRecord(f"truncated: view {index} extended data runs past the end")
        if index == view:
            return _view(data[start:end], count, position, quality, width, height, xres, yres)
        offset = next_offset
    raise InvalidIsoRecord("view not found")  # unreachable: view < views was checked


def _view(raw: bytes, count: int, position: int, quality: int, width: int, height: int, xres: int, yres: int) -> FingerTemplate:
    words = np.frombuffer(raw, dtype=">u2").reshape(count, 3) if count else np.zeros((0, 3), ">u2")
    kind = (words[:, 0] >> 14).astype(np.uint8)
    x = (words[:, 0] & 0x3FFF).astype(np.float64)
    y = (words[:, 1] & 0x3FFF).astype(np.float64)
    angle = (words[:, 2] >> 8).astype(np.uint8)
    mq = (words[:, 2] & 0xFF).astype(np.uint8)
    if np.any(kind == 3):
        raise InvalidIsoRecord("minutia type 3 is reserved")
    if np.any(x >= width) or np.any(y >= height):
        raise InvalidIsoRecord("a minutia lies outside the declared image size")
    if np.any(mq > 100) or quality > 100:
        raise InvalidIsoRecord("quality values must be 0–100")
    if position > 10:
        raise InvalidIsoRecord(f"finger position {position} is not 0–10")
    sx = TEMPLATE_DPI / (xres * CM_PER_INCH) if abs(xres - _ppcm(TEMPLATE_DPI)) > 1 else 1.0
    sy = TEMPLATE_DPI / (yres * CM_PER_INCH) if abs(yres - _ppcm(TEMPLATE_DPI)) > 1 else 1.0
    w, h = max(1, round(width * sx)), max(1, round(height * sy))
    if w > MAX_COORD or h > MAX_COORD:
        raise InvalidIsoRecord("image size at 500 dpi is out of range")
    try:
        return FingerTemplate(
            x=np.clip(np.rint(x * sx), 0, w - 1).astype(np.uint16),
            y=np.clip(np.rint(y * sy), 0, h - 1).astype(np.uint16),
            angle=angle,
            kind=kind,
            quality=mq,
            width=w,
            height=h,
            position=position,
            image_quality=quality,
        )
    except InvalidArgument as exc:
        raise InvalidIsoRecord(exc.detail) from exc
