"""How figures reach RESULTS: the provenance line of a section, a rate with its interval, and the DET plot's reading."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from benchmarks import results
from benchmarks.evaluation import plots
from benchmarks.evaluation.metrics import ErrorCurve, Estimate, Interval, OpenSetRate, count_estimate


def test_a_section_names_the_commit_the_machine_and_the_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(results, "RESULTS", tmp_path / "RESULTS.md")
    results.write_section("demo", "Demo", "body text", "python benchmarks/demo.py --write")
    results.write_section("demo", "Demo", "new body", "python benchmarks/demo.py --write")  # replaced, not appended
    text = (tmp_path / "RESULTS.md").read_text()
    assert text.count("<!-- demo:begin -->") == 1 and "new body" in text and "body text" not in text
    assert re.search(r"^Code: git ([0-9a-f]{7,}( \+ uncommitted changes)?|unknown)\.$", text, re.M)
    assert "Reproduce: `python benchmarks/demo.py --write`" in text
    assert re.search(r"^Measured \d{4}-\d\d-\d\d \d\d:\d\d UTC on .+ cores", text, re.M)


def test_git_revision_outside_a_checkout_is_unknown(tmp_path: Path) -> None:
    assert results.git_revision(tmp_path) == "unknown"


def test_git_revision_of_the_repository_is_its_short_head() -> None:
    assert re.fullmatch(r"[0-9a-f]{7,}( \+ uncommitted changes)?", results.git_revision())


def test_estimate_text() -> None:
    assert results.estimate_text(Estimate(0.25, Interval(0.1, 0.4, "identity bootstrap"))) == "0.250 [0.100, 0.400]"
    assert results.estimate_text(count_estimate(0, 300), percent=True) == "0.00% [0.00, 1.00]†"  # rule of three
    assert results.estimate_text(count_estimate(0, 0)) == "—"


def test_fnir_text_stars_an_fpir_too_few_searches_can_resolve() -> None:
    rate = Estimate(0.5, Interval(0.2, 0.8, "identity bootstrap"))
    assert results.fnir_text(OpenSetRate(0.01, rate, 3.25, 100)) == "0.500 [0.200, 0.800] (T 3.25)"
    assert results.fnir_text(OpenSetRate(0.001, rate, float("inf"), 100)) == "0.500 [0.200, 0.800]* (T none)"


def test_script_command() -> None:
    assert results.script_command("x.py", ["--write", "--grow", "10"]) == "python benchmarks/x.py --write --grow 10"


def test_det_points_read_the_curve_as_the_tables_do() -> None:
    curve = ErrorCurve.from_scores([0.3, 0.6, 0.7, 0.9], [0.1, 0.2, 0.4, 0.5, 0.65])
    fmr, fnmr = plots.det_points(curve)
    assert fmr[0] == pytest.approx(1 / 5) and fmr[-1] == 1.0
    assert fnmr.tolist() == [curve.fnmr_at_fmr(x) for x in fmr]
    assert len(plots.det_points(ErrorCurve.from_scores([], [0.1]))[0]) == 0


def test_figures_are_the_same_bytes_when_redrawn(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    curve = ErrorCurve.from_scores(rng.normal(2, 1, 200), rng.normal(0, 1, 2000))
    first = plots.det_figure({"a": curve}, tmp_path / "one.png", "t").read_bytes()
    second = plots.det_figure({"a": curve}, tmp_path / "two.png", "t").read_bytes()
    assert first[:8] == b"\x89PNG\r\n\x1a\n" and first == second
    zero = ErrorCurve.from_scores([5.0, 6.0], [0.0, 1.0])  # no error anywhere: nothing to draw on a log axis
    assert plots.det_figure({"zero": zero}, tmp_path / "zero.png", "t").is_file()
    histogram = plots.score_histograms(
        {"a": (rng.normal(2, 1, 50), rng.normal(0, 1, 500))}, tmp_path / "h.png", "t", "x"
    )
    assert histogram.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
