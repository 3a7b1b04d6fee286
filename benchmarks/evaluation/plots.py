"""DET curves and score histograms as small PNGs, so a reader of RESULTS can see the whole trade-off, not two points.

A DET curve plots FNMR against FMR (or FNIR against FPIR) on log axes, read exactly as the tables
read them (:meth:`ErrorCurve.fnmr_at_fmr` at each plotted FMR), so a curve and a table never
disagree.  Histograms show genuine and impostor scores on a log count axis: the impostor tail is
what every low-FMR figure depends on.  Drawing uses matplotlib's Agg backend (no display) and
writes no timestamp, so an unchanged result gives an unchanged file.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.evaluation.metrics import ErrorCurve  # noqa: E402

FIGURES = Path(__file__).resolve().parent.parent / "figures"
DPI = 100
DET_POINTS = 200  # FMR values per curve (log-spaced); the curve is a step function read at each
_METADATA = {"Software": None}  # no version or date in the file: reruns do not churn it


def det_figure(
    curves: Mapping[str, ErrorCurve],
    path: Path,
    title: str,
    x_label: str = "FMR (false match rate)",
    y_label: str = "FNMR (false non-match rate; 0 not drawn)",
    marks: tuple[float, ...] = (1e-2, 1e-3),
) -> Path:
    """One DET curve per entry (log–log), vertical guides at ``marks``; returns ``path``.

    A curve starts at the lowest FMR its impostors can show (1 / their number): below it the data
    says nothing, so nothing is drawn.  An FNMR of 0 has no place on a log axis and is not drawn
    either: a curve that stops going down has reached zero errors there.
    """
    fig, ax = plt.subplots(figsize=(6.0, 4.5))
    lowest, lowest_error = 1.0, 1.0
    for name, curve in curves.items():
        fmr, fnmr = det_points(curve)
        if len(fmr) == 0:
            continue
        lowest = min(lowest, float(fmr[0]))
        lowest_error = min(lowest_error, float(fnmr[fnmr > 0].min(initial=1.0)), 1.0 / curve.genuine)
        ax.step(fmr, np.where(fnmr > 0, fnmr, np.nan), where="post", label=f"{name} ({_size(curve)})")
    for mark in marks:
        ax.axvline(mark, color="0.7", linestyle=":", linewidth=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(min(lowest, min(marks, default=1.0)) / 2, 1.0)
    ax.set_ylim(lowest_error / 2, 1.1)  # set, not autoscaled: a figure whose every curve is 0 still draws
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=7, loc="upper right")
    return _save(fig, path)


def det_points(curve: ErrorCurve) -> tuple[np.ndarray, np.ndarray]:
    """(FMR, FNMR at that FMR) at log-spaced FMRs from 1 / impostors to 1; empty when a side is empty."""
    if not (curve.genuine and curve.impostors):
        return np.zeros(0), np.zeros(0)
    fmr = np.logspace(math.log10(1.0 / curve.impostors), 0.0, DET_POINTS)
    return fmr, np.array([curve.fnmr_at_fmr(x) for x in fmr])


def score_histograms(
    scores: Mapping[str, tuple[np.ndarray, np.ndarray]],
    path: Path,
    title: str,
    x_label: str,
    bins: int = 60,
) -> Path:
    """A panel per entry with its (genuine, impostor) scores, counts on a log axis; returns ``path``."""
    names = list(scores)
    columns = min(3, max(1, len(names)))
    rows = max(1, math.ceil(len(names) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(3.4 * columns, 2.6 * rows), squeeze=False)
    for ax, name in zip(axes.ravel(), names):
        genuine, impostor = (np.asarray(s, dtype=np.float64) for s in scores[name])
        finite = np.concatenate([genuine, impostor])
        finite = finite[np.isfinite(finite)]
        edges = np.linspace(finite.min(), finite.max(), bins + 1) if len(finite) and np.ptp(finite) > 0 else bins
        ax.hist(impostor[np.isfinite(impostor)], bins=edges, alpha=0.6, label=f"impostor ({len(impostor):,})")
        ax.hist(genuine[np.isfinite(genuine)], bins=edges, alpha=0.6, label=f"genuine ({len(genuine):,})")
        ax.set_yscale("log")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel(x_label, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6)
    for ax in axes.ravel()[len(names) :]:
        ax.set_visible(False)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def _size(curve: ErrorCurve) -> str:
    return f"{curve.genuine:,.0f} / {curve.impostors:,.0f}"


def _save(fig: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI, metadata=_METADATA)
    plt.close(fig)
    return path
