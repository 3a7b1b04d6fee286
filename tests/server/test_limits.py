"""Overload and deadlines: RESOURCE_EXHAUSTED beyond the RPC bound, DEADLINE_EXCEEDED honoured."""

from __future__ import annotations

import queue

import grpc
import pytest

from shanakht.v1 import identity_pb2 as pb
from tests.conftest import template_sample, unit_vectors


def test_concurrent_rpcs_beyond_the_bound_get_resource_exhausted(server_factory):
    server = server_factory("data", ["--max-concurrent-rpcs", "2"])
    stub = server.stub()
    # Two open EnrollStreams occupy both slots until we close them.
    feeds = [queue.Queue() for _ in range(2)]
    streams = [stub.EnrollStream(iter(feed.get, None)) for feed in feeds]
    vector = unit_vectors(1, seed=3)[0]
    for i, (feed, stream) in enumerate(zip(feeds, streams)):
        feed.put(pb.EnrollRequest(subject_id=f"held{i}", gallery="watchlist", samples=[template_sample(vector)]))
        assert next(stream).status_code == 0  # the stream is live on the server
    with pytest.raises(grpc.RpcError) as error:
        stub.GalleryStats(pb.GalleryStatsRequest(), timeout=10)
    assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    for feed in feeds:
        feed.put(None)
    for stream in streams:
        assert list(stream) == []
    assert stub.GalleryStats(pb.GalleryStatsRequest(), timeout=10).galleries  # slots free again


def test_expired_deadline_is_reported_and_server_keeps_serving(shared_server, stub):
    sample = template_sample(unit_vectors(1)[0])
    samples = [template_sample(v) for v in unit_vectors(500, seed=4)]
    with pytest.raises(grpc.RpcError) as error:
        stub.Identify(pb.IdentifyRequest(samples=samples, galleries=["watchlist"]), timeout=0.001)
    assert error.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert shared_server.healthy()
    stub.Identify(pb.IdentifyRequest(samples=[sample], galleries=["watchlist"]), timeout=10)
