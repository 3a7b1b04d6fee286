"""Face enrolment throughput over gRPC with concurrent clients (photos/s on this machine)."""

from __future__ import annotations

import csv
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from shanakht.v1 import identity_pb2 as pb
from tests.conftest import DATA, ServerProcess

SET = DATA / "face" / "att_orl"


@pytest.mark.skipif(not (SET / "labels.csv").is_file(), reason=f"face data not found under {SET}")
@pytest.mark.parametrize("clients", [1, 4])
def test_face_enroll_throughput(benchmark, figures, tmp_path, bench_n, clients):
    with open(SET / "labels.csv", newline="") as handle:
        paths = [SET / row["path"] for row in csv.DictReader(handle)]
    paths = paths[: 200 if bench_n >= 100_000 else 8]
    images = [p.read_bytes() for p in paths]
    server = ServerProcess(tmp_path / f"data{clients}", ["--workers", "8"]).start()
    try:
        stub = server.stub()

        def enroll(i: int) -> None:
            stub.Enroll(pb.EnrollRequest(subject_id=f"F{i}", gallery="inmates", samples=[pb.Sample(face=pb.FaceImage(image=images[i]))],
                                         replace=True), timeout=60)

        def run() -> float:
            started = time.perf_counter()
            with ThreadPoolExecutor(clients) as pool:
                list(pool.map(enroll, range(len(images))))
            return time.perf_counter() - started

        elapsed = benchmark.pedantic(run, rounds=1, iterations=1)
        figures[f"face_enroll_{clients}"] = (len(images), elapsed)
    finally:
        server.kill()
