"""Reading the labelled evaluation sets in ../shared/data (used by calibration, benchmarks and tests).

The sets are research-only and never copied into the repository: they are read in place from
``$SHANAKHT_DATA``, else ``../shared/data`` next to the repository root.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

DATA_ENV = "SHANAKHT_DATA"
REPO_ROOT = Path(__file__).resolve().parent.parent

# Sets whose images are already 112×112 crops aligned to the ArcFace template.
PRE_ALIGNED_SETS = frozenset({"glint24_aligned"})
# Sets used to calibrate scores; reports on the other sets are out-of-sample.
CALIBRATION_SETS = ("glint24_aligned", "att_orl", "five_celebrities")


@dataclass(frozen=True)
class Sample:
    """One labelled image: absolute path, identity label ('' when unlabelled), subset name."""

    path: Path
    relpath: str
    label: str
    subset: str
    note: str


def default_data_dir() -> Path:
    env = os.environ.get(DATA_ENV)
    return Path(env) if env else (REPO_ROOT.parent / "shared" / "data")


def face_sets(data_dir: Path | None = None) -> list[str]:
    """Names of the face sets present (folders of ``<data>/face`` with a labels.csv)."""
    root = (data_dir or default_data_dir()) / "face"
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "labels.csv").is_file())


def load_face_set(name: str, data_dir: Path | None = None, labelled_only: bool = True) -> list[Sample]:
    folder = (data_dir or default_data_dir()) / "face" / name
    with open(folder / "labels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    samples = [
        Sample(
            path=folder / row["path"],
            relpath=row["path"],
            label=row.get("label", "") or "",
            subset=row.get("subset", "") or "",
            note=row.get("note", "") or "",
        )
        for row in rows
    ]
    return [s for s in samples if s.label] if labelled_only else samples


def load_pairs(name: str, data_dir: Path | None = None) -> list[tuple[str, str, bool]]:
    """``pairs.csv`` of a set as (relpath_a, relpath_b, same); empty when the set has none."""
    path = (data_dir or default_data_dir()) / "face" / name / "pairs.csv"
    if not path.is_file():
        return []
    with open(path, newline="") as fh:
        return [(r["path_a"], r["path_b"], r["same"].strip() in ("1", "true", "True")) for r in csv.DictReader(fh)]
