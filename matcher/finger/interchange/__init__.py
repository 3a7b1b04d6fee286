"""Finger minutiae record interchange: ISO/IEC 19794-2:2005 and :2011, ANSI INCITS 378-2004.

One module per format (``iso2005``, ``iso2011``, ``incits378``: ``read(bytes) -> Record`` and
``write(templates) -> bytes``), ``common`` for what they share, and ``detect`` — the entry point:
``detect_format``, ``read_record`` (any format, told apart from the bytes) and ``to_record``.
Import is strict — a length field that disagrees with the bytes, a truncation, a reserved value
or a minutia outside the image is an ``InvalidIsoRecord`` whose detail starts with the record
field it is about — and every view comes back as a 500-dpi ``FingerTemplate``.  Templates are
stored as single-view ISO 2005 records (``detect.STORED_FORMAT``).

(This ``__init__`` imports nothing, so the format modules can import ``common`` without a cycle.)
"""
