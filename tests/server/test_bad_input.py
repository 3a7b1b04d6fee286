"""Bad input gets the right status, a message naming the field, stores nothing, and the server keeps serving."""

from __future__ import annotations

import numpy as np
import pytest
import grpc

from shanakht.v1 import identity_pb2 as pb
from tests.conftest import DEFAULT_FACE_DIMENSION as DIM
from tests.conftest import DEFAULT_FACE_MODEL, template_sample, unit_vectors
from tests.server.test_api import identify, new_gallery


def rpc_error(call, *args, **kwargs) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as error:
        call(*args, **kwargs)
    return error.value


def assert_nothing_stored(stub, gallery: str) -> None:
    assert stub.GalleryStats(pb.GalleryStatsRequest(galleries=[gallery])).galleries[0].subjects == 0


def raw_template(data: bytes, model_id: str = DEFAULT_FACE_MODEL) -> pb.Sample:
    return pb.Sample(template=pb.Template(modality=pb.MODALITY_FACE, model_id=model_id, vector=data))


@pytest.mark.parametrize(
    "sample, field, words",
    [
        (raw_template(np.ones(DIM - 1, "<f4").tobytes()), "samples[0].template.vector", f"expected {DIM} values"),
        (raw_template(np.ones(DIM + 1, "<f4").tobytes()), "samples[0].template.vector", f"expected {DIM} values"),
        (raw_template(b"\x00\x00\x80"), "samples[0].template.vector", "whole number"),
        (raw_template(b""), "samples[0].template.vector", "empty"),
        (raw_template(np.full(DIM, np.nan, "<f4").tobytes()), "samples[0].template.vector", "NaN"),
        (raw_template(np.r_[np.ones(DIM - 1), np.inf].astype("<f4").tobytes()), "samples[0].template.vector", "infinite"),
        (raw_template(np.zeros(DIM, "<f4").tobytes()), "samples[0].template.vector", "zero length"),
        (raw_template(np.ones(DIM, "<f4").tobytes(), model_id="other-model@1"), "samples[0].template.model_id", "does not match"),
        (pb.Sample(), "samples[0]", "no face, finger or template"),
    ],
)
def test_bad_templates_are_refused_by_field(stub, sample, field, words):
    gallery = new_gallery(stub)
    for call, request in (
        (stub.Enroll, pb.EnrollRequest(subject_id="S", gallery=gallery, samples=[sample])),
        (stub.Identify, pb.IdentifyRequest(samples=[sample], galleries=[gallery])),
    ):
        error = rpc_error(call, request)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error.details().startswith(field + ":") and words in error.details(), error.details()
    assert_nothing_stored(stub, gallery)


@pytest.mark.parametrize(
    "subject_id, words",
    [("", "must not be empty"), ("x" * 129, "at most 128"), (" padded", "printable"), ("tab\there", "printable")],
)
def test_bad_subject_ids(stub, subject_id, words):
    gallery = new_gallery(stub)
    error = rpc_error(stub.Enroll, pb.EnrollRequest(subject_id=subject_id, gallery=gallery, samples=[template_sample(unit_vectors(1)[0])]))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("subject_id:") and words in error.details()
    assert_nothing_stored(stub, gallery)


def test_subject_id_of_128_characters_is_fine(stub):
    gallery = new_gallery(stub)
    stub.Enroll(pb.EnrollRequest(subject_id="y" * 128, gallery=gallery, samples=[template_sample(unit_vectors(1)[0])]))


def test_unknown_and_malformed_gallery(stub):
    sample = template_sample(unit_vectors(1)[0])
    error = rpc_error(stub.Enroll, pb.EnrollRequest(subject_id="S", gallery="no-such-gallery", samples=[sample]))
    assert error.code() == grpc.StatusCode.NOT_FOUND and "no-such-gallery" in error.details()
    error = rpc_error(stub.Identify, pb.IdentifyRequest(samples=[sample], galleries=["watchlist", "nope"]))
    assert error.code() == grpc.StatusCode.NOT_FOUND and "'nope'" in error.details()
    error = rpc_error(stub.Identify, pb.IdentifyRequest(samples=[sample], galleries=["Bad Name!"]))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and error.details().startswith("galleries[0]:")
    error = rpc_error(stub.Identify, pb.IdentifyRequest(samples=[sample]))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and error.details().startswith("galleries:")


def test_same_subject_twice_without_replace(stub):
    gallery = new_gallery(stub)
    a, b = unit_vectors(2, seed=5)
    stub.Enroll(pb.EnrollRequest(subject_id="TWICE", gallery=gallery, samples=[template_sample(a)]))
    error = rpc_error(stub.Enroll, pb.EnrollRequest(subject_id="TWICE", gallery=gallery, samples=[template_sample(b)]))
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS and "TWICE" in error.details()
    # Nothing lost, nothing changed: the first enrolment still matches, the refused one does not.
    assert identify(stub, gallery, a, top=1)[0].hit
    assert not identify(stub, gallery, b, top=1)[0].hit


def test_oversized_message_is_refused_and_server_keeps_serving(shared_server, stub):
    gallery = new_gallery(stub)
    big = raw_template(b"\x00" * (17 * 1024 * 1024))
    channel = shared_server.channel(**{"grpc.max_send_message_length": 64 * 1024 * 1024})
    from shanakht.v1 import identity_pb2_grpc as pb_grpc

    error = rpc_error(pb_grpc.IdentityServiceStub(channel).Enroll, pb.EnrollRequest(subject_id="BIG", gallery=gallery, samples=[big]))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert_nothing_stored(stub, gallery)
    assert shared_server.healthy()


def test_bad_request_numbers(stub):
    sample = template_sample(unit_vectors(1)[0])
    error = rpc_error(stub.Identify, pb.IdentifyRequest(samples=[sample], galleries=["watchlist"], max_candidates=5000))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and error.details().startswith("max_candidates:")
    error = rpc_error(stub.Identify, pb.IdentifyRequest(samples=[sample], galleries=["watchlist"], min_score=float("nan")))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and error.details().startswith("min_score:")
    error = rpc_error(stub.Identify, pb.IdentifyRequest(galleries=["watchlist"]))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and error.details().startswith("samples:")
    error = rpc_error(stub.CreateGallery, pb.CreateGalleryRequest(name="watchlist"))
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    error = rpc_error(stub.CreateGallery, pb.CreateGalleryRequest(name="ok-name", threshold_fmr=2.0))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and error.details().startswith("threshold_fmr:")


def test_stream_items_fail_alone(stub):
    gallery = new_gallery(stub)
    good = unit_vectors(3, seed=9)
    requests = [
        pb.EnrollRequest(subject_id="A", gallery=gallery, samples=[template_sample(good[0])]),
        pb.EnrollRequest(subject_id="B", gallery=gallery, samples=[raw_template(b"\x00" * 12)]),
        pb.EnrollRequest(subject_id="A", gallery=gallery, samples=[template_sample(good[1])]),
        pb.EnrollRequest(subject_id="C", gallery="missing", samples=[template_sample(good[2])]),
        pb.EnrollRequest(subject_id="D", gallery=gallery, samples=[template_sample(good[2])]),
    ]
    acks = list(stub.EnrollStream(iter(requests)))
    assert [a.index for a in acks] == [0, 1, 2, 3, 4]
    codes = [grpc.StatusCode.OK.value[0], grpc.StatusCode.INVALID_ARGUMENT.value[0], grpc.StatusCode.ALREADY_EXISTS.value[0],
             grpc.StatusCode.NOT_FOUND.value[0], grpc.StatusCode.OK.value[0]]
    assert [a.status_code for a in acks] == codes
    assert acks[1].error.startswith("samples[0].template.vector:")
    assert stub.GalleryStats(pb.GalleryStatsRequest(galleries=[gallery])).galleries[0].subjects == 2
