"""Records the fuzz run (count, time, answers) in RESULTS.md; the test suite asserts on the same fuzzer."""

from __future__ import annotations

from tests.conftest import ServerProcess
from tests.server.fuzz import fuzz


def test_fuzz_surface(figures, tmp_path, bench_n):
    examples = 10_000 if bench_n >= 100_000 else 200
    server = ServerProcess(tmp_path / "data", ["--max-concurrent-rpcs", "256"]).start()
    try:
        report = fuzz(server.channel(), examples=examples)
        assert report.crashes == [] and report.hangs == [] and server.healthy()
        figures["fuzz"] = report
    finally:
        server.kill()
