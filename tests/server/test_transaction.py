"""ANSI/NIST-ITL transactions over gRPC: NIST's sample transactions, ten-prints built with nistitl, bad transactions.

The samples in ``../shared/data/interchange/an2k`` were written by other software; every one either
enrols or is refused with a reason that names the record.  A ten-print built here from FVC prints
imports and identifies rank-1; a refused transaction stores nothing.
"""

from __future__ import annotations

import io

import grpc
import nistitl
import pytest
from PIL import Image

from enrollment.transaction.reader import TransactionError, read_transaction
from shanakht.v1 import identity_pb2 as pb
from tests.conftest import DATA
from tests.finger_fixtures import DB1
from tests.server.test_api import new_gallery
from tests.server.test_bad_input import assert_nothing_stored, rpc_error

AN2K = DATA / "interchange" / "an2k"
PRINTS = DATA / "finger" / DB1
pytestmark = pytest.mark.skipif(
    not AN2K.is_dir() or not (PRINTS / "101_1.tif").is_file(),
    reason=f"interchange samples or FVC prints not found under {DATA}; set SHANAKHT_DATA to the shared data folder",
)

# What each sample transaction must give: the finger positions enrolled and faces, or the words of its refusal.
ENROLS = {
    "type-14-tpcard-nqm.an2": ([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 6, 1], 0),  # rolled 1–10 + plain thumbs (12 → 6, 11 → 1)
    "type-10-14-17-piv-index-iris.an2": ([2, 7], 1),  # lossless-JPEG fingers and a face; the iris skipped
    "type-9-14-m1.an2": ([8], 0),  # the image wins over the same finger's INCITS 378 block
    "valid1.1.an2": ([10], 0),
    "face_jpb_DOM_GMT_DCS.an2": ([], 1),
}
REFUSALS = {
    "fail-type-14-L1.an2": "14.003 (IMP): 4 is a latent impression code",
    "fail_IDC_Sequential_Tests.an2": "1.003 (CNT)",
    "fail-all-supported-types-long-data.an2": "NIST_TOO_LONG",
    "type-17-iris.an2": "nothing to enrol (Type-17 IDC 1: iris",
    "type-10-branded-tattoo-mark.an2": "image type TATTOO (10.003): not a face",
    "type9.an2k": "legacy NIST minutiae",
    "valid1.8.an2": "multi-finger slap",
}


def enroll(stub, gallery: str, data: bytes, **kw) -> pb.EnrollTransactionResponse:
    return stub.EnrollTransaction(pb.EnrollTransactionRequest(gallery=gallery, transaction=data, **kw), timeout=120)


def png(path) -> bytes:
    out = io.BytesIO()
    Image.open(path).convert("L").save(out, format="PNG")
    return out.getvalue()


def tenprint(tcn: str, prints: dict[int, str], name: str = "", compression: str = "PNG") -> bytes:
    """A Type-1/2/14 transaction of FVC prints at the given finger positions, built with nistitl."""
    message = nistitl.Message()
    message.TOT, message[0].DAT, message[0].TCN, message[0].ORI = "CAR", "20261204", tcn, "PKPOL0001"
    descriptive = nistitl.AsciiRecord(2)
    descriptive.IDC = 0
    if name:
        descriptive += nistitl.Field(2, 18, name)
    message += descriptive
    for idc, (position, stem) in enumerate(prints.items(), start=1):
        image = Image.open(PRINTS / f"{stem}.tif")
        record = nistitl.AsciiRecord(14)
        record.IDC = idc
        for tag, value in ((3, "0"), (4, "PKPOL0001"), (5, "20261204"), (6, str(image.width)), (7, str(image.height)), (8, "1"),
                           (9, "500"), (10, "500"), (11, compression), (12, "8"), (13, str(position))):
            record += nistitl.Field(14, tag, value)
        record += nistitl.BinaryField(14, 999, png(PRINTS / f"{stem}.tif"))
        message += record
    return message.NIST


@pytest.mark.parametrize("name", sorted(ENROLS))
def test_nist_sample_transactions_enrol(stub, name):
    gallery = new_gallery(stub)
    response = enroll(stub, gallery, (AN2K / name).read_bytes())
    positions, faces = ENROLS[name]
    subject = stub.GetSubject(pb.GetSubjectRequest(gallery=gallery, subject_id=response.enrolled.subject_id))
    assert [t.finger_position for t in subject.templates if t.modality == pb.MODALITY_FINGER] == positions
    assert sum(t.modality == pb.MODALITY_FACE for t in subject.templates) == faces
    assert len(response.samples) == len(response.enrolled.template_ids) == len(subject.templates)
    meta = subject.metadata  # the mapping: SID (2.015), else FBI number (2.014), else the TCN (1.009)
    assert response.enrolled.subject_id == (meta.get("state_id") or meta.get("fbi_number") or meta["transaction_control_number"])


@pytest.mark.parametrize("name", sorted(REFUSALS))
def test_bad_or_empty_transactions_are_refused_by_record_and_field(stub, name):
    gallery = new_gallery(stub)
    error = rpc_error(enroll, stub, gallery, (AN2K / name).read_bytes())
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("transaction: ") and REFUSALS[name] in error.details()
    assert_nothing_stored(stub, gallery)


def test_every_sample_transaction_is_read_or_refused_with_a_reason():
    """All 32 samples through the reader (the gRPC tests above enrol a representative set)."""
    read = {}
    for path in sorted(AN2K.iterdir()):
        try:
            transaction = read_transaction(path.read_bytes())
            assert all(s.reason for s in transaction.skipped)
            read[path.name] = len(transaction.samples)
        except TransactionError as error:
            assert error.field == "transaction" and error.detail, path.name
            read[path.name] = 0
    assert len(read) == 32 and sum(n > 0 for n in read.values()) == 12, read


def test_a_tenprint_built_from_fvc_prints_imports_and_identifies_rank_1(stub):
    gallery = new_gallery(stub)
    first = enroll(stub, gallery, tenprint("TCN-A", {p: f"{100 + p}_1" for p in range(1, 6)}, name="KHAN,ALI"))
    second = enroll(stub, gallery, tenprint("TCN-B", {p - 5: f"{100 + p}_1" for p in range(6, 11)}))
    assert (first.enrolled.subject_id, len(first.enrolled.template_ids)) == ("TCN-A", 5)
    assert first.metadata["name"] == "KHAN,ALI" and len(second.enrolled.template_ids) == 5
    for stem, position, subject in (("102_3", 2, "TCN-A"), ("105_2", 5, "TCN-A"), ("108_3", 3, "TCN-B")):
        probe = pb.Sample(finger=pb.FingerImage(image=(PRINTS / f"{stem}.tif").read_bytes(), position=position))
        found = stub.Identify(pb.IdentifyRequest(samples=[probe], galleries=[gallery], max_candidates=3), timeout=60)
        assert found.candidates[0].subject_id == subject and found.candidates[0].hit
    again = rpc_error(enroll, stub, gallery, tenprint("TCN-A", {1: "101_2"}))
    assert again.code() == grpc.StatusCode.ALREADY_EXISTS


def test_a_bad_image_or_field_in_one_record_stores_nothing(stub):
    gallery = new_gallery(stub)
    good = tenprint("TCN-C", {1: "101_1", 2: "102_1"})
    cases = [
        (good[: len(good) // 2], "NIST_TOO_SHORT"),
        (tenprint("TCN-C", {1: "101_1", 16 + 2: "102_1"}), "14.013 (FGP): 18 is not a finger position"),
        (tenprint("TCN-C", {1: "101_1"}, compression="WSQ20"), "14.999 (DATA): not a WSQ20 image"),
        (good.replace(b"14.008:1", b"14.008:5", 1), "14.008 (SLC): 5 is not"),
        (good.replace(b"14.006:388", b"14.006:390", 1), "the image is 388×374 but the record declares 390×374"),
        (b"1.001:17\x1d1.002:0400\x1c", "not a valid ANSI/NIST-ITL transaction"),
    ]
    for data, words in cases:
        error = rpc_error(enroll, stub, gallery, data)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and words in error.details(), error.details()
    assert_nothing_stored(stub, gallery)
