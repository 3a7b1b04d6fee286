"""``benchmarks/tune_index.py --smoke`` still runs end to end on a tiny tune population (no figure asserted)."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO


def test_the_index_tuning_script_runs_on_a_tiny_population():
    result = subprocess.run(
        [sys.executable, "benchmarks/tune_index.py", "--smoke"], capture_output=True, text=True, cwd=REPO, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "[synthetic] tune_seed" in result.stdout
    assert "Current defaults:" in result.stdout and "### Lists at 2,000" in result.stdout
    assert ("Chosen:" in result.stdout) or ("No setting of the grid qualifies" in result.stdout)
