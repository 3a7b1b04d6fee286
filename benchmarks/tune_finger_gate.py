"""Re-derive the fingerprint gate's ridge-region bound from *tune* identities only, and say whether the code agrees.

    python benchmarks/tune_finger_gate.py [--data DIR] [--smoke] [--write]

Before LEADER runs, ``enrollment.finger.pipeline._gate`` refuses images that are not fingerprints:
too little of the textured area looks like ridges (``MIN_RIDGE_FRACTION``, a face photo has
contrast but no ridge texture).  Scanner frames, ink blots and written marks have contrast too, so
that fraction alone also refuses prints an examiner would accept; a print whose ridge-like region
(``BlockMap.mask``) is large passes whatever else the frame holds
(``enrollment.finger.quality.CONFIDENT_RIDGE_AREA_PX``).

Rule, fixed before measuring: of the region sizes ``CANDIDATE_BLOCKS`` (16×16-px blocks at 500 dpi),
the smallest with which at most ``MAX_FACES_PASSING`` of the tune face photos pass the gate (they
would then cost a LEADER run and meet the later gates).  Fingers: the tune side of every finger set
the protocol declares; faces: the tune side of every face set, decoded as a finger image would be.
The script prints both refusal rates per candidate and compares the rule's value with the code;
exit status 1 if they differ.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from benchmarks.evaluation.datasets import face_sets, finger_sets, load_face_set, load_finger_set  # noqa: E402
from benchmarks.evaluation.finger import SET_DPI  # noqa: E402
from benchmarks.evaluation.protocol import load_protocol  # noqa: E402
from benchmarks.results import markdown_table, script_command, write_section  # noqa: E402
from enrollment.finger import quality  # noqa: E402
from enrollment.finger.image import decode_finger  # noqa: E402
from enrollment.finger.segmentation import BLOCK, analyse  # noqa: E402
from matcher.errors import InvalidArgument  # noqa: E402

NAME = "tune_finger_gate"  # its RESULTS section
CANDIDATE_BLOCKS = (8, 12, 16, 20, 24, 28, 32, 40, 48, 64)
MAX_FACES_PASSING = 1 / 200
SMOKE_IMAGES = 5  # per set with --smoke


@dataclass(frozen=True)
class Measured:
    """Per image: the ridge fraction of its contrasted blocks and its ridge region in px (as ``_gate`` reads them)."""

    fraction: np.ndarray
    area_px: np.ndarray

    def passing(self, area_px: float) -> np.ndarray:
        return (self.fraction >= quality.MIN_RIDGE_FRACTION) | (self.area_px >= area_px)


def measure_image(data: bytes, dpi: float) -> tuple[float, int] | None:
    """(ridge fraction, ridge region px) of one image, or None when it does not decode or is blank."""
    try:
        blocks = analyse(decode_finger(data, dpi).gray)
    except InvalidArgument:
        return None
    contrasted = int(blocks.foreground.sum())
    if contrasted == 0:
        return None
    return float((blocks.ridge_like & blocks.foreground).sum()) / contrasted, int(blocks.mask.sum())


def measure(pairs: Sequence[tuple[bytes, float]]) -> Measured:
    found = [m for m in (measure_image(data, dpi) for data, dpi in pairs) if m is not None]
    return Measured(np.array([f for f, _ in found]), np.array([a for _, a in found]))


def tune_images(data: Path | None, limit: int | None) -> tuple[list[tuple[bytes, float]], list[tuple[bytes, float]]]:
    """(finger images with their set's dpi, face photos) of the tune identities."""
    protocol = load_protocol()
    fingers, faces = [], []
    for name in finger_sets(data):
        tune = protocol.select("finger", name, load_finger_set(name, data), "tune")[:limit]
        fingers += [(s.path.read_bytes(), SET_DPI.get(name, 0)) for s in tune]
    for name in face_sets(data):
        tune = protocol.select("face", name, load_face_set(name, data), "tune")[:limit]
        faces += [(s.path.read_bytes(), 0) for s in tune]
    return fingers, faces


def report(fingers: Measured, faces: Measured) -> tuple[list[str], int]:
    """The table as Markdown lines, and the region (px) the rule gives."""
    rows, chosen = [], None
    for blocks in CANDIDATE_BLOCKS:
        area = blocks * BLOCK * BLOCK
        refused = 1 - fingers.passing(area).mean()
        passing = faces.passing(area).mean()
        if chosen is None and passing <= MAX_FACES_PASSING:
            chosen = area
        rows.append([f"{blocks} ({area} px)", f"{refused:.2%}", f"{passing:.2%}"])
    rows.append(["fraction alone", f"{1 - (fingers.fraction >= quality.MIN_RIDGE_FRACTION).mean():.2%}",
                 f"{(faces.fraction >= quality.MIN_RIDGE_FRACTION).mean():.2%}"])
    value = chosen if chosen is not None else CANDIDATE_BLOCKS[-1] * BLOCK * BLOCK
    lines = [
        f"{fingers.fraction.size} tune prints, {faces.fraction.size} tune face photos (benchmarks/protocol.toml); the rule is in the script's docstring.",
        "",
        markdown_table(["ridge region (16-px blocks)", "tune prints refused", "tune faces passing"], rows),
        "",
        f"- `enrollment.finger.quality.CONFIDENT_RIDGE_AREA_PX`: the rule gives {value}; the code has "
        f"{quality.CONFIDENT_RIDGE_AREA_PX}{'' if value == quality.CONFIDENT_RIDGE_AREA_PX else ' (re-tune)'}.",
    ]
    return lines, value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/tune_finger_gate.py", description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="data folder (default $SHANAKHT_DATA or ../shared/data)")
    parser.add_argument("--smoke", action="store_true", help=f"the first {SMOKE_IMAGES} tune images of each set (no verdict)")
    parser.add_argument("--write", action="store_true", help=f"replace the {NAME} section of benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    if args.smoke and args.write:
        parser.error("a smoke run writes nothing: drop --write")
    fingers, faces = tune_images(args.data, SMOKE_IMAGES if args.smoke else None)
    lines, value = report(measure(fingers), measure(faces))
    text = "\n".join(lines)
    print(text)
    if args.write:
        write_section(NAME, "Tuning: the fingerprint gate's ridge region, from tune images only", text, script_command("tune_finger_gate.py", argv))
    return 0 if args.smoke or value == quality.CONFIDENT_RIDGE_AREA_PX else 1


if __name__ == "__main__":
    sys.exit(main())
