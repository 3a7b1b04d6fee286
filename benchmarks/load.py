"""gRPC load generator: N concurrent clients for T seconds on loopback; calls/s and latency percentiles.

    python benchmarks/load.py --server localhost:50051 --gallery watchlist --clients 8 --seconds 10

Probes are random unit templates unless ``--probes FILE.npy`` is given.  Loopback only, bounded
in time, stops by itself.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from shanakht.client import connect, resolve_key  # noqa: E402
from enrollment.face import DIMENSION as DEFAULT_FACE_DIMENSION  # noqa: E402
from enrollment.face import MODEL_ID as DEFAULT_FACE_MODEL  # noqa: E402
from shanakht.v1 import identity_pb2 as pb  # noqa: E402
from shanakht.v1 import identity_pb2_grpc as pb_grpc  # noqa: E402


@dataclass
class LoadReport:
    clients: int
    seconds: float
    latencies: list[float] = field(default_factory=list)
    # From the server-timing trailer: since the call arrived at the server, and in its handler.
    server_latencies: list[float] = field(default_factory=list)
    handler_latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def calls_per_s(self) -> float:
        return len(self.latencies) / self.seconds

    def percentile(self, p: float, source: str = "client") -> float:
        """Milliseconds, as measured by ``source``: "client", "server" (from arrival) or "handler"."""
        values = {"client": self.latencies, "server": self.server_latencies, "handler": self.handler_latencies}[source]
        return float(np.percentile(values, p) * 1e3) if values else float("nan")

    def summary(self) -> str:
        return (f"{self.clients} clients, {self.seconds:.0f} s: {len(self.latencies):,} calls, {self.calls_per_s:,.0f} calls/s, "
                f"p50 {self.percentile(50):.2f} ms, p95 {self.percentile(95):.2f} ms, p99 {self.percentile(99):.2f} ms "
                f"(server-side p50 {self.percentile(50, 'server'):.2f}, p99 {self.percentile(99, 'server'):.2f}; "
                f"in the handler p50 {self.percentile(50, 'handler'):.2f}, p99 {self.percentile(99, 'handler'):.2f}), errors {self.errors}")


def server_timing(call) -> dict[str, float]:
    """Seconds by name from the server's ``server-timing: total;dur=<ms>, handler;dur=<ms>`` trailer."""
    timing = {}
    for key, value in call.trailing_metadata() or ():
        if key == "server-timing":
            for part in value.split(","):
                name, _, duration = part.strip().partition(";dur=")
                timing[name] = float(duration) / 1e3
    return timing


def identify_requests(probes: np.ndarray, gallery: str, model_id: str = DEFAULT_FACE_MODEL, top: int = 10) -> list[pb.IdentifyRequest]:
    return [
        pb.IdentifyRequest(
            samples=[pb.Sample(template=pb.Template(modality=pb.MODALITY_FACE, model_id=model_id, vector=np.asarray(p, "<f4").tobytes()))],
            galleries=[gallery], max_candidates=top,
        )
        for p in probes
    ]


def run_load(stub: pb_grpc.IdentityServiceStub, requests: list[pb.IdentifyRequest], clients: int, seconds: float) -> LoadReport:
    """Each client sends the next request as soon as the last one returns, until time is up."""
    report = LoadReport(clients, seconds)
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def client(c: int) -> None:
        latencies, server, handler, errors, i = [], [], [], {}, c
        while time.monotonic() < stop_at:
            started = time.perf_counter()
            try:
                _, call = stub.Identify.with_call(requests[i % len(requests)], timeout=30)
                latencies.append(time.perf_counter() - started)
                timing = server_timing(call)
                if "total" in timing:
                    server.append(timing["total"])
                if "handler" in timing:
                    handler.append(timing["handler"])
            except grpc.RpcError as error:
                errors[error.code().name] = errors.get(error.code().name, 0) + 1
            i += clients
        with lock:
            report.latencies.extend(latencies)
            report.server_latencies.extend(server)
            report.handler_latencies.extend(handler)
            for code, n in errors.items():
                report.errors[code] = report.errors.get(code, 0) + n

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", default="localhost:50051")
    parser.add_argument("--gallery", default="watchlist")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--probes", type=Path, help=".npy of probe templates (rows)")
    parser.add_argument("--api-key")
    parser.add_argument("--api-key-file")
    args = parser.parse_args(argv)
    host = args.server.rsplit(":", 1)[0]
    if host not in ("localhost", "127.0.0.1", "::1", "[::1]"):
        parser.error("the load generator only targets loopback addresses")
    probes = np.load(args.probes) if args.probes else np.random.default_rng(0).standard_normal((256, DEFAULT_FACE_DIMENSION)).astype("f4")
    stub = pb_grpc.IdentityServiceStub(connect(args.server, resolve_key(args.api_key, args.api_key_file)))
    print(run_load(stub, identify_requests(probes, args.gallery), args.clients, args.seconds).summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
