"""One ANSI/NIST-ITL transaction (traditional encoding) → the samples and metadata of one subject.

What is enrolled: Type-4 and Type-14 single-finger images (rolled or plain, positions 1–12, the
plain thumbs 11 and 12 as fingers 1 and 6), Type-10 face images, and Type-9 INCITS 378 ("M1")
minutiae blocks for fingers that came without an image.  Everything else is *skipped with its
reason* (iris, palms, signatures, latent marks, multi-finger slaps that would need segmenting,
legacy and vendor minutiae) and reported to the caller, never silently dropped.

What is refused, the whole transaction with it: a structure ``nistitl`` cannot parse, a CNT that
does not list the records found, two records of one type with the same IDC, and any field of a
record we would enrol that is out of its range or disagrees with the image (``TransactionError``,
its detail naming record and field: ``Type-14 IDC 3 field 14.013 (FGP): …``).  One transaction is
one subject, all or nothing, so a refusal stores nothing.
"""

from __future__ import annotations

import datetime
import re
import struct
import tomllib
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from enrollment.errors import ImageDecodeError
from enrollment.image import DEFAULT_LIMITS, DecodeLimits
from enrollment.transaction.payloads import TYPE4_COMPRESSION, encoded_image
from matcher.errors import InvalidArgument
from matcher.finger.interchange.detect import STORED_FORMAT, to_record
from matcher.finger.interchange.incits378 import iso_angles
from matcher.finger.template import FingerTemplate

TRANSACTION_FIELD = "transaction"
MAX_TRANSACTION_BYTES = 64 * 1024 * 1024  # a ten-print card with 1000-ppi WSQ images is a few MB
DEFAULT_MAPPING = Path(__file__).with_name("mapping.toml")
#: Type-4 binary header after LEN (4) and IDC (1): IMP, FGP ×6, ISR, HLL, VLL, GCA.
TYPE4_HEADER = struct.Struct(">B6sBHHB")
#: Exemplar impression codes (ANSI/NIST-ITL 1-2011 Table 7): live/non-live plain/rolled, swipe, contactless.
EXEMPLAR_IMPRESSIONS = frozenset({0, 1, 2, 3, 8, *range(20, 30)})
LATENT_IMPRESSIONS = frozenset({4, 5, 6, 7})
#: Finger positions (Table 8) enrolled as one finger: 1–10, and the plain thumbs 11 → 1, 12 → 6.
SINGLE_FINGER = {**{p: p for p in range(1, 11)}, 11: 1, 12: 6}
MULTI_FINGER = frozenset({13, 14, 15, *range(40, 51)})
NOT_A_FLAT_FINGER = frozenset({16, 17, 19})  # extra digits, EJI / tips / segments
QUALITY_SCORES = frozenset({*range(0, 6), 254, 255})  # NQM: NFIQ 1–5, 0 unknown? 254 not computed, 255 failed
AMPUTATED = frozenset({"XX", "UP"})  # amputated, unable to print
MM_PER_INCH = 25.4
CM_PER_INCH = 2.54
NAMES = {2: "descriptive text", 3: "low-resolution grayscale finger (deprecated)", 5: "low-resolution binary finger (deprecated)",
         6: "high-resolution binary finger (deprecated)", 7: "user-defined image", 8: "signature", 11: "voice", 12: "dental",
         13: "latent friction ridge image", 15: "palm print", 16: "user-defined test image", 17: "iris", 18: "DNA",
         19: "plantar", 20: "source representation", 21: "associated context", 22: "non-photographic imagery",
         98: "information assurance", 99: "CBEFF biometric data"}


class TransactionError(InvalidArgument):
    """The transaction is malformed; the detail names the record and field."""

    def __init__(self, detail: str) -> None:
        super().__init__(TRANSACTION_FIELD, detail)


@dataclass(frozen=True)
class TransactionSample:
    """One enrollable sample: a face or finger image (encoded), or a finger minutiae record."""

    kind: str  # "face", "finger" or "template"
    data: bytes
    source: str  # e.g. "Type-14 IDC 3 FGP 2 (WSQ20)": where it came from, for the caller and for errors
    position: int = 0
    dpi: float = 0.0
    model_id: str = ""  # for "template": the record format


@dataclass(frozen=True)
class SkippedRecord:
    record_type: int
    idc: int
    reason: str


@dataclass(frozen=True)
class Transaction:
    """What a transaction holds that we can use, and what we left out."""

    version: str
    samples: tuple[TransactionSample, ...]
    skipped: tuple[SkippedRecord, ...]
    fields: dict[str, str] = field(default_factory=dict)  # "1.009" → text, Type-1 and Type-2


@dataclass(frozen=True)
class Mapping:
    """Which fields name the subject and which become its metadata (``mapping.toml``)."""

    subject_id: tuple[str, ...]
    metadata: dict[str, str]

    @classmethod
    def load(cls, path: Path | None = None) -> "Mapping":
        data = tomllib.loads((path or DEFAULT_MAPPING).read_text(encoding="utf-8"))
        tag = re.compile(r"^[12]\.\d{3}$")
        tags = tuple(data.get("subject_id", ()))
        metadata = dict(data.get("metadata", {}))
        bad = [t for t in (*tags, *metadata) if not tag.match(t)]
        if bad:
            raise ValueError(f"transaction mapping {path}: {bad[0]!r} is not a Type-1 or Type-2 tag like '2.018'")
        return cls(tags, metadata)

    def subject_id_of(self, transaction: Transaction) -> str:
        return next((transaction.fields[t] for t in self.subject_id if transaction.fields.get(t)), "")

    def metadata_of(self, transaction: Transaction) -> dict[str, str]:
        return {key: transaction.fields[t] for t, key in self.metadata.items() if transaction.fields.get(t)}


def _name(kind: int, idc: int) -> str:
    return f"Type-{kind} IDC {idc}"


def _fail(record: str, tag: str, alias: str, detail: str) -> TransactionError:
    return TransactionError(f"{record} field {tag}{f' ({alias})' if alias else ''}: {detail}")


class _Text:
    """Field values of one text record as strings, re-decoded as the transaction's DCS says."""

    def __init__(self, record, utf8: bool, name: str) -> None:
        self.record, self.utf8, self.name = record, utf8, name

    def raw(self, tag: int):
        f = self.record[tag]
        return None if f is None else f.value

    def text(self, tag: int) -> str:
        value = self.raw(tag)
        if value is None:
            return ""
        if isinstance(value, list):
            value = "; ".join(" ".join(str(item) for item in (sub if isinstance(sub, list) else [sub])) for sub in value)
        value = str(value)
        if self.utf8:
            try:
                value = value.encode("latin-1").decode("utf-8")
            except (UnicodeEncodeError, UnicodeDecodeError):
                pass  # not UTF-8 after all: keep nistitl's latin-1 reading
        return value.strip()

    def integer(self, tag: int, alias: str, required: bool = True) -> int:
        value = self.text(tag)
        if not value:
            if required:
                raise _fail(self.name, f"{self.record.type}.{tag:03d}", alias, "is missing")
            return 0
        if not value.isdigit():
            raise _fail(self.name, f"{self.record.type}.{tag:03d}", alias, f"{value!r} is not a number")
        return int(value)


def read_transaction(data: bytes, limits: DecodeLimits = DEFAULT_LIMITS) -> Transaction:
    """Parse and check one transaction; ``TransactionError`` names what is wrong."""
    import nistitl

    if not data:
        raise TransactionError("is empty")
    if len(data) > MAX_TRANSACTION_BYTES:
        raise TransactionError(f"is {len(data)} bytes; at most {MAX_TRANSACTION_BYTES} are read")
    message = nistitl.Message()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # Type-3/5/6: skipped below with their reason
            message.parse(bytes(data))
    except nistitl.NistException as exc:
        raise TransactionError(f"not a valid ANSI/NIST-ITL transaction: {exc}") from exc
    except (ValueError, IndexError, KeyError, struct.error, UnicodeDecodeError, AttributeError, TypeError) as exc:
        raise TransactionError(f"not an ANSI/NIST-ITL transaction ({type(exc).__name__}: {exc})") from exc
    records = list(message)
    if not records or records[0].type != 1:
        raise TransactionError("does not start with a Type-1 record")
    header = records[0]
    utf8 = _says_utf8(header)
    first = _Text(header, utf8, "Type-1")
    version = _check_header(first, records)
    fields = {f"1.{t:03d}": first.text(t) for t in (4, 5, 7, 8, 9, 10, 11, 12, 14)}
    samples: list[TransactionSample] = []
    skipped: list[SkippedRecord] = []
    minutiae: list[tuple[int, TransactionSample]] = []
    ntr = _ppmm(first.text(12))  # nominal transmitting resolution, for Type-4 ISR 1
    for record in records[1:]:
        idc = int(record.IDC) if str(record.IDC).strip().isdigit() else 0
        name = _name(record.type, idc)
        if record.type == 2:
            text = _Text(record, utf8, name)
            for f in record._fields:
                if f.tag > 2:
                    fields.setdefault(f"2.{f.tag:03d}", text.text(f.tag))
        elif record.type == 4:
            one = _type4(record, name, ntr, limits)
            (samples.append(one) if isinstance(one, TransactionSample) else skipped.append(SkippedRecord(4, idc, one)))
        elif record.type == 14:
            one = _type14(_Text(record, utf8, name), limits)
            (samples.append(one) if isinstance(one, TransactionSample) else skipped.append(SkippedRecord(14, idc, one)))
        elif record.type == 10:
            one = _type10(_Text(record, utf8, name), limits)
            (samples.append(one) if isinstance(one, TransactionSample) else skipped.append(SkippedRecord(10, idc, one)))
        elif record.type == 9:
            one = _type9(_Text(record, utf8, name))
            if isinstance(one, TransactionSample):
                minutiae.append((idc, one))
            else:
                skipped.append(SkippedRecord(9, idc, one))
        else:
            skipped.append(SkippedRecord(record.type, idc, f"{NAMES.get(record.type, 'record type')}: not enrolled"))
    imaged = {s.position for s in samples if s.kind == "finger" and s.position}
    for idc, one in minutiae:
        if one.position and one.position in imaged:
            skipped.append(SkippedRecord(9, idc, f"minutiae of finger {one.position}, whose image is enrolled instead"))
        else:
            samples.append(one)
    if not samples:
        reasons = "; ".join(f"{_name(s.record_type, s.idc)}: {s.reason}" for s in skipped) or "no records besides Type-1"
        raise TransactionError(f"holds nothing to enrol ({reasons})")
    fields = {k: v for k, v in fields.items() if v}
    return Transaction(version, tuple(samples), tuple(skipped), fields)


def _says_utf8(header) -> bool:
    """1.015 DCS: character set index 4 (or the name UTF-8) means the text fields are UTF-8."""
    f = header[15]
    if f is None:
        return False
    value = f.value
    items = [str(i) for sub in value for i in (sub if isinstance(sub, list) else [sub])] if isinstance(value, list) else [str(value)]
    return bool(items) and (items[0].strip() == "4" or any(i.strip().upper().replace("_", "-") == "UTF-8" for i in items))


def _check_header(first: _Text, records: Sequence) -> str:
    version = first.text(2)
    if not re.fullmatch(r"0[2-5]\d\d", version):
        raise _fail("Type-1", "1.002", "VER", f"{version!r} is not an ANSI/NIST-ITL version 0200–0599")
    date = first.text(5)
    try:
        datetime.datetime.strptime(date, "%Y%m%d")
    except ValueError:
        raise _fail("Type-1", "1.005", "DAT", f"{date!r} is not a date YYYYMMDD") from None
    cnt = first.raw(3) or []
    listed = [(int(sub[0]), int(sub[1])) for sub in cnt[1:] if isinstance(sub, list) and len(sub) == 2 and all(str(v).strip().isdigit() for v in sub)]
    found = [(r.type, int(r.IDC)) for r in records[1:]]
    if len(listed) != len(cnt) - 1 or len(listed) != len(found):
        raise _fail("Type-1", "1.003", "CNT", f"lists {len(cnt) - 1} records, the transaction holds {len(found)}")
    for i, (says, holds) in enumerate(zip(listed, found), start=1):
        if says != holds:
            raise _fail("Type-1", "1.003", "CNT", f"entry {i} says {_name(*says)}, record {i} is {_name(*holds)}")
    seen: set[tuple[int, int]] = set()
    for kind, idc in found:
        if kind != 2 and (kind, idc) in seen:
            raise TransactionError(f"{_name(kind, idc)}: two Type-{kind} records with IDC {idc}; an IDC names one record of a type")
        seen.add((kind, idc))
    return version


def _ppmm(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return 0.0


def _position(code: int, name: str, tag: str) -> int | str:
    """A finger position to enrol, or the reason the record is skipped; out-of-range codes are refused."""
    if code in SINGLE_FINGER:
        return SINGLE_FINGER[code]
    if code == 0:
        return "finger position 0 (unknown): the finger must be known to be enrolled"
    if code in MULTI_FINGER:
        return f"finger position {code} is a multi-finger slap; enrol its fingers one by one"
    if code in NOT_A_FLAT_FINGER:
        return f"finger position {code} is not a single flat or rolled finger"
    raise _fail(name, tag, "FGP", f"{code} is not a finger position (1–17, 19, 40–50)")


def _image(payload: bytes, compression: str, width: int, height: int, name: str, tag: str, limits: DecodeLimits) -> bytes:
    try:
        return encoded_image(payload, compression, width, height, limits)
    except ImageDecodeError as exc:
        raise _fail(name, tag, "DATA", exc.detail) from exc


def _type4(record, name: str, ntr: float, limits: DecodeLimits) -> TransactionSample | str:
    value = bytes(record.value)
    if len(value) < TYPE4_HEADER.size:
        raise TransactionError(f"{name}: {len(value) + 5} bytes; a Type-4 record's header alone is {TYPE4_HEADER.size + 5}")
    imp, fgp, isr, width, height, gca = TYPE4_HEADER.unpack_from(value)
    if imp not in EXEMPLAR_IMPRESSIONS:
        raise TransactionError(f"{name} byte 6 (IMP): {imp} is not an exemplar impression type")
    codes = [c for c in fgp if c != 255]
    if not codes:
        raise TransactionError(f"{name} bytes 7–12 (FGP): no finger position")
    position = _position(codes[0], name, "bytes 7–12")
    if isinstance(position, str):
        return position
    if gca not in TYPE4_COMPRESSION:
        raise TransactionError(f"{name} byte 18 (GCA): compression code {gca} is not 0–6")
    if isr not in (0, 1):
        raise TransactionError(f"{name} byte 13 (ISR): {isr} is not 0 or 1")
    dpi = 500.0 if isr == 0 else ntr * MM_PER_INCH
    if dpi <= 0:
        raise TransactionError(f"{name} byte 13 (ISR): 1 (native resolution) but 1.012 NTR gives none")
    compression = TYPE4_COMPRESSION[gca]
    try:
        image = encoded_image(value[TYPE4_HEADER.size :], compression, width, height, limits)
    except ImageDecodeError as exc:
        raise TransactionError(f"{name} image data: {exc.detail}") from exc
    return TransactionSample("finger", image, f"{name} FGP {codes[0]} ({compression})", position=position, dpi=round(dpi, 1))


def _resolution(text: _Text, kind: int) -> float:
    """Pixels per inch from x.008 SLC and x.009 THPS (0: the modality's default)."""
    slc = text.integer(8, "SLC", required=False)
    if slc not in (0, 1, 2):
        raise _fail(text.name, f"{kind}.008", "SLC", f"{slc} is not 0 (no scale), 1 (pixels/inch) or 2 (pixels/cm)")
    if slc == 0:
        return 0.0
    horizontal = text.integer(9, "THPS")
    if horizontal <= 0:
        raise _fail(text.name, f"{kind}.009", "THPS", "must be positive")
    return float(horizontal) if slc == 1 else horizontal * CM_PER_INCH


def _type14(text: _Text, limits: DecodeLimits) -> TransactionSample | str:
    name = text.name
    imp = text.integer(3, "IMP")
    if imp in LATENT_IMPRESSIONS:
        raise _fail(name, "14.003", "IMP", f"{imp} is a latent impression code; a Type-14 record holds exemplars (latents are Type-13)")
    if imp not in EXEMPLAR_IMPRESSIONS:
        raise _fail(name, "14.003", "IMP", f"{imp} is not an exemplar impression code")
    date = text.text(5)
    if date:
        try:
            datetime.datetime.strptime(date, "%Y%m%d")
        except ValueError:
            raise _fail(name, "14.005", "TCD", f"{date!r} is not a date YYYYMMDD") from None
    codes = text.raw(13)
    flat = [str(i) for sub in codes for i in (sub if isinstance(sub, list) else [sub])] if isinstance(codes, list) else [str(codes or "")]
    if not flat or not flat[0].strip().isdigit():
        raise _fail(name, "14.013", "FGP", f"{flat[0] if flat else ''!r} is not a finger position")
    code = int(flat[0])
    position = _position(code, name, "14.013")
    dpi = _resolution(text, 14)
    nqm = text.raw(22)
    if isinstance(nqm, list):
        for sub in nqm:
            score = sub[1] if isinstance(sub, list) and len(sub) > 1 else None
            if score is not None and (not str(score).isdigit() or int(score) not in QUALITY_SCORES):
                raise _fail(name, "14.022", "NQM", f"{score!r} is not an NFIQ score 1–5 (254 not computed, 255 failed)")
    if isinstance(position, str):
        return position
    amp = text.raw(18)
    if isinstance(amp, list):
        for sub in amp:
            if isinstance(sub, list) and len(sub) > 1 and str(sub[0]).isdigit() and int(sub[0]) == code and str(sub[1]).upper() in AMPUTATED:
                return f"finger {code} is marked {sub[1]} (amputated or unable to print) in 14.018"
    compression = text.text(11).upper()
    image = _image(bytes(text.raw(999) or b""), compression, text.integer(6, "HLL"), text.integer(7, "VLL"), name, "14.999", limits)
    return TransactionSample("finger", image, f"{name} FGP {code} ({compression})", position=position, dpi=dpi)


def _type10(text: _Text, limits: DecodeLimits) -> TransactionSample | str:
    kind = text.text(3).upper()
    if kind != "FACE":
        return f"image type {kind or 'not given'} (10.003): not a face"
    compression = text.text(11).upper()
    image = _image(bytes(text.raw(999) or b""), compression, text.integer(6, "HLL"), text.integer(7, "VLL"), text.name, "10.999", limits)
    return TransactionSample("face", image, f"{text.name} FACE ({compression})")


def _type9(text: _Text) -> TransactionSample | str:
    """A Type-9's INCITS 378 block (9.126–9.150) as a finger template record; other feature blocks are skipped."""
    if text.raw(137) is None:
        if text.raw(331) is not None:
            return "extended feature set (EFS, 9.300–9.399) minutiae are not read; send the image or an INCITS 378 block"
        if text.text(4).upper() == "S":
            return "legacy NIST minutiae (9.005–9.012) are not read; send the image or an INCITS 378 block"
        return "no INCITS 378 minutiae block (9.126–9.150): vendor-defined features are not read"
    name = text.name
    width, height = text.integer(128, "HLL"), text.integer(129, "VLL")
    slc = text.integer(130, "SLC")
    if slc not in (1, 2):
        raise _fail(name, "9.130", "SLC", f"{slc} is not 1 (pixels/inch) or 2 (pixels/cm)")
    hres = text.integer(131, "THPS")
    position = _position(text.integer(134, "FGP"), name, "9.134")
    if isinstance(position, str):
        return position
    rows = text.raw(137)
    rows = rows if isinstance(rows, list) and rows and isinstance(rows[0], list) else [rows]
    try:
        values = np.array([[int(v) for v in row[1:6]] for row in rows], dtype=np.int64)
    except (TypeError, ValueError):
        raise _fail(name, "9.137", "MRT", "minutiae must be numbers: index, x, y, angle, type, quality") from None
    if values.ndim != 2 or values.shape[1] != 5:
        raise _fail(name, "9.137", "MRT", "each minutia needs index, x, y, angle, type and quality")
    x, y, angle, kind, quality = values.T
    declared = text.integer(136, "NOM", required=False)
    if declared and declared != len(values):
        raise _fail(name, "9.136", "NOM", f"says {declared} minutiae, 9.137 holds {len(values)}")
    for column, limit, what in ((x, width, "x"), (y, height, "y")):
        if (column < 0).any() or (column >= limit).any():
            raise _fail(name, "9.137", "MRT", f"a minutia's {what} lies outside the {width}×{height} image")
    if (angle < 0).any() or (angle > 179).any():
        raise _fail(name, "9.137", "MRT", "angles are 0–179 (2° steps)")
    if not np.isin(kind, (0, 1, 2)).all():
        raise _fail(name, "9.137", "MRT", "minutia types are 0 (other), 1 (ridge ending) or 2 (bifurcation)")
    if (quality < 0).any() or (quality > 100).any():
        raise _fail(name, "9.137", "MRT", "minutia qualities are 0–100")
    ppi = hres if slc == 1 else hres * CM_PER_INCH
    scale = 500.0 / ppi if ppi > 0 else 1.0
    w, h = max(1, round(width * scale)), max(1, round(height * scale))
    fqd = text.raw(135)
    image_quality = int(fqd[0][0]) if isinstance(fqd, list) and fqd and isinstance(fqd[0], list) and str(fqd[0][0]).isdigit() else 0
    template = FingerTemplate(
        x=np.clip(np.rint(x * scale), 0, w - 1).astype(np.uint16),
        y=np.clip(np.rint(y * scale), 0, h - 1).astype(np.uint16),
        angle=iso_angles(angle),
        kind=kind.astype(np.uint8),
        quality=quality.astype(np.uint8),
        width=w,
        height=h,
        position=position,
        image_quality=min(100, image_quality),
    )
    return TransactionSample("template", to_record(template), f"{name} FGP {position} (INCITS 378 block, {len(values)} minutiae)",
                             position=position, model_id=STORED_FORMAT)
