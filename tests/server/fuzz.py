"""A fuzzer of the gRPC surface: hypothesis-generated requests, malformed fields and raw bytes.

A *crash* is an answer our code did not mean to give (INTERNAL from an unhandled exception,
UNKNOWN) or a dead server; a *hang* is a call that does not finish within its deadline.
Used by the test suite (10,000 inputs) and by ``make bench`` (which records the figures).
"""

from __future__ import annotations

import struct
import time
from collections import Counter
from dataclasses import dataclass, field

import grpc
import numpy as np
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from enrollment.face import DIMENSION as DEFAULT_FACE_DIMENSION
from enrollment.face import MODEL_ID as DEFAULT_FACE_MODEL
from shanakht.v1 import identity_pb2 as pb

DEADLINE_S = 10.0
METHODS = ["Enroll", "EnrollStream", "Identify", "Verify", "ExtractTemplate", "GetSubject", "DeleteSubject",
           "CreateGallery", "ListGalleries", "GalleryStats", "GetImage", "ListSearches", "GetSearch", "RecordDecision",
           "VerificationQueue", "GetOversightReport", "EnrollTransaction"]
REQUEST_TYPES = {
    "Enroll": pb.EnrollRequest, "EnrollStream": pb.EnrollRequest, "Identify": pb.IdentifyRequest, "Verify": pb.VerifyRequest,
    "ExtractTemplate": pb.ExtractTemplateRequest, "GetSubject": pb.GetSubjectRequest, "DeleteSubject": pb.DeleteSubjectRequest,
    "CreateGallery": pb.CreateGalleryRequest, "ListGalleries": pb.ListGalleriesRequest, "GalleryStats": pb.GalleryStatsRequest,
    "GetImage": pb.GetImageRequest, "ListSearches": pb.ListSearchesRequest, "GetSearch": pb.GetSearchRequest,
    "RecordDecision": pb.RecordDecisionRequest, "VerificationQueue": pb.VerificationQueueRequest,
    "GetOversightReport": pb.OversightReportRequest, "EnrollTransaction": pb.EnrollTransactionRequest,
}

PNG_HEADER = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR"


@dataclass
class FuzzReport:
    inputs: int = 0
    seconds: float = 0.0
    statuses: Counter = field(default_factory=Counter)
    crashes: list[str] = field(default_factory=list)
    hangs: list[str] = field(default_factory=list)


# -- strategies -------------------------------------------------------------------------------
names = st.one_of(st.sampled_from(["watchlist", "inmates", "criminal_records", "", "nope"]), st.text(max_size=80))
weird_floats = st.floats(allow_nan=True, allow_infinity=True, width=32)
vectors = st.one_of(
    st.binary(max_size=4200),
    st.lists(weird_floats, min_size=0, max_size=600).map(lambda v: np.asarray(v, "<f4").tobytes()),
    st.integers(0, 2**31).map(lambda seed: np.random.default_rng(seed).standard_normal(DEFAULT_FACE_DIMENSION).astype("<f4").tobytes()),
)
images = st.one_of(
    st.binary(max_size=3000),
    st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)).map(lambda wh: PNG_HEADER + struct.pack(">II", *wh) + b"\x08\x02\x00\x00\x00"),
    st.binary(max_size=200).map(lambda tail: b"\xff\xd8\xff\xe0" + tail),  # truncated JPEG
    st.binary(max_size=200).map(lambda tail: b"BM" + tail),
)
templates = st.builds(
    pb.Template,
    modality=st.integers(0, 5),
    model_id=st.one_of(st.just(DEFAULT_FACE_MODEL), st.text(max_size=40)),
    vector=vectors,
    finger_position=st.integers(0, 2**32 - 1),
)
samples = st.one_of(
    st.builds(pb.Sample),
    templates.map(lambda t: pb.Sample(template=t)),
    images.map(lambda b: pb.Sample(face=pb.FaceImage(image=b))),
    st.tuples(images, st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)).map(
        lambda a: pb.Sample(finger=pb.FingerImage(image=a[0], position=a[1], dpi=a[2]))
    ),
)
sample_lists = st.lists(samples, max_size=4)


def _small_transaction() -> bytes:
    """A well-formed Type-1/2/14 transaction holding a 96×96 PNG: the seed the mutations below start from."""
    import io

    import nistitl
    from PIL import Image

    png = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (96, 96), dtype=np.uint8)).save(png, format="PNG")
    message = nistitl.Message()
    message.TOT, message[0].DAT, message[0].TCN = "CAR", "20261204", "FUZZ"
    descriptive = nistitl.AsciiRecord(2)
    descriptive.IDC = 0
    message += descriptive
    record = nistitl.AsciiRecord(14)
    record.IDC = 1
    for tag, value in ((3, "0"), (5, "20261204"), (6, "96"), (7, "96"), (8, "1"), (9, "500"), (10, "500"), (11, "PNG"), (13, "2")):
        record += nistitl.Field(14, tag, value)
    record += nistitl.BinaryField(14, 999, png.getvalue())
    message += record
    return message.NIST


SMALL_TRANSACTION = _small_transaction()
transactions = st.one_of(
    st.binary(max_size=2000),
    st.binary(max_size=300).map(lambda tail: b"1.001:" + tail),
    st.tuples(st.integers(0, len(SMALL_TRANSACTION) - 1), st.binary(min_size=1, max_size=8)).map(  # bytes overwritten
        lambda a: SMALL_TRANSACTION[: a[0]] + a[1] + SMALL_TRANSACTION[a[0] + len(a[1]):]
    ),
    st.integers(0, len(SMALL_TRANSACTION)).map(lambda n: SMALL_TRANSACTION[:n]),  # truncated
)
metadata = st.dictionaries(st.text(max_size=20), st.text(max_size=50), max_size=4)

requests = {
    "Enroll": st.builds(pb.EnrollRequest, subject_id=names, gallery=names, samples=sample_lists, metadata=metadata,
                        replace=st.booleans(), check_duplicates=st.booleans(), largest_face=st.booleans()),
    "Identify": st.builds(pb.IdentifyRequest, samples=sample_lists, galleries=st.lists(names, max_size=3),
                          max_candidates=st.integers(0, 2**32 - 1), min_score=weird_floats, purpose=st.text(max_size=30),
                          min_sequence=st.integers(-(2**63), 2**63 - 1)),
    "Verify": st.builds(pb.VerifyRequest, subject_id=names, gallery=names, samples=sample_lists, purpose=st.text(max_size=30),
                        min_sequence=st.integers(-(2**63), 2**63 - 1)),
    "ExtractTemplate": st.builds(pb.ExtractTemplateRequest, sample=samples),
    "GetSubject": st.builds(pb.GetSubjectRequest, subject_id=names, gallery=names, purpose=st.text(max_size=30)),
    "DeleteSubject": st.builds(pb.DeleteSubjectRequest, subject_id=names, gallery=names),
    "CreateGallery": st.builds(pb.CreateGalleryRequest, name=names, threshold_fmr=st.floats(allow_nan=True, allow_infinity=True),
                               modalities=st.lists(st.builds(pb.ModalitySettings, modality=st.integers(0, 5), model_id=st.text(max_size=20),
                                                             dimension=st.integers(0, 2**32 - 1)), max_size=3)),
    "ListGalleries": st.builds(pb.ListGalleriesRequest),
    "GalleryStats": st.builds(pb.GalleryStatsRequest, galleries=st.lists(names, max_size=3)),
    "GetImage": st.one_of(
        st.builds(pb.GetImageRequest, purpose=st.text(max_size=20)),
        st.builds(lambda g, s, t, p: pb.GetImageRequest(sample=pb.SampleImageRef(gallery=g, subject_id=s, template_id=t), purpose=p),
                  names, names, st.integers(-(2**63), 2**63 - 1), st.text(max_size=20)),
        st.builds(lambda s, i, p: pb.GetImageRequest(probe=pb.ProbeImageRef(search_id=s, sample_index=i), purpose=p),
                  st.text(max_size=30), st.integers(0, 2**32 - 1), st.text(max_size=20)),
    ),
    "ListSearches": st.builds(pb.ListSearchesRequest, everyone=st.booleans(), disputed_only=st.booleans(),
                              page_size=st.integers(0, 2**32 - 1), page_token=st.text(max_size=12)),
    "GetSearch": st.builds(pb.GetSearchRequest, search_id=st.text(max_size=30)),
    "RecordDecision": st.builds(pb.RecordDecisionRequest, search_id=st.text(max_size=30), gallery=names, subject_id=names,
                                kind=st.integers(0, 5), reason=st.text(max_size=40)),
    "VerificationQueue": st.builds(pb.VerificationQueueRequest, page_size=st.integers(0, 2**32 - 1)),
    "EnrollTransaction": st.builds(pb.EnrollTransactionRequest, gallery=names, transaction=transactions, subject_id=names,
                                   replace=st.booleans(), check_duplicates=st.booleans(), metadata=metadata),
    "GetOversightReport": st.builds(pb.OversightReportRequest, since=st.floats(allow_nan=True, allow_infinity=True),
                                    until=st.floats(allow_nan=True, allow_infinity=True)),
}
calls = st.one_of(
    *[st.tuples(st.just(m), s.map(lambda r: r.SerializeToString())) for m, s in requests.items()],
    st.tuples(st.just("EnrollStream"), st.lists(requests["Enroll"], max_size=3).map(lambda rs: [r.SerializeToString() for r in rs])),
    st.tuples(st.sampled_from(METHODS), st.binary(max_size=2000)),  # raw bytes: malformed protobuf
)


def fuzz(channel: grpc.Channel, examples: int, seed: int = 0) -> FuzzReport:
    """Send ``examples`` generated calls; classify every answer."""
    report = FuzzReport()
    unary = {m: channel.unary_unary(f"/shanakht.v1.IdentityService/{m}") for m in METHODS}
    stream = channel.stream_stream("/shanakht.v1.IdentityService/EnrollStream")

    def send(method: str, payload) -> None:
        report.inputs += 1
        try:
            if method == "EnrollStream":
                items = payload if isinstance(payload, list) else [payload]
                list(stream(iter(items), timeout=DEADLINE_S))
            else:
                unary[method](payload, timeout=DEADLINE_S)
            report.statuses["OK"] += 1
        except grpc.RpcError as error:
            code = error.code()
            report.statuses[code.name] += 1
            details = error.details() or ""
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                report.hangs.append(f"{method}: {details}")
            elif code == grpc.StatusCode.UNKNOWN or (code == grpc.StatusCode.INTERNAL and "deserializ" not in details.lower()):
                report.crashes.append(f"{method}: {code.name}: {details}")

    @settings(max_examples=examples, deadline=None, database=None, derandomize=True, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(calls)
    def run(call) -> None:
        send(*call)

    started = time.perf_counter()
    run()
    report.seconds = time.perf_counter() - started
    return report
