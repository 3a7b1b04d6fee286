"""EnrollTransaction: an ANSI/NIST-ITL transaction → one ordinary enrolment request, all or nothing.

``enrollment.transaction`` reads the transaction into samples and metadata; this turns them into
the ``pb.EnrollRequest`` that ``Enroll`` serves, so quality gates, duplicate checks, evidence
images, durability and audit are the same as for any enrolment.  An error about one sample is
re-told about the record it came from ("Type-14 IDC 3 FGP 2 (WSQ20): …"), since the caller sent a
transaction, not samples.
"""

from __future__ import annotations

import re

from enrollment.transaction.reader import TRANSACTION_FIELD, Mapping, Transaction, TransactionSample, read_transaction
from matcher.errors import InvalidArgument
from shanakht.v1 import identity_pb2 as pb

_SAMPLE_FIELD = re.compile(r"^samples\[(\d+)\]\.?(.*)$")


def _sample(one: TransactionSample) -> pb.Sample:
    if one.kind == "face":
        return pb.Sample(face=pb.FaceImage(image=one.data))
    if one.kind == "finger":
        return pb.Sample(finger=pb.FingerImage(image=one.data, position=one.position, dpi=round(one.dpi)))
    return pb.Sample(template=pb.Template(modality=pb.MODALITY_FINGER, model_id=one.model_id, vector=one.data, finger_position=one.position))


def enroll_request(request: pb.EnrollTransactionRequest, mapping: Mapping) -> tuple[pb.EnrollRequest, Transaction]:
    """The enrolment a transaction asks for; ``InvalidArgument`` naming ``transaction`` or ``subject_id``."""
    transaction = read_transaction(request.transaction)
    subject_id = request.subject_id or mapping.subject_id_of(transaction)
    if not subject_id:
        tags = ", ".join(mapping.subject_id)
        raise InvalidArgument("subject_id", f"not given, and the transaction has none of the fields the mapping names ({tags})")
    metadata = {**mapping.metadata_of(transaction), **request.metadata}
    enroll = pb.EnrollRequest(
        subject_id=subject_id, gallery=request.gallery, samples=[_sample(s) for s in transaction.samples],
        metadata=metadata, replace=request.replace, check_duplicates=request.check_duplicates,
    )
    return enroll, transaction


def about_record(error: InvalidArgument, transaction: Transaction) -> InvalidArgument:
    """``samples[i].finger.image: …`` → ``transaction: Type-14 IDC 3 FGP 2 (WSQ20) finger.image: …``."""
    match = _SAMPLE_FIELD.match(error.field or "")
    if match is None or int(match.group(1)) >= len(transaction.samples):
        return error
    where = transaction.samples[int(match.group(1))].source
    return InvalidArgument(TRANSACTION_FIELD, f"{where}{' ' + match.group(2) if match.group(2) else ''}: {error.detail}")


def response(enrolled: pb.EnrollResponse, enroll: pb.EnrollRequest, transaction: Transaction) -> pb.EnrollTransactionResponse:
    return pb.EnrollTransactionResponse(
        enrolled=enrolled,
        samples=[s.source for s in transaction.samples],
        skipped=[pb.SkippedRecord(record_type=s.record_type, idc=s.idc, reason=s.reason) for s in transaction.skipped],
        metadata=dict(enroll.metadata),
    )
