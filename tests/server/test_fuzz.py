"""10,000 generated inputs across the RPCs (casework ones included): no crash, no hang, the server healthy afterwards."""

from __future__ import annotations

from tests.server.fuzz import fuzz


def test_fuzz_the_grpc_surface(server_factory):
    server = server_factory("data", ["--max-concurrent-rpcs", "256"])
    report = fuzz(server.channel(), examples=10_000)
    assert report.inputs >= 10_000
    assert report.crashes == [], report.crashes[:10]
    assert report.hangs == [], report.hangs[:10]
    assert server.healthy() and server.proc.poll() is None
    log = server.log_path.read_text()
    assert "unhandled error" not in log
    # The fuzzer must reach past validation, not only bounce off it.
    assert report.statuses["OK"] > 100 and report.statuses["INVALID_ARGUMENT"] > 1000
    print(f"fuzz: {report.inputs} inputs in {report.seconds:.1f} s: {dict(report.statuses)}")
