"""What the three finger minutiae record formats share: the error, a bounds-checked reader, minutiae checks, 500-dpi rescaling.

Every refusal names the field of the *record* that is wrong (``views[1].minutiae[3].x``,
``header.record_length``…) at the start of its detail, and keeps the request-level field
``iso_record`` (the transport qualifies it further, e.g. ``samples[0].template.vector``).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from matcher.errors import InvalidArgument
from matcher.finger.template import MAX_COORD, TEMPLATE_DPI, FingerTemplate

ISO_FIELD = "iso_record"
MAGIC = b"FMR\x00"
CM_PER_INCH = 2.54
PPCM_500_DPI = 197  # round(500 / 2.54): what every format stores for a 500-dpi print
#: The largest record any reader looks at (a finger record of 255 minutiae is < 1.6 kB; extended data aside).
MAX_RECORD_BYTES = 16 * 1024 * 1024
MAX_POSITION = 10  # single fingers 1–10; multi-finger codes (13–15, 40–50 in :2011) describe no one finger

EXTENSION_HEADER = struct.Struct(">HH")  # type, length (the 4 header bytes included)


class InvalidIsoRecord(InvalidArgument):
    """A finger minutiae record (ISO/IEC 19794-2 or ANSI INCITS 378) is malformed.

    ``record_field`` names the offending field inside the record (also the start of ``detail``).
    """

    def __init__(self, detail: str, field: str = ISO_FIELD, record_field: str = "") -> None:
        super().__init__(field, f"{record_field}: {detail}" if record_field else detail)
        self.record_field = record_field


@dataclass(frozen=True)
class Record:
    """A parsed record: its format and its finger views, each a 500-dpi ``FingerTemplate``.

    A view's ``extra`` holds what the record said beyond the minutiae: ``view`` (the view or
    representation number), ``impression`` (impression type code) and ``source_dpi``.
    """

    format: str
    views: tuple[FingerTemplate, ...]


class Reader:
    """Big-endian fields from ``data[start:end]``; running past ``end`` is an ``InvalidIsoRecord`` naming the field."""

    def __init__(self, data: bytes, start: int = 0, end: int | None = None) -> None:
        self.data = data
        self.offset = start
        self.end = len(data) if end is None else end

    @property
    def remaining(self) -> int:
        return self.end - self.offset

    def take(self, layout: struct.Struct, field: str) -> tuple:
        if self.offset + layout.size > self.end:
            raise InvalidIsoRecord(
                f"truncated: {layout.size} bytes needed at offset {self.offset}, {max(0, self.remaining)} left", record_field=field
            )
        values = layout.unpack_from(self.data, self.offset)
        self.offset += layout.size
        return values

    def one(self, layout: struct.Struct, field: str):
        (value,) = self.take(layout, field)
        return value

    def raw(self, size: int, field: str) -> bytes:
        if size < 0 or self.offset + size > self.end:
            raise InvalidIsoRecord(f"truncated: {size} bytes declared at offset {self.offset}, {max(0, self.remaining)} left", record_field=field)
        out = self.data[self.offset : self.offset + size]
        self.offset += size
        return out


U8 = struct.Struct(">B")
U16 = struct.Struct(">H")
U32 = struct.Struct(">I")


def check_bytes(data: object) -> bytes:
    if not isinstance(data, (bytes, bytearray, memoryview, np.ndarray)):
        raise InvalidIsoRecord(f"expected bytes, got {type(data).__name__}")
    data = bytes(np.asarray(data, dtype=np.uint8)) if isinstance(data, np.ndarray) else bytes(data)
    if len(data) > MAX_RECORD_BYTES:
        raise InvalidIsoRecord(f"record is {len(data)} bytes; more than any valid record", record_field="header.record_length")
    return data


def read_extended_data(reader: Reader, field: str, max_type: int = 0xFFFF) -> list[tuple[int, bytes]]:
    """The extended data of one view: a 2-byte total length, then blocks of (type, length, data).

    Block types are kept opaque (our matcher uses minutiae only); type 0 is reserved, and the
    blocks must fill the declared total exactly.
    """
    total = reader.one(U16, f"{field}.length")
    if total > reader.remaining:
        raise InvalidIsoRecord(f"length field says {total} bytes, {reader.remaining} are left", record_field=f"{field}.length")
    blocks: list[tuple[int, bytes]] = []
    inner = Reader(reader.data, reader.offset, reader.offset + total)
    while inner.remaining > 0:
        name = f"{field}.blocks[{len(blocks)}]"
        kind, length = inner.take(EXTENSION_HEADER, name)
        if kind == 0 or kind > max_type:
            raise InvalidIsoRecord(f"extended data type {kind:#06x} is reserved", record_field=f"{name}.type")
        if length < EXTENSION_HEADER.size:
            raise InvalidIsoRecord(f"length field says {length}; a block is at least {EXTENSION_HEADER.size}", record_field=f"{name}.length")
        if length - EXTENSION_HEADER.size > inner.remaining:
            raise InvalidIsoRecord(
                f"length field says {length} bytes; the extended data has {inner.remaining + EXTENSION_HEADER.size} left",
                record_field=f"{name}.length",
            )
        blocks.append((kind, inner.raw(length - EXTENSION_HEADER.size, f"{name}.data")))
    reader.offset += total
    return blocks


def write_extended_data(blocks: list[tuple[int, bytes]] | tuple = ()) -> bytes:
    body = b"".join(EXTENSION_HEADER.pack(kind, len(data) + EXTENSION_HEADER.size) + data for kind, data in blocks)
    return U16.pack(len(body)) + body


def unpack_minutiae(raw: bytes, count: int, size: int) -> tuple[np.ndarray, ...]:
    """Type, x, y, the y word's top two bits, angle byte and quality of ``count`` minutiae of ``size`` (5 or 6) bytes."""
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(count, size).astype(np.uint16)
    word_x = rows[:, 0] << 8 | rows[:, 1]
    word_y = rows[:, 2] << 8 | rows[:, 3]
    quality = rows[:, 5] if size == 6 else np.zeros(count, np.uint16)
    return (word_x >> 14).astype(np.uint8), word_x & 0x3FFF, word_y & 0x3FFF, (word_y >> 14).astype(np.uint8), rows[:, 4], quality


def pack_minutiae(template: FingerTemplate, angles: np.ndarray, with_quality: bool = True) -> bytes:
    rows = np.zeros((template.size, 6 if with_quality else 5), np.uint8)
    word_x = (template.kind.astype(np.uint16) & 0x3) << 14 | template.x.astype(np.uint16)
    rows[:, 0], rows[:, 1] = word_x >> 8, word_x & 0xFF
    rows[:, 2], rows[:, 3] = template.y >> 8, template.y & 0xFF
    rows[:, 4] = angles
    if with_quality:
        rows[:, 5] = template.quality
    return rows.tobytes()


def first(mask: np.ndarray) -> int | None:
    hits = np.flatnonzero(mask)
    return int(hits[0]) if hits.size else None


def check_minutiae(field: str, kind: np.ndarray, x: np.ndarray, y: np.ndarray, width: int, height: int) -> None:
    """Types 0–2 only; every minutia inside the declared image."""
    for mask, name, detail in (
        (kind == 3, "type", "minutia type 3 is reserved"),
        (x >= width, "x", f"lies outside the declared image width {width}"),
        (y >= height, "y", f"lies outside the declared image height {height}"),
    ):
        i = first(mask)
        if i is not None:
            value = {"type": kind, "x": x, "y": y}[name][i]
            raise InvalidIsoRecord(f"{value}: {detail}" if name != "type" else detail, record_field=f"{field}.minutiae[{i}].{name}")


def check_range(value: int, allowed, field: str, what: str) -> None:
    if value not in allowed:
        raise InvalidIsoRecord(f"{what} {value} is reserved or out of range", record_field=field)


def check_position(position: int, field: str) -> None:
    if position > MAX_POSITION:
        raise InvalidIsoRecord(f"finger position {position} is not 0–{MAX_POSITION} (one finger, or unknown)", record_field=field)


def check_image(width: int, height: int, xres: int, yres: int, field: str) -> None:
    if width == 0 or height == 0:
        raise InvalidIsoRecord("image size must be non-zero", record_field=f"{field}.image_size")
    if xres == 0 or yres == 0:
        raise InvalidIsoRecord("resolution must be non-zero", record_field=f"{field}.resolution")


def _ppcm(dpi: int) -> int:
    return int(round(dpi / CM_PER_INCH))


def to_template(
    field: str,
    kind: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    angle: np.ndarray,
    quality: np.ndarray,
    width: int,
    height: int,
    xres: int,
    yres: int,
    position: int,
    image_quality: int,
    extra: dict,
) -> FingerTemplate:
    """One view's validated minutiae as a 500-dpi ``FingerTemplate`` (``angle``: ISO codes, 256 a turn)."""
    sx = TEMPLATE_DPI / (xres * CM_PER_INCH) if abs(xres - PPCM_500_DPI) > 1 else 1.0
    sy = TEMPLATE_DPI / (yres * CM_PER_INCH) if abs(yres - PPCM_500_DPI) > 1 else 1.0
    w, h = max(1, round(width * sx)), max(1, round(height * sy))
    if w > MAX_COORD or h > MAX_COORD:
        raise InvalidIsoRecord(f"image size {w}×{h} at 500 dpi is out of range", record_field=f"{field}.image_size")
    extra = {**extra, "source_dpi": (round(xres * CM_PER_INCH), round(yres * CM_PER_INCH))}
    try:
        return FingerTemplate(
            x=np.clip(np.rint(x.astype(np.float64) * sx), 0, w - 1).astype(np.uint16),
            y=np.clip(np.rint(y.astype(np.float64) * sy), 0, h - 1).astype(np.uint16),
            angle=np.asarray(angle, np.uint8),
            kind=np.asarray(kind, np.uint8),
            quality=np.asarray(quality, np.uint8),
            width=w,
            height=h,
            position=position,
            image_quality=image_quality,
            extra=extra,
        )
    except InvalidArgument as exc:
        raise InvalidIsoRecord(exc.detail, record_field=field) from exc


def resolution_ppcm(template: FingerTemplate) -> int:
    return _ppcm(template.dpi)


def check_writable(templates: list[FingerTemplate] | tuple[FingerTemplate, ...], max_views: int) -> None:
    if not templates:
        raise InvalidArgument("templates", "a record holds at least one finger view")
    if len(templates) > max_views:
        raise InvalidArgument("templates", f"{len(templates)} views; this format holds at most {max_views}")
    first_size = (templates[0].width, templates[0].height, templates[0].dpi)
    if any((t.width, t.height, t.dpi) != first_size for t in templates):
        raise InvalidArgument("templates", "the views of one record share one image size and resolution in this format")


def view_numbers(templates) -> list[int]:
    """Views of one finger numbered 0, 1, … in order (the standards number views per finger position)."""
    seen: dict[int, int] = {}
    out = []
    for t in templates:
        out.append(seen.get(t.position, 0))
        seen[t.position] = out[-1] + 1
    if max(out) > 15:
        raise InvalidArgument("templates", "at most 16 views of one finger position fit the view number field")
    return out


def check_unique_views(views: list[tuple[int, int]], field: str) -> None:
    """No two views of one known finger position with the same view number."""
    seen: set[tuple[int, int]] = set()
    for i, (position, number) in enumerate(views):
        if position and (position, number) in seen:
            raise InvalidIsoRecord(f"finger {position} view {number} appears twice", record_field=f"{field}[{i}].view_number")
        seen.add((position, number))
