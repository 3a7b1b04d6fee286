"""What evidence images cost on disk: mean sealed bytes per face and per finger image, measured on real data.

Runs every image of the listed data sets through the same normalisation and sealing the server
uses (``enrollment.evidence``, ``matcher.evidence``) and prints the mean sealed record size per
data set and overall, and what a million subjects would take (faces at the mean of photos that reach the
640-px cap, as any camera photo does; small archive photos cost less).  Usage:

    .venv/bin/python benchmarks/evidence_size.py [--write]   # SHANAKHT_DATA or ../shared/data
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.results import markdown_table, script_command, write_section  # noqa: E402
from enrollment.errors import ImageDecodeError  # noqa: E402
from enrollment.evidence import face_evidence, finger_evidence  # noqa: E402
from matcher.evidence import Keyring, sample_aad  # noqa: E402

DATA = Path(os.environ.get("SHANAKHT_DATA", REPO.parent / "shared" / "data"))
FACE_SETS = ("five_celebrities", "ageitgey", "deepface", "faceapi_bbt", "att_orl")  # photos as taken (not pre-cropped)
FINGER_SETS = {"fvc2002_db1_b": 500, "fvc2002_db2_b": 569}  # FVC2002 DB1 (500 dpi) and DB2 (569 dpi) optical scans
SUFFIXES = {".jpg", ".jpeg", ".png", ".pgm", ".tif", ".bmp"}


def _sizes(paths, normalise) -> list[tuple[int, int]]:
    """(sealed bytes, long side of the kept image) per image."""
    with tempfile.TemporaryDirectory() as folder:
        keyring = Keyring.open(Path(folder) / "evidence.key")
        sizes = []
        for path in paths:
            try:
                image = normalise(path.read_bytes())
            except ImageDecodeError:
                continue
            sizes.append((len(keyring.seal(image, sample_aad("criminal_records", "S-0000001", 1_000_000))), max(image.width, image.height)))
        return sizes


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python benchmarks/evidence_size.py", description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="replace the evidence-size section of benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    means, rows = {}, []
    for modality, sets in (("face", {name: 0 for name in FACE_SETS}), ("finger", FINGER_SETS)):
        everything: list[tuple[int, int]] = []
        for name, dpi in sets.items():
            paths = sorted(p for p in (DATA / modality / name).rglob("*") if p.suffix.lower() in SUFFIXES)
            normalise = face_evidence if modality == "face" else (lambda data, dpi=dpi: finger_evidence(data, dpi))
            sizes = _sizes(paths, normalise)
            everything += sizes
            rows.append([modality, name, len(sizes), f"{statistics.mean(b for b, _ in sizes) / 1024:.1f}"])
        rows.append([modality, "all", len(everything), f"{statistics.mean(b for b, _ in everything) / 1024:.1f}"])
        if modality == "face":  # a camera photo today is larger than 640 px: the kept image is at the cap
            capped = [b for b, side in everything if side == 640]
            rows.append([modality, "at the 640 px cap", len(capped), f"{statistics.mean(capped) / 1024:.1f}"])
            means[modality] = statistics.mean(capped)
        else:
            means[modality] = statistics.mean(b for b, _ in everything)
    lines = [markdown_table(["modality", "set", "images", "mean sealed KiB"], rows), ""]
    for faces, fingers in ((1, 0), (1, 2), (1, 10)):
        total = 1_000_000 * (faces * means["face"] + fingers * means["finger"])
        lines.append(f"- 1,000,000 subjects × ({faces} face + {fingers} fingers): **{total / 1e9:.1f} GB** of sealed images")
    text = "\n".join(lines)
    print(text)
    if args.write:
        write_section("evidence_size", "Evidence images on disk (faces at the 640-px cap, fingers at the 500-dpi PNG)", text,
                      script_command("evidence_size.py", argv))


if __name__ == "__main__":
    main()
