"""Re-derive the face pipeline's tuned acquisition constants from *tune* identities only, and say whether the code agrees.

    python benchmarks/tune_face.py [--data DIR] [--model-dir DIR] [--smoke] [--write]

The constants (declared in ``benchmarks/constants.toml``, checked by ``tests/evaluation/test_constants.py``):

* ``enrollment.face.detector.PAD_FRACTION``: the black border added around a photo before detection
  (the detector was trained on scenes, and a tight crop gives it no context; ``FaceDetector.detect``
  retries unpadded when the padded image shows no face).  Rule, fixed before measuring: of ``PADS``,
  the one with which the detector misses the fewest tune photos (a miss falls back to the whole
  image or fails to acquire); among equals, the smallest (least context added that is not in the photo).
The enrolment bounds on a second face (``enrollment.face.pipeline.SECONDARY_FACE_RATIO`` and
``SECONDARY_FACE_SCORE``) are policy, not fitted: tune photos hold no labelled second persons to
trade refusals against, and no reported figure depends on them (the benchmarks enrol the main
face).  The script only counts the tune photos those bounds would refuse as ``MultipleFaces``.

Only the tune side of the sets that go through detection (``DETECTED_SETS``: glint24_aligned is
pre-aligned and never detected) is read.  The script prints the measurements and the values the
rules give, then compares them with the code; exit status 1 if they differ (re-tune, then refit the
face calibration, whose provenance includes the constant).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.evaluation.datasets import Sample, load_face_set  # noqa: E402
from benchmarks.evaluation.protocol import load_protocol  # noqa: E402
from benchmarks.results import markdown_table, script_command, write_section  # noqa: E402
from enrollment.face import detector as face_detector  # noqa: E402
from enrollment.face import pipeline  # noqa: E402
from enrollment.image import decode_image  # noqa: E402
from matcher.errors import InvalidArgument  # noqa: E402

NAME = "tune_face"  # its RESULTS section
DETECTED_SETS = ("att_orl", "bollywood_64")
PADS = (0.0, 0.1, 0.25, 0.4)
SMOKE_IMAGES = 6  # per set with --smoke


@dataclass(frozen=True)
class Tuning:
    """What the tune photos say: detector misses per pad, photos enrolment would refuse, and the value the rule gives."""

    images: int
    misses: dict[float, int]  # pad → tune photos in which the detector found no face
    multiple_faces: list[str]  # tune photos that enrolment (without largest_face) refuses as MultipleFaces

    @property
    def pad_fraction(self) -> float:
        fewest = min(self.misses.values())
        return min(pad for pad, missed in self.misses.items() if missed == fewest)

    def values(self) -> dict[str, float]:
        return {"enrollment.face.detector.PAD_FRACTION": self.pad_fraction}


def tune_samples(data: Path | None, limit: int | None = None) -> list[Sample]:
    """The tune photos of ``DETECTED_SETS`` (the first ``limit`` of each with --smoke)."""
    protocol = load_protocol()
    chosen: list[Sample] = []
    for name in DETECTED_SETS:
        tune = protocol.select("face", name, load_face_set(name, data), "tune")
        chosen += tune[:limit] if limit else tune
    return chosen


def measure(samples: Sequence[Sample], model_dir: Path | None) -> Tuning:
    """Run the production detector at every pad of ``PADS``; at the code's pad, which photos enrolment refuses for a second face."""
    detector = pipeline.FaceExtractor(model_dir, threads=1, with_quality_models=False).detector
    images = []
    for sample in samples:
        try:
            images.append((sample, decode_image(sample.path.read_bytes()).rgb))
        except InvalidArgument:
            continue  # not a photo: no pad changes that
    misses: dict[float, int] = {}
    at_code_pad = []
    for pad in sorted({*PADS, face_detector.PAD_FRACTION}):
        detector.pad_fraction = pad
        found = [detector.detect(rgb) for _, rgb in images]
        if pad in PADS:
            misses[pad] = sum(not detections for detections in found)
        if pad == face_detector.PAD_FRACTION:
            at_code_pad = found
    detector.pad_fraction = face_detector.PAD_FRACTION
    multiple = [
        sample.relpath
        for (sample, _), detections in zip(images, at_code_pad)
        if detections and len(pipeline.split_main_face(detections)[0]) > 1
    ]
    return Tuning(len(images), misses, multiple)


def report(tuning: Tuning) -> tuple[list[str], dict[str, tuple[float, float]]]:
    """The measurements as Markdown lines, and constant → (value by the rule, value in the code) for those that differ."""
    lines = [
        f"{tuning.images} tune photos of {', '.join(DETECTED_SETS)} (benchmarks/protocol.toml); the rule is in the script's docstring.",
        "",
        markdown_table(
            ["pad fraction", "photos the detector misses"],
            [[f"{pad:.2f}", f"{missed} ({missed / max(tuning.images, 1):.2%})"] for pad, missed in tuning.misses.items()],
        ),
        "",
        f"At the code's pad, enrolment refuses {len(tuning.multiple_faces)} of them for a second face (SECONDARY_FACE_RATIO / _SCORE, policy).",
        "",
    ]
    differ = {}
    for name, value in tuning.values().items():
        module, constant = name.rsplit(".", 1)
        current = float(getattr(sys.modules[module], constant))
        agrees = math.isclose(value, current)
        lines.append(f"- `{name}`: the rule gives {value}; the code has {current}{'' if agrees else ' (re-tune)'}.")
        if not agrees:
            differ[name] = (value, current)
    return lines, differ


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/tune_face.py", description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="data folder (default $SHANAKHT_DATA or ../shared/data)")
    parser.add_argument("--model-dir", type=Path, default=None, help="model cache (default $SHANAKHT_MODEL_DIR or .cache/models)")
    parser.add_argument("--smoke", action="store_true", help=f"the first {SMOKE_IMAGES} tune photos of each set (no verdict)")
    parser.add_argument("--write", action="store_true", help="replace the tune_face section of benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    samples = tune_samples(args.data, SMOKE_IMAGES if args.smoke else None)
    lines, differ = report(measure(samples, args.model_dir))
    text = "\n".join(lines)
    print(text)
    if args.write and not args.smoke:
        write_section(NAME, "Tuning: the face detector's padding, from tune photos only", text, script_command("tune_face.py", argv))
    return 0 if args.smoke or not differ else 1


if __name__ == "__main__":
    sys.exit(main())
