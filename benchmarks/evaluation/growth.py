"""Real finger templates for the finger scale benchmarks, and jittered copies of them to grow a gallery.

Extracting a print costs ≈ 1 s (LEADER), so the templates of each set are extracted once through
``benchmarks.evaluation.finger``'s caching extractor (the network's minutiae cached by pixels)
and the resulting ISO records are kept in ``<cache>/templates/<set>.npz``; a rerun reads them back.

``jittered`` is the copy ``benchmarks/finger_accuracy.py --grow`` pads its gallery with: every
minutia moved by up to ±2 px and ±2 angle steps.  A copy is as alike to its base as two
extractions of one impression, so copies of a *probed* finger would be mates of its probes:
the scale benchmark grows from other fingers' prints only (SOCOFing's), and probes with held-out
impressions of the real fingers it enrolled (FVC, ten-finger).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from matcher.finger.iso19794 import from_iso, to_iso
from matcher.finger.template import FingerTemplate

log = logging.getLogger(__name__)

#: Sets with several impressions per finger: enrolled with their first, probed with the others.
MATED_SETS = ("fvc2002_db1_b", "fvc2002_db2_b", "fvc_300x300", "ten_fingers_4_people")
#: One impression per finger, none of them a finger of MATED_SETS: the bases of the jittered copies.
DISTRACTOR_SET = "socofing_real_distractors"


def jittered(base: FingerTemplate, rng: np.random.Generator) -> FingerTemplate:
    """A copy of ``base`` with every minutia moved by up to ±2 px and ±2 angle steps (kind, quality, size kept)."""
    return FingerTemplate(
        x=np.clip(base.x.astype(int) + rng.integers(-2, 3, base.size), 0, base.width - 1).astype(np.uint16),
        y=np.clip(base.y.astype(int) + rng.integers(-2, 3, base.size), 0, base.height - 1).astype(np.uint16),
        angle=(base.angle.astype(int) + rng.integers(-2, 3, base.size)).astype(np.uint8),
        kind=base.kind,
        quality=base.quality,
        width=base.width,
        height=base.height,
    )


def jittered_records(bases: Sequence[bytes], count: int, seed: int = 1) -> Iterator[bytes]:
    """``count`` ISO records, each a jittered copy of a base drawn at random (reproducible for a seed)."""
    rng = np.random.default_rng(seed)
    parsed = [from_iso(b) for b in bases]
    for _ in range(count):
        yield to_iso(jittered(parsed[int(rng.integers(len(parsed)))], rng))


@dataclass(frozen=True)
class RealSet:
    """One set's extracted prints: ISO records with their finger labels and impression numbers."""

    name: str
    records: list[bytes]
    labels: list[str]
    impressions: list[int]


def templates_dir() -> Path:
    """Per minutiae model: records another network produced are never read back."""
    from benchmarks.evaluation.finger import default_cache_dir, model_cache_name

    return default_cache_dir() / "templates" / model_cache_name()


def real_set(name: str, data_dir: Path | None = None, limit: int | None = None) -> RealSet:
    """The ISO records of set ``name`` (prints that failed to enrol left out), extracted once and cached.

    ``limit`` (default ``$FINGER_REAL_LIMIT``, else every print): only the set's first prints, for
    runs that check the benchmarks work rather than measure (``tests/test_cli.py``).
    """
    if limit is None and os.environ.get("FINGER_REAL_LIMIT"):
        limit = int(os.environ["FINGER_REAL_LIMIT"])
    from benchmarks.evaluation.finger import SET_DPI, caching_extractor, extract_set

    path = templates_dir() / f"{name}@{SET_DPI.get(name, 0)}dpi{'' if limit is None else f'-{limit}'}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            offsets = z["offsets"]
            blob = z["blob"].tobytes()
            records = [blob[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]
            return RealSet(name, records, z["labels"].tolist(), z["impressions"].tolist())

    extracted = extract_set(caching_extractor(threads=1), name, data_dir, limit)
    kept = [(s, t) for s, t in zip(extracted.samples, extracted.templates) if t is not None and t.size]
    records = [to_iso(t) for _, t in kept]
    labels = [s.label for s, _ in kept]
    impressions = [int(s.subset) if s.subset.isdigit() else 0 for s, _ in kept]
    path.parent.mkdir(parents=True, exist_ok=True)
    offsets = np.concatenate([[0], np.cumsum([len(r) for r in records])]).astype(np.int64)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
    np.savez(
        tmp, blob=np.frombuffer(b"".join(records), np.uint8), offsets=offsets,
        labels=np.array(labels, dtype=str), impressions=np.array(impressions, dtype=np.int64),
    )
    os.replace(tmp, path)
    log.info("%s: %d of %d prints extracted", name, len(records), len(extracted.samples))
    return RealSet(name, records, labels, impressions)


def require_prints() -> None:
    """Skip (pytest) unless the real prints and the LEADER model are there, or the templates are already cached."""
    import pytest

    from benchmarks.evaluation.datasets import default_data_dir

    cached = all((templates_dir() / f"{n}.npz").is_file() for n in (*MATED_SETS, DISTRACTOR_SET))
    if cached:
        return
    if not (default_data_dir() / "finger" / DISTRACTOR_SET / "labels.csv").is_file():
        pytest.skip(f"fingerprint data not found under {default_data_dir() / 'finger'}; set SHANAKHT_DATA")
    from enrollment import models
    from tests.conftest import model_cache

    from enrollment.finger.minutiae import MODEL_NAME

    problems = models.check(model_cache(), [MODEL_NAME])
    if problems:
        pytest.skip(f"LEADER model not available ({problems[0]}); run `make models`")


def distractor_bases() -> list[bytes]:
    """The SOCOFing prints' records (skips under pytest when they cannot be had)."""
    require_prints()
    return real_set(DISTRACTOR_SET).records


@dataclass(frozen=True)
class MatedPrints:
    """Real fingers to enrol (first impression each) and real probes of them (their other impressions)."""

    enrolled: list[tuple[str, bytes]]  # (finger label, record)
    probes: list[tuple[str, bytes]]  # (finger label of its enrolled mate, record)


def mated_prints(sets: Sequence[str] = MATED_SETS, data_dir: Path | None = None) -> MatedPrints:
    """Each finger's lowest-numbered extracted impression enrolled, the rest probes."""
    enrolled: list[tuple[str, bytes]] = []
    probes: list[tuple[str, bytes]] = []
    for name in sets:
        found = real_set(name, data_dir)
        first: dict[str, int] = {}
        for k, (label, impression) in enumerate(zip(found.labels, found.impressions)):
            if label not in first or impression < found.impressions[first[label]]:
                first[label] = k
        chosen = set(first.values())
        enrolled += [(found.labels[k], found.records[k]) for k in sorted(chosen)]
        probes += [(found.labels[k], found.records[k]) for k in range(len(found.records)) if k not in chosen]
    return MatedPrints(enrolled, probes)


#: ISO finger positions of ten_fingers_4_people's labels (``team1_s<person>_<L|R>_<T|I|M|R|P>``).
_POSITIONS = {("R", f): i + 1 for i, f in enumerate("TIMRP")} | {("L", f): i + 6 for i, f in enumerate("TIMRP")}
TEN_FINGER_SET = "ten_fingers_4_people"
FORMAT_ID = "iso19794-2:2005"


def with_position(record: bytes, position: int) -> bytes:
    """The record with its finger position set."""
    import dataclasses

    return to_iso(dataclasses.replace(from_iso(record), position=position))


@dataclass(frozen=True)
class TenPrints:
    """Each person of the ten-finger set: ten fingers enrolled (impression 1), ten probes (impression 2), positions set."""

    enrolled: dict[str, list[bytes]]
    probes: dict[str, list[bytes]]


def ten_prints(data_dir: Path | None = None) -> TenPrints:
    found = real_set(TEN_FINGER_SET, data_dir)
    by: dict[tuple[str, int], dict[int, bytes]] = {}
    for label, impression, record in zip(found.labels, found.impressions, found.records):
        _, person, hand, finger = label.split("_")
        by.setdefault((person, impression), {})[_POSITIONS[(hand, finger)]] = with_position(record, _POSITIONS[(hand, finger)])
    enrolled, probes = {}, {}
    for (person, impression), fingers in by.items():
        if impression == 1:
            enrolled[person] = [fingers[p] for p in sorted(fingers)]
    for (person, impression), fingers in by.items():
        if impression == 2 and person in enrolled:
            probes[person] = [fingers[p] for p in sorted(fingers)]
    return TenPrints(enrolled, probes)


def minutiae_in(record: bytes) -> int:
    """Minutiae of a one-view ISO 19794-2:2005 record without extended data (24 + 4 header bytes, 6 a minutia, 2 trailing)."""
    return (len(record) - 30) // 6


def finger_sample(record: bytes):
    from shanakht.v1 import identity_pb2 as pb

    return pb.Sample(template=pb.Template(modality=pb.MODALITY_FINGER, model_id=FORMAT_ID, vector=record))


def stream_enrol(stub, gallery: str, subjects: Iterator[tuple[str, list[bytes]]], timeout: float = 36_000) -> tuple[int, list[str]]:
    """Enrol (subject, records) pairs through ``EnrollStream``; (acknowledged, first errors)."""
    from shanakht.v1 import identity_pb2 as pb

    requests = (
        pb.EnrollRequest(subject_id=subject, gallery=gallery, samples=[finger_sample(r) for r in records], check_duplicates=False)
        for subject, records in subjects
    )
    acknowledged, errors = 0, []
    for response in stub.EnrollStream(requests, timeout=timeout):
        if response.error:
            if len(errors) < 5:
                errors.append(response.error)
        else:
            acknowledged += 1
    return acknowledged, errors


def grown_subjects(bases: Sequence[bytes], count: int, seed: int = 1, prefix: str = "grown-") -> Iterator[tuple[str, list[bytes]]]:
    """``count`` one-finger subjects, each a jittered copy of a base (distractors for the scale benchmarks)."""
    for i, record in enumerate(jittered_records(bases, count, seed)):
        yield f"{prefix}{i}", [record]


def memory_of(pid: int) -> dict[str, int]:
    """Resident memory of a process in bytes: all, anonymous, file-backed, peak."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
            fields[key] = int(value.split()[0]) * 1024
    return fields


if __name__ == "__main__":  # fill the cache: python -m benchmarks.evaluation.growth [set ...]
    import sys

    logging.basicConfig(level=logging.INFO)
    for set_name in sys.argv[1:] or [*MATED_SETS, DISTRACTOR_SET]:
        print(set_name, len(real_set(set_name).records), flush=True)
