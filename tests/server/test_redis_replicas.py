"""The Redis store shared by replicas: nothing acknowledged lost, outages survived, replicas agree."""

from __future__ import annotations

import random
import threading
import time

import grpc
import pytest

from matcher.store.base import NewEnrollment
from matcher.store.redis import RedisStore
from matcher.templates import Modality, Template
from enrollment.face import MODEL_ID as DEFAULT_FACE_MODEL
from shanakht.v1 import identity_pb2 as pb
from tests.conftest import noisy, template_sample, unit_vectors
from tests.server.test_api import identify

UNAVAILABLE = grpc.StatusCode.UNAVAILABLE


def redis_args(redis_server) -> list[str]:
    return ["--store", "redis", "--redis-url", redis_server.url, "--require-durable"]


def stream_until_killed(server, vectors, kill_after: int) -> list[pb.EnrollResponse]:
    """EnrollStream all vectors; kill -9 the server once ``kill_after`` acknowledgements arrived."""
    stub = server.stub()
    requests = (pb.EnrollRequest(subject_id=f"K{i}", gallery="watchlist", samples=[template_sample(v)]) for i, v in enumerate(vectors))
    acks: list[pb.EnrollResponse] = []
    try:
        for ack in stub.EnrollStream(requests, timeout=300):
            acks.append(ack)
            if len(acks) == kill_after:
                server.kill()
    except grpc.RpcError as error:
        assert error.code() in (UNAVAILABLE, grpc.StatusCode.CANCELLED, grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL)
    return acks


@pytest.mark.parametrize("store", ["sqlite", "redis"])
def test_kill_9_mid_stream_loses_no_acknowledged_enrollment(server_factory, request, store):
    args = redis_args(request.getfixturevalue("redis_server")) if store == "redis" else []
    server = server_factory("data", args)
    vectors = unit_vectors(10_000, seed=501)
    acks = stream_until_killed(server, vectors, kill_after=3_000)
    assert 3_000 <= len(acks) < 10_000, "the kill must land in the middle of the stream"
    assert all(a.status_code == 0 for a in acks)

    server.start()
    stub = server.stub()
    stored = stub.GalleryStats(pb.GalleryStatsRequest(galleries=["watchlist"])).galleries[0]
    assert len(acks) <= stored.subjects < 10_000
    assert stored.indexes[0].templates == stored.subjects  # each present exactly once
    for ack in acks:
        subject = stub.GetSubject(pb.GetSubjectRequest(subject_id=ack.subject_id, gallery="watchlist"))
        assert [t.template_id for t in subject.templates] == list(ack.template_ids)
    probes = noisy(vectors[: len(acks)], sigma=0.6, seed=502)
    sample = range(0, len(acks), 7)
    assert [identify(stub, "watchlist", probes[i], top=1)[0].subject_id for i in sample] == [f"K{i}" for i in sample]


def test_redis_restart_mid_stream_loses_nothing_and_service_resumes(server_factory, redis_server):
    server = server_factory("data", redis_args(redis_server))
    stub = server.stub()
    vectors = unit_vectors(1_500, seed=511)
    acknowledged: list[int] = []
    unavailable = 0
    restarted = threading.Event()

    def restart_redis() -> None:
        while len(acknowledged) < 400:
            time.sleep(0.01)
        redis_server.stop()  # SIGTERM: flushes and exits
        time.sleep(2.0)
        redis_server.start()  # same port, same AOF
        restarted.set()

    threading.Thread(target=restart_redis, daemon=True).start()
    for i, vector in enumerate(vectors):
        request = pb.EnrollRequest(subject_id=f"R{i}", gallery="watchlist", samples=[template_sample(vector)])
        while True:
            try:
                stub.Enroll(request, timeout=10)
                acknowledged.append(i)
                break
            except grpc.RpcError as error:
                if error.code() == grpc.StatusCode.ALREADY_EXISTS:  # the lost reply's write did land
                    acknowledged.append(i)
                    break
                assert error.code() == UNAVAILABLE, error.details()
                assert "unavailable" in error.details().lower()
                unavailable += 1
                time.sleep(0.1)
    assert restarted.is_set() and unavailable > 0
    assert server.healthy()
    store = RedisStore(redis_server.url)
    assert store.count_subjects("watchlist") == len(vectors)
    stub.Identify(pb.IdentifyRequest(samples=[template_sample(vectors[0])], galleries=["watchlist"], min_sequence=store.last_sequence()), timeout=30)
    found = [identify(stub, "watchlist", vectors[i], top=1)[0].subject_id for i in range(0, len(vectors), 5)]
    assert found == [f"R{i}" for i in range(0, len(vectors), 5)]
    store.close()


def test_two_replicas_four_clients_agree_with_the_store(server_factory, redis_server):
    first = server_factory("replica0", redis_args(redis_server))
    replicas = [first, server_factory("replica1", redis_args(redis_server), key_dir=first.data_dir)]
    stubs = [r.stub() for r in replicas]
    vectors = unit_vectors(4 * 200, seed=521)
    stop = time.monotonic() + 60
    errors: list[str] = []
    last_sequence = [0]

    def client(c: int) -> None:
        rng = random.Random(c)
        enrolled: set[int] = set()
        while time.monotonic() < stop:
            stub = stubs[rng.randrange(2)]
            i = c * 200 + rng.randrange(200)
            try:
                action = rng.random()
                if action < 0.45:
                    ack = stub.Enroll(pb.EnrollRequest(subject_id=f"C{i}", gallery="watchlist", samples=[template_sample(vectors[i])], replace=True))
                    enrolled.add(i)
                    last_sequence[0] = max(last_sequence[0], ack.sequence)
                    # Read-your-writes on the *other* replica.
                    other = stubs[1 - stubs.index(stub)]
                    found = other.Identify(pb.IdentifyRequest(samples=[template_sample(vectors[i])], galleries=["watchlist"], max_candidates=1, min_sequence=ack.sequence), timeout=10)
                    if not found.candidates or found.candidates[0].subject_id != f"C{i}":
                        errors.append(f"replica missed C{i} after min_sequence {ack.sequence}")
                elif action < 0.65 and enrolled:
                    j = rng.choice(sorted(enrolled))
                    ack = stub.DeleteSubject(pb.DeleteSubjectRequest(subject_id=f"C{j}", gallery="watchlist"))
                    enrolled.discard(j)
                    found = stub.Identify(pb.IdentifyRequest(samples=[template_sample(vectors[j])], galleries=["watchlist"], max_candidates=1))
                    if found.candidates and found.candidates[0].subject_id == f"C{j}":
                        errors.append(f"deleted C{j} still returned")
                else:
                    stub.Identify(pb.IdentifyRequest(samples=[template_sample(vectors[i])], galleries=["watchlist"], max_candidates=3))
            except grpc.RpcError as error:
                if error.code() != grpc.StatusCode.NOT_FOUND:
                    errors.append(f"{error.code().name}: {error.details()}")

    threads = [threading.Thread(target=client, args=(c,)) for c in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []

    store = RedisStore(redis_server.url)
    final = store.last_sequence()
    in_store = {f"C{i}" for i in range(len(vectors)) if _exists(store, f"C{i}")}
    results = []
    for stub in stubs:
        stub.Identify(pb.IdentifyRequest(samples=[template_sample(vectors[0])], galleries=["watchlist"], min_sequence=final), timeout=30)
        assert stub.GalleryStats(pb.GalleryStatsRequest(galleries=["watchlist"])).galleries[0].indexes[0].templates == len(in_store)
        results.append([[(c.subject_id, round(c.score, 4)) for c in identify(stub, "watchlist", v, top=3)] for v in vectors])
    assert results[0] == results[1]
    rank1 = {i: row[0][0] for i, row in enumerate(results[0]) if row}
    assert {f"C{i}" for i, s in rank1.items() if s == f"C{i}"} == in_store
    store.close()


def _exists(store: RedisStore, subject: str) -> bool:
    try:
        store.get_subject("watchlist", subject)
        return True
    except Exception:
        return False


def test_replica_started_after_100k_enrollments_is_ready_within_30_s(server_factory, redis_server):
    first = server_factory("first", redis_args(redis_server))  # creates the galleries
    store = RedisStore(redis_server.url)
    vectors = unit_vectors(100_000, seed=531)
    for start in range(0, len(vectors), 5_000):
        results = store.enroll(
            [NewEnrollment("watchlist", f"B{i}", (Template(Modality.FACE, DEFAULT_FACE_MODEL, vectors[i]),)) for i in range(start, start + 5_000)]
        )
        assert all(not isinstance(r, Exception) for r in results)
    first.kill()

    started = time.monotonic()
    late = server_factory("late", redis_args(redis_server), key_dir=first.data_dir)  # no snapshot: rebuilds from Redis
    ready = time.monotonic() - started
    stub = late.stub()
    assert stub.GalleryStats(pb.GalleryStatsRequest(galleries=["watchlist"])).galleries[0].indexes[0].templates == 100_000
    assert ready < 30, f"replica took {ready:.1f} s to be ready"
    probes = noisy(vectors[::10_000], seed=532)
    assert [identify(stub, "watchlist", p, top=1)[0].subject_id for p in probes] == [f"B{i}" for i in range(0, 100_000, 10_000)]
    print(f"replica ready after 100,000 enrollments in {ready:.1f} s")
    store.close()


def test_require_durable_refuses_redis_without_aof(tmp_path, server_factory):
    from tests.redis_server import RedisServer

    volatile = RedisServer(tmp_path / "volatile", appendonly="no").start()
    try:
        with pytest.raises(RuntimeError, match="refusing to start"):
            server_factory("data", ["--store", "redis", "--redis-url", volatile.url, "--require-durable"])
    finally:
        volatile.kill()
