"""Re-derive the resolution SOCOFing is read at from *tune* prints' ridge period, and say whether the code agrees.

    python benchmarks/tune_finger_dpi.py [--data DIR] [--smoke] [--write]

SOCOFing's images (96×103 px) are labelled 500 dpi, but their ridges are a few pixels apart: they
were scaled down after capture.  LEADER was trained on 500-dpi prints and finds minutiae at that
ridge period, so the benchmarks read SOCOFing at the resolution that brings its ridge period to
the 500-dpi one (``benchmarks.evaluation.finger.SET_DPI``); every system compared is given the
same resolution.

Rule, fixed before measuring: the ridge period of a print is the peak of the radially averaged
power spectrum of its textured 32×32 blocks (half-overlapping, grey-level deviation ≥ 12), refined
by a parabola through the peak; the 500-dpi reference is the median period of the tune prints of
the FVC2002 sets whose resolution the provider documents (DB1_B 500 dpi, DB2_B 569 dpi; each
period scaled to 500 dpi); SOCOFing's resolution is 500 × (median period of its real tune prints)
÷ that reference, rounded to the nearest 10 dpi.  The altered prints are the same images damaged,
so they take the real prints' value.  Exit status 1 if the code differs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from benchmarks.evaluation.datasets import load_finger_set  # noqa: E402
from benchmarks.evaluation.finger import SET_DPI  # noqa: E402
from benchmarks.evaluation.protocol import load_protocol  # noqa: E402
from benchmarks.results import markdown_table, script_command, write_section  # noqa: E402

NAME = "tune_finger_dpi"  # its RESULTS section
REFERENCE_SETS = ("fvc2002_db1_b", "fvc2002_db2_b")
SCALED_SETS = ("socofing_real_distractors", "socofing_altered")
MEASURED_SET = "socofing_real_distractors"
BLOCK = 32
MIN_DEVIATION = 12.0
ROUND_TO = 10
SMOKE_IMAGES = 5  # per set with --smoke


def ridge_period(gray: np.ndarray) -> float | None:
    """Pixels between ridges: the radial peak of the summed power spectra of textured blocks (None if none is textured)."""
    window = np.outer(np.hanning(BLOCK), np.hanning(BLOCK))
    power = np.zeros((BLOCK, BLOCK))
    found = False
    g = gray.astype(np.float64)
    for y in range(0, g.shape[0] - BLOCK + 1, BLOCK // 2):
        for x in range(0, g.shape[1] - BLOCK + 1, BLOCK // 2):
            block = g[y : y + BLOCK, x : x + BLOCK]
            if block.std() < MIN_DEVIATION:
                continue
            power += np.abs(np.fft.fftshift(np.fft.fft2((block - block.mean()) * window))) ** 2
            found = True
    if not found:
        return None
    yy, xx = np.indices(power.shape) - BLOCK // 2
    radius = np.hypot(yy, xx).round().astype(np.intp).ravel()
    radial = np.bincount(radius, power.ravel()) / np.bincount(radius)
    k = 2 + int(np.argmax(radial[2 : BLOCK // 2]))  # below 2 cycles a block is shading, not ridges
    left, mid, right = radial[k - 1], radial[k], radial[k + 1]
    curvature = left - 2 * mid + right
    peak = k + (0.5 * (left - right) / curvature if curvature < 0 else 0.0)
    return BLOCK / peak


def tune_periods(name: str, data: Path | None, limit: int | None) -> np.ndarray:
    """Ridge periods (native pixels) of the tune prints of ``name``."""
    samples = load_protocol().select("finger", name, load_finger_set(name, data), "tune")[:limit]
    periods = []
    for sample in samples:
        with Image.open(sample.path) as image:
            period = ridge_period(np.asarray(image.convert("L")))
        if period is not None:
            periods.append(period)
    return np.array(periods)


def report(data: Path | None, limit: int | None) -> tuple[list[str], int]:
    rows, reference = [], []
    for name in REFERENCE_SETS:
        periods = tune_periods(name, data, limit) * 500 / SET_DPI[name]
        reference.append(periods)
        rows.append([name, f"{SET_DPI[name]} (documented)", str(periods.size), f"{np.median(periods):.2f}"])
    at_500 = float(np.median(np.concatenate(reference)))
    measured = tune_periods(MEASURED_SET, data, limit)
    native = float(np.median(measured))
    value = int(ROUND_TO * round(500 * native / at_500 / ROUND_TO))
    rows.append([MEASURED_SET, "labelled 500", str(measured.size), f"{native:.2f} (native pixels)"])
    code = {SET_DPI[name] for name in SCALED_SETS}
    lines = [
        "Tune prints only (benchmarks/protocol.toml); the rule is in the script's docstring.",
        "",
        markdown_table(["set", "dpi", "tune prints", "median ridge period (px at 500 dpi)"], rows),
        "",
        f"500-dpi reference period: {at_500:.2f} px; SOCOFing: 500 × {native:.2f} / {at_500:.2f} = {500 * native / at_500:.0f} dpi.",
        "",
        f"- `benchmarks.evaluation.finger.SET_DPI` for {', '.join(SCALED_SETS)}: the rule gives {value}; the code has "
        f"{', '.join(str(c) for c in sorted(code))}{'' if code == {value} else ' (re-tune)'}.",
    ]
    return lines, value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/tune_finger_dpi.py", description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="data folder (default $SHANAKHT_DATA or ../shared/data)")
    parser.add_argument("--smoke", action="store_true", help=f"the first {SMOKE_IMAGES} tune prints of each set (no verdict)")
    parser.add_argument("--write", action="store_true", help=f"replace the {NAME} section of benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    if args.smoke and args.write:
        parser.error("a smoke run writes nothing: drop --write")
    lines, value = report(args.data, SMOKE_IMAGES if args.smoke else None)
    text = "\n".join(lines)
    print(text)
    if args.write:
        write_section(NAME, "Tuning: the resolution SOCOFing is read at, from tune prints' ridge period", text, script_command("tune_finger_dpi.py", argv))
    return 0 if args.smoke or {SET_DPI[name] for name in SCALED_SETS} == {value} else 1


if __name__ == "__main__":
    sys.exit(main())
