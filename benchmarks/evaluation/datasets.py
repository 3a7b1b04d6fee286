"""Reading the labelled evaluation sets in ../shared/data (used by calibration and the benchmarks).

The sets are research-only and never copied into the repository: they are read in place from
``$SHANAKHT_DATA``, else ``../shared/data`` next to the repository root.  Each set is a folder of
``<data>/face`` or ``<data>/finger`` with a ``labels.csv`` (path, label, and a per-modality
column naming the subset or impression).
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

DATA_ENV = "SHANAKHT_DATA"
REPO_ROOT = Path(__file__).resolve().parents[2]

# Sets whose images are already 112×112 crops aligned to the ArcFace template.
PRE_ALIGNED_SETS = frozenset({"glint24_aligned"})
# A SOCOFing note naming the other fingers whose real print is this very image (data README).
_IDENTICAL_NOTE = re.compile(r"byte-identical to ([^;]+)")


@dataclass(frozen=True)
class Sample:
    """One labelled image: absolute path, identity label ('' when unlabelled), subset (finger: impression).

    ``group`` is the labels.csv ``subset`` column itself (for finger sets ``subset`` holds the impression
    number instead): latent_generated's ``clean`` and ``latent`` prints, for one.
    """

    path: Path
    relpath: str
    label: str
    subset: str
    note: str
    group: str = ""


def default_data_dir() -> Path:
    """``$SHANAKHT_DATA``, read at call time so a test or a shell can point elsewhere."""
    env = os.environ.get(DATA_ENV)
    return Path(env) if env else (REPO_ROOT.parent / "shared" / "data")


def face_sets(data_dir: Path | None = None) -> list[str]:
    """Names of the face sets present (folders of ``<data>/face`` with a labels.csv)."""
    return _set_names("face", data_dir)


def finger_sets(data_dir: Path | None = None) -> list[str]:
    """Names of the finger sets present (folders of ``<data>/finger`` with a labels.csv)."""
    return _set_names("finger", data_dir)


def load_face_set(name: str, data_dir: Path | None = None, labelled_only: bool = True) -> list[Sample]:
    """The samples of a face set in file order; ``labelled_only`` drops the unlabelled ones."""
    samples = _read_labels((data_dir or default_data_dir()) / "face" / name, subset_column="subset")
    return [s for s in samples if s.label] if labelled_only else samples


def load_finger_set(name: str, data_dir: Path | None = None) -> list[Sample]:
    """The labelled samples of a finger set in file order; ``subset`` is the impression number."""
    samples = _read_labels((data_dir or default_data_dir()) / "finger" / name, subset_column="sample")
    return [s for s in samples if s.label]


def load_pairs(name: str, data_dir: Path | None = None) -> list[tuple[str, str, bool]]:
    """``pairs.csv`` of a face set as (relpath_a, relpath_b, same); empty when the set has none."""
    path = (data_dir or default_data_dir()) / "face" / name / "pairs.csv"
    if not path.is_file():
        return []
    with open(path, newline="") as fh:
        return [(r["path_a"], r["path_b"], r["same"].strip() in ("1", "true", "True")) for r in csv.DictReader(fh)]


def identical_prints(samples: Iterable[Sample]) -> dict[str, frozenset[str]]:
    """label → the other labels whose real print is the very same image, read from the samples' notes.

    SOCOFing's Real prints hold byte-identical copies under different subjects; the data keeps one
    copy and names the group in the notes.  A pair between two labels of one group is the same
    image, so it is neither a genuine nor an impostor comparison of two fingers.
    """
    groups: dict[str, set[str]] = {}
    for sample in samples:
        found = _IDENTICAL_NOTE.search(sample.note)
        if found:
            group = {sample.label, *(label.strip() for label in found.group(1).split("&"))}
            for label in group:
                groups.setdefault(label, set()).update(group - {label})
    return {label: frozenset(others) for label, others in groups.items()}


def split_enrolled(identities: Sequence[str]) -> tuple[list[str], list[str]]:
    """The open-set (1:N) protocols' fixed rule: identities sorted, the 1st, 3rd, 5th, … enrolled (their
    searches are mated), the 2nd, 4th, … left out of the gallery (their searches are non-mated)."""
    ordered = sorted({str(identity) for identity in identities})
    return ordered[0::2], ordered[1::2]


def _set_names(modality: str, data_dir: Path | None) -> list[str]:
    root = (data_dir or default_data_dir()) / modality
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "labels.csv").is_file())


def _read_labels(folder: Path, subset_column: str) -> list[Sample]:
    with open(folder / "labels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return [
        Sample(
            path=folder / row["path"],
            relpath=row["path"],
            label=row.get("label") or "",
            subset=row.get(subset_column) or "",
            note=row.get("note") or "",
            group=row.get("subset") or "",
        )
        for row in rows
    ]
