"""Which finger minutiae record format a byte string is, read from the bytes alone.

``FMR\\0`` then the version: ``030\\0`` is ISO/IEC 19794-2:2011; `` 20\\0`` is ISO/IEC 19794-2:2005
*or* ANSI INCITS 378-2004, which share magic and version.  Their headers differ in the length
field — 4 bytes at offset 8 (ISO) against 2 bytes there, or 0 and 4 bytes after it (INCITS) —
and for any record at most one of them can agree with the record's size, so the one that does
decides.  When neither does, the record lies about its length (or is truncated) and is refused.
"""

from __future__ import annotations

import struct

from matcher.finger.interchange import incits378, iso2005, iso2011
from matcher.finger.interchange.common import ISO_FIELD, MAGIC, InvalidIsoRecord, Record, check_bytes
from matcher.finger.template import FingerTemplate

#: The format finger templates are stored (and galleries are set up) in.
STORED_FORMAT = iso2005.FORMAT_ID
#: The formats a finger template may be sent in, by model id.
FORMATS = {iso2005.FORMAT_ID: iso2005, iso2011.FORMAT_ID: iso2011, incits378.FORMAT_ID: incits378}
NAMES = {
    iso2005.FORMAT_ID: "ISO/IEC 19794-2:2005",
    iso2011.FORMAT_ID: "ISO/IEC 19794-2:2011",
    incits378.FORMAT_ID: "ANSI INCITS 378-2004",
}


__all__ = ["FORMATS", "ISO_FIELD", "NAMES", "STORED_FORMAT", "InvalidIsoRecord", "Record", "detect_format", "read_record", "to_record"]


def detect_format(data: bytes) -> str:
    """The model id of the format ``data`` is in (``InvalidIsoRecord`` naming the header field that rules all out)."""
    data = check_bytes(data)
    if len(data) < 8:
        raise InvalidIsoRecord(f"record is {len(data)} bytes; too short for a record header", record_field="header")
    if data[:4] != MAGIC:
        raise InvalidIsoRecord(f"format identifier is {data[:4]!r}, not {MAGIC!r}", record_field="header.format_identifier")
    version = data[4:8]
    if version == iso2011.VERSION:
        return iso2011.FORMAT_ID
    if version != iso2005.VERSION:
        raise InvalidIsoRecord(
            f"version is {version!r}; read are ISO/IEC 19794-2:2005 and ANSI INCITS 378-2004 ({iso2005.VERSION!r}) "
            f"and ISO/IEC 19794-2:2011 ({iso2011.VERSION!r})",
            record_field="header.version",
        )
    if len(data) < 12:
        raise InvalidIsoRecord(f"record is {len(data)} bytes; too short for a record header", record_field="header")
    if iso2005.length_agrees(data):
        return iso2005.FORMAT_ID
    if incits378.length_agrees(data):
        return incits378.FORMAT_ID
    iso_says = struct.unpack_from(">I", data, 8)[0]
    declared = incits378.declared_length(data)
    ansi_says = f"{declared[0]}" if declared else "nothing"
    raise InvalidIsoRecord(
        f"length field says {iso_says} bytes as an ISO/IEC 19794-2:2005 header and {ansi_says} as an ANSI INCITS 378-2004 "
        f"header, but the record has {len(data)}",
        record_field="header.record_length",
    )


def read_record(data: bytes) -> Record:
    """Parse a record in any of the three formats, strictly; every finger view at 500 dpi."""
    data = check_bytes(data)
    return FORMATS[detect_format(data)].read(data)


def to_record(templates: FingerTemplate | list[FingerTemplate] | tuple[FingerTemplate, ...], format: str = iso2005.FORMAT_ID) -> bytes:
    """Serialise one template (or several views) in ``format`` (a model id of ``FORMATS``; ISO 2005 by default)."""
    module = FORMATS.get(format)
    if module is None:
        raise ValueError(f"{format!r} is not one of {', '.join(FORMATS)}")
    return module.write(templates)
