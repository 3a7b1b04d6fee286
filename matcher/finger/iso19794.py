"""ISO/IEC 19794-2:2005 finger minutiae records, one finger view: the format finger templates are stored in.

The formats themselves live in ``matcher.finger.interchange`` (ISO 2005 and 2011, ANSI INCITS
378-2004, and the sniffing that tells them apart); this module keeps the two functions the rest
of the system has always used:

* ``to_iso(template)`` — one template as a one-view ISO 19794-2:2005 record;
* ``from_iso(data, view=0)`` — view ``view`` of an ISO 19794-2:2005 record, at 500 dpi.  The whole
  record is validated first (every view, every length field), so a record that lies about its
  size is refused whichever view is asked for.  To take *every* view of a record in any of the
  three formats, use ``matcher.finger.interchange.read_record``.

Import is strict: a length field that disagrees with the bytes, a truncated view, a coordinate
outside the image or a reserved type is an ``InvalidIsoRecord`` (field ``iso_record``, the
record's own field named at the start of the detail).  Records at other resolutions are
rescaled to 500 dpi, the unit our matcher works in.
"""

from __future__ import annotations

from matcher.finger.interchange import iso2005
from matcher.finger.interchange.common import CM_PER_INCH, ISO_FIELD, MAGIC, MAX_RECORD_BYTES, InvalidIsoRecord
from matcher.finger.interchange.iso2005 import HEADER, IMPRESSION_LIVE_PLAIN, VERSION, VIEW_HEADER
from matcher.finger.template import FingerTemplate

#: The model id of finger templates and galleries: the record format, whoever extracted the minutiae.
FORMAT_ID = iso2005.FORMAT_ID

__all__ = [
    "CM_PER_INCH",
    "FORMAT_ID",
    "HEADER",
    "IMPRESSION_LIVE_PLAIN",
    "ISO_FIELD",
    "MAGIC",
    "MAX_RECORD_BYTES",
    "VERSION",
    "VIEW_HEADER",
    "InvalidIsoRecord",
    "from_iso",
    "to_iso",
]


def to_iso(template: FingerTemplate, equipment_id: int = 0) -> bytes:
    """Serialise one template as a one-view ISO 19794-2:2005 record."""
    return iso2005.write(template, equipment_id)


def from_iso(data: bytes, view: int = 0) -> FingerTemplate:
    """Parse a record; return view number ``view`` (0-based) as a 500-dpi ``FingerTemplate``."""
    views = iso2005.read(data).views
    if not 0 <= view < len(views):
        raise InvalidIsoRecord(f"record has {len(views)} finger views; view {view} requested", record_field="header.views")
    return views[view]
