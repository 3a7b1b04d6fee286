"""Identify at N = 100,000 (d = the face template's, exact) against raw FAISS on the same vectors, in one run."""

from __future__ import annotations

import itertools
import shutil
import time

import faiss
import numpy as np
import pytest

from benchmarks.conftest import record
from benchmarks.load import identify_requests, run_load
from matcher.galleries import EnrollItem, Galleries
from matcher.policy import IndexPolicy
from matcher.store.base import GalleryRecord, ModalitySpec
from matcher.store.sqlite import SQLiteStore
from matcher.templates import Modality, Template
from enrollment.face import DIMENSION as DIM
from enrollment.face import MODEL_ID as MODEL
from shanakht.v1 import identity_pb2 as pb
from tests.conftest import ServerProcess, noisy, template_sample, unit_vectors

PROBES = 256
EXACT = IndexPolicy(approximate_from=0)  # this module measures exact search; test_scale the approximate index
EXACT_SERVER = ["--default-galleries", "", "--approximate-from", "0"]


@pytest.fixture(scope="module")
def data(bench_n):
    faiss.omp_set_num_threads(1)  # as the server runs it: lone queries are fastest on one thread
    vectors = unit_vectors(bench_n, DIM, seed=2024)
    rng = np.random.default_rng(7)
    truth = rng.choice(bench_n, PROBES, replace=False)
    probes = noisy(vectors[truth], sigma=0.8, seed=8)
    return vectors, truth, probes


@pytest.fixture(scope="module")
def data_dir(data, tmp_path_factory):
    """A store holding the gallery, built through the library, with a snapshot for fast start."""
    vectors, _, _ = data
    directory = tmp_path_factory.mktemp("bench") / "data"
    galleries = Galleries(SQLiteStore(directory / "shanakht.sqlite3"), directory / "snapshots", policy=EXACT)
    galleries.create(GalleryRecord("bench", 1e-4, (ModalitySpec(Modality.FACE, MODEL, DIM),)))
    for start in range(0, len(vectors), 2000):
        galleries.enroll(
            [EnrollItem("bench", f"S{i}", (Template(Modality.FACE, MODEL, vectors[i]),)) for i in range(start, min(start + 2000, len(vectors)))]
        )
    galleries.snapshot()
    galleries.store.close()
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def test_raw_faiss(benchmark, data, figures):
    vectors, truth, probes = data
    index = faiss.IndexFlatIP(DIM)
    index.add(vectors)
    queries = itertools.cycle(range(PROBES))
    benchmark(lambda: index.search(probes[next(queries)][None], 10))
    record(figures, "raw_faiss", benchmark)
    _, found = index.search(probes, 1)
    assert np.array_equal(found[:, 0], truth)


def test_library_identify(benchmark, data, data_dir, figures):
    vectors, truth, probes = data
    galleries = Galleries(SQLiteStore(data_dir / "shanakht.sqlite3"), data_dir / "snapshots", policy=EXACT)
    templates = [Template(Modality.FACE, MODEL, p) for p in probes]
    queries = itertools.cycle(range(PROBES))
    benchmark(lambda: galleries.identify([templates[next(queries)]], ["bench"], top=10))
    record(figures, "library_identify", benchmark)
    assert [galleries.identify([t], ["bench"], top=1)[0].subject_id for t in templates] == [f"S{i}" for i in truth]
    galleries.store.close()


def test_grpc_identify(benchmark, data, data_dir, figures):
    vectors, truth, probes = data
    server = ServerProcess(data_dir, EXACT_SERVER).start()
    try:
        stub = server.stub()
        requests = [pb.IdentifyRequest(samples=[template_sample(p)], galleries=["bench"], max_candidates=10) for p in probes]
        stub.Identify(requests[0])  # connect
        queries = itertools.cycle(requests)
        benchmark(lambda: stub.Identify(next(queries)))
        record(figures, "grpc_identify", benchmark)
        assert [stub.Identify(r).candidates[0].subject_id for r in requests] == [f"S{i}" for i in truth]
    finally:
        server.kill()


@pytest.mark.parametrize("micro_batch", [0, 32])
def test_grpc_load_8_clients(data, data_dir, figures, bench_n, micro_batch):
    """Throughput and tail latency under 8 concurrent clients, micro-batching off and on."""
    _, _, probes = data
    server = ServerProcess(data_dir, [*EXACT_SERVER, "--micro-batch", str(micro_batch)]).start()
    try:
        requests = identify_requests(probes, "bench")
        stub = server.stub()
        stub.Identify(requests[0])
        report = run_load(stub, requests, clients=8, seconds=10 if bench_n >= 100_000 else 1)
        assert not report.errors and report.latencies
        figures[f"load_{micro_batch}"] = report
        print(report.summary())
    finally:
        server.kill()


def test_interleaved_ratio(data, data_dir, figures, bench_n):
    """Raw FAISS, library and gRPC calls alternate probe by probe, so machine drift hits all three alike."""
    vectors, truth, probes = data
    raw = faiss.IndexFlatIP(DIM)
    raw.add(vectors)
    galleries = Galleries(SQLiteStore(data_dir / "shanakht.sqlite3"), None, policy=EXACT)
    server = ServerProcess(data_dir, EXACT_SERVER).start()
    times: dict[str, list[float]] = {"raw": [], "library": [], "grpc": []}
    try:
        stub = server.stub()
        requests = identify_requests(probes, "bench")
        templates = [Template(Modality.FACE, MODEL, p) for p in probes]
        stub.Identify(requests[0])
        rounds = 200 if bench_n >= 100_000 else 10
        for i in range(rounds):
            j = i % PROBES
            for name, call in (
                ("raw", lambda: raw.search(probes[j][None], 10)),
                ("library", lambda: galleries.identify([templates[j]], ["bench"], top=10)),
                ("grpc", lambda: stub.Identify(requests[j])),
            ):
                started = time.perf_counter()
                call()
                times[name].append(time.perf_counter() - started)
        figures["interleaved"] = {name: float(np.median(t)) for name, t in times.items()} | {"rounds": rounds}
    finally:
        server.kill()
        galleries.store.close()
