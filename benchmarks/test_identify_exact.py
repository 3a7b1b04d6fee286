"""Identify at N = 100,000 (d = 512, exact) against raw FAISS on the same vectors, in one run."""

from __future__ import annotations

import itertools
import shutil

import faiss
import numpy as np
import pytest

from benchmarks.conftest import record
from matcher.galleries import EnrollItem, Galleries
from matcher.store.base import GalleryRecord, ModalitySpec
from matcher.store.sqlite import SQLiteStore
from matcher.templates import Modality, Template
from shanakht.settings import DEFAULT_FACE_DIMENSION as DIM
from shanakht.settings import DEFAULT_FACE_MODEL as MODEL
from shanakht.v1 import identity_pb2 as pb
from tests.conftest import ServerProcess, noisy, template_sample, unit_vectors

PROBES = 256


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
    galleries = Galleries(SQLiteStore(directory / "shanakht.sqlite3"), directory / "snapshots")
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
    galleries = Galleries(SQLiteStore(data_dir / "shanakht.sqlite3"), data_dir / "snapshots")
    templates = [Template(Modality.FACE, MODEL, p) for p in probes]
    queries = itertools.cycle(range(PROBES))
    benchmark(lambda: galleries.identify([templates[next(queries)]], ["bench"], top=10))
    record(figures, "library_identify", benchmark)
    assert [galleries.identify([t], ["bench"], top=1)[0].subject_id for t in templates] == [f"S{i}" for i in truth]
    galleries.store.close()


def test_grpc_identify(benchmark, data, data_dir, figures):
    vectors, truth, probes = data
    server = ServerProcess(data_dir, ["--default-galleries", ""]).start()
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
