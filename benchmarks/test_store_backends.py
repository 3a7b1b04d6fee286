"""Enroll throughput and Identify latency with the Redis store versus the embedded SQLite store."""

from __future__ import annotations

import itertools
import time

import pytest

from benchmarks.conftest import record
from shanakht.v1 import identity_pb2 as pb
from tests.conftest import ServerProcess, noisy, template_sample, unit_vectors
from tests.redis_server import RedisServer

ENROLLS = 20_000


@pytest.fixture(scope="module", params=["sqlite", "redis"])
def backend(request, tmp_path_factory, bench_n):
    directory = tmp_path_factory.mktemp(request.param)
    redis = None
    args = []
    if request.param == "redis":
        redis = RedisServer(directory / "redis").start()  # AOF, appendfsync always
        args = ["--store", "redis", "--redis-url", redis.url, "--require-durable"]
    server = ServerProcess(directory / "data", args).start()
    yield request.param, server
    server.kill()
    if redis:
        redis.kill()


def test_enroll_stream_throughput(benchmark, backend, figures, bench_n):
    name, server = backend
    n = min(ENROLLS, bench_n)
    vectors = unit_vectors(n, seed=901)
    stub = server.stub()

    def load():
        requests = (pb.EnrollRequest(subject_id=f"E{i}", gallery="watchlist", samples=[template_sample(v)]) for i, v in enumerate(vectors))
        started = time.perf_counter()
        acks = list(stub.EnrollStream(requests, timeout=600))
        assert all(a.status_code == 0 for a in acks) and len(acks) == n
        return time.perf_counter() - started

    elapsed = benchmark.pedantic(load, rounds=1, iterations=1)
    record(figures, f"enroll_{name}", benchmark)
    figures[f"enroll_{name}_per_s"] = n / elapsed


def test_identify_latency(benchmark, backend, figures, bench_n):
    name, server = backend
    n = min(ENROLLS, bench_n)
    probes = noisy(unit_vectors(n, seed=901)[:256], seed=902)
    stub = server.stub()
    requests = itertools.cycle([pb.IdentifyRequest(samples=[template_sample(p)], galleries=["watchlist"], max_candidates=10) for p in probes])
    benchmark(lambda: stub.Identify(next(requests)))
    record(figures, f"identify_{name}", benchmark)
