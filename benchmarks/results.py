"""Writing measured figures into benchmarks/RESULTS.md, each benchmark in its own marked section.

Every section states the code (git commit, and whether tracked files had uncommitted changes), the
machine, the versions and the command that produced it, so a reader can rerun it.  Sections are
replaced in place; the rest of the file is left alone.  The formatting of a rate with its interval
lives here too, so both accuracy reports print intervals the same way.
"""

from __future__ import annotations

import math
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path

import numpy as np

from benchmarks.evaluation.metrics import Estimate, OpenSetRate
from matcher.calibration import Calibration

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
REPO = RESULTS.parent.parent
RULE_OF_THREE_MARK = "†"  # the interval is the rule of three: no error was seen
PACKAGES = ("numpy", "faiss-cpu", "grpcio", "protobuf", "onnxruntime", "cython", "opencv-python-headless")


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    memory = ""
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        memory = f", {pages / 2**30:.0f} GiB"
    except (ValueError, OSError):
        pass
    return f"{cpu}, {cores} cores{memory}, {platform.system()} {platform.release()}"


def versions(extra_packages: tuple[str, ...] = ()) -> str:
    found = [f"python {sys.version.split()[0]}"]
    for name in (*PACKAGES, *extra_packages):
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    blas = os.environ.get("OPENBLAS_CORETYPE")
    if blas:
        found.append(f"OPENBLAS_CORETYPE={blas}")
    return ", ".join(found)


OUTPUTS = ("benchmarks/RESULTS.md",)  # what the benchmarks write: not the code that made the figures
FIGURES_PREFIX = "benchmarks/figures/"


def git_revision(repo: Path = REPO) -> str:
    """``git rev-parse --short HEAD``, with " + uncommitted changes" when tracked files differ from it.

    Read-only: ``--no-optional-locks`` keeps ``git status`` from refreshing the index.  Untracked
    files are not counted (scratch files would mark every run dirty); "unknown" outside a checkout.
    """
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
        )
        status = subprocess.run(
            ["git", "--no-optional-locks", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    # The outputs themselves (this file's sections, the figures) are not the code that made them.
    changed = [line[3:] for line in status.stdout.splitlines() if line[3:] not in OUTPUTS and not line[3:].startswith(FIGURES_PREFIX)]
    return head.stdout.strip() + (" + uncommitted changes" if changed else "")


def script_command(script: str, argv: Sequence[str] | None) -> str:
    """How a benchmark script was run, for the section's "Reproduce" line (``argv`` None: this process's arguments)."""
    return " ".join(["python", f"benchmarks/{script}", *(sys.argv[1:] if argv is None else argv)])


def figure_links(paths: Mapping[str, Path], captions: Mapping[str, str]) -> list[str]:
    """Markdown lines for figures in benchmarks/figures/: a line of links, then the images themselves."""
    links = " · ".join(f"[{captions[key]}](figures/{path.name})" for key, path in paths.items())
    return [
        "",
        f"Figures: {links}",
        "",
        *(f"![{captions[key]}](figures/{path.name})" for key, path in paths.items()),
        "",
    ]


def write_section(name: str, title: str, body: str, command: str, extra_packages: tuple[str, ...] = ()) -> None:
    """Replace (or append) the section ``name`` of RESULTS.md."""
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    section = (
        f"<!-- {name}:begin -->\n## {title}\n\n"
        f"Measured {stamp} on {machine()}; {versions(extra_packages)}.\n"
        f"Code: git {git_revision()}.\n"
        f"Reproduce: `{command}`\n\n{body.strip()}\n<!-- {name}:end -->"
    )
    text = (
        RESULTS.read_text()
        if RESULTS.exists()
        else "# Benchmark results\n\nEvery figure below was measured by the command under its heading.\n"
    )
    pattern = re.compile(rf"<!-- {re.escape(name)}:begin -->.*?<!-- {re.escape(name)}:end -->", re.S)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip() + "\n\n" + section + "\n"
    RESULTS.write_text(text)


def markdown_table(headers: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join("---" for _ in headers) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def estimate_text(estimate: Estimate, percent: bool = False, digits: int = 3) -> str:
    """``0.923 [0.901, 0.940]`` (or ``1.23% [0.80, 1.90]``); † marks a rule-of-three interval, — a missing value."""
    if math.isnan(estimate.value):
        return "—"

    def number(value: float) -> str:
        return f"{100 * value:.{max(digits - 1, 0)}f}" if percent else f"{value:.{digits}f}"

    low, high = estimate.interval.low, estimate.interval.high
    unit = "%" if percent else ""
    bounds = "" if math.isnan(low) else f" [{number(low)}, {number(high)}]"
    mark = RULE_OF_THREE_MARK if estimate.interval.method == "rule of three" else ""
    return f"{number(estimate.value)}{unit}{bounds}{mark}"


def fnir_text(rate: OpenSetRate) -> str:
    """FNIR with its interval and the calibrated threshold; ``*`` when too few non-mated searches resolve the FPIR."""
    text = estimate_text(rate.fnir)
    star = "*" if rate.unresolved and text != "—" else ""
    at = "—" if math.isnan(rate.threshold) else ("none" if math.isinf(rate.threshold) else f"{rate.threshold:.2f}")
    return f"{text}{star} (T {at})"


def clamp_point(calibration: Calibration) -> tuple[float, float]:
    """(the table's highest score, the lowest similarity that reaches it): above it every score is the same."""
    top = calibration.scores[-1]
    return top, calibration.similarities[calibration.scores.index(top)]


def clamp_sentences(
    calibration: Calibration,
    unit: str,
    nonmated: Sequence[tuple[str, np.ndarray]],
    raw: Sequence[OpenSetRate],
    subject: str,
) -> list[str]:
    """What the calibration table's clamp does to FNIR at FPIR: which non-mated searches (calibrated best scores, per
    experiment) reach it, and ``subject``'s FNIR read on the raw similarities (``raw``) instead."""
    top, similarity = clamp_point(calibration)
    counts = [(name, int(np.count_nonzero(scores >= top)), len(scores)) for name, scores in nonmated]
    reached = [f"{name} {k} of {n}" for name, k, n in counts if k]
    return [
        f"The calibrated score stops at {top:.1f} (the table's last "
        f"point, raw {unit} {similarity:.4f}): every comparison",
        f"above that raw {unit} reports the same score, so no threshold "
        "a user can set separates them; where more non-mated",
        "searches than FPIR × searches reach it, FNIR at that FPIR "
        "is read above it and is 1. Non-mated searches reaching",
        "it: " + (", ".join(reached) if reached else "none (the clamp decides no row here)") + ".",
        f"Read on the raw {unit}s instead (no table, no clamp), {subject} would be "
        + ", ".join(f"{estimate_text(r.fnir)} at FPIR {r.fpir:g}" for r in raw)
        + ".",
    ]
