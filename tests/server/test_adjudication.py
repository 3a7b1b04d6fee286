"""Search records, blind verification and oversight over gRPC, against a real server and real face photos."""

from __future__ import annotations

import io
import json
from collections import Counter

import grpc
import pytest
from PIL import Image

from shanakht.v1 import identity_pb2 as pb
from tests.conftest import ServerProcess
from tests.server.test_access import cli, create_key
from tests.server.test_evidence import CELEBRITIES, code_of, face, pytestmark  # noqa: F401  (same data, same skip)

PEOPLE = {"Ben Afflek": "CR-BEN", "Elton John": "CR-ELTON", "Madonna": "CR-MADONNA", "Mindy Kaling": "CR-MINDY"}
IDENTIFICATION, EXCLUSION, INCONCLUSIVE = pb.DECISION_IDENTIFICATION, pb.DECISION_EXCLUSION, pb.DECISION_INCONCLUSIVE


def enroll_people(admin) -> None:
    for person, subject in PEOPLE.items():
        admin.Enroll(pb.EnrollRequest(subject_id=subject, gallery="criminal_records", samples=[face(f"{person}/1.jpg")],
                                      metadata={"name": person}, largest_face=True), timeout=120)


def search(stub, photo: str, purpose: str = "FIR 88/2026") -> pb.IdentifyResponse:
    return stub.Identify(pb.IdentifyRequest(samples=[face(photo, "val")], galleries=["criminal_records"], purpose=purpose,
                                            max_candidates=3), timeout=120)


def decide(stub, search_id: str, subject: str, kind: int, reason: str = "ear shape and hairline agree") -> pb.SearchCandidate:
    return stub.RecordDecision(pb.RecordDecisionRequest(search_id=search_id, gallery="criminal_records", subject_id=subject,
                                                        kind=kind, reason=reason))


def refusal(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as error:
        call()
    return error.value.code(), error.value.details()


@pytest.fixture(scope="module")
def casework(tmp_path_factory):
    server = ServerProcess(tmp_path_factory.mktemp("casework") / "data").start()
    enroll_people(server.stub())
    keys = {name: create_key(server, role, "--name", name)["key"] for name, role in
            [("Inspector A", "investigator"), ("Inspector B", "investigator"), ("Superintendent S", "supervisor"),
             ("Board O", "oversight"), ("Hotel Eye", "checkpoint"), ("Jail intake", "intake")]}
    stubs = {name: server.stub(key) for name, key in keys.items()}
    yield server, stubs
    server.kill()


def test_blind_verification_dispute_and_oversight(casework):
    server, s = casework
    a, b, sup, board = s["Inspector A"], s["Inspector B"], s["Superintendent S"], s["Board O"]

    # An investigator's search becomes a search record; the probe photo is kept with it.
    first = search(a, "ben_afflek/2.jpg")
    assert first.search_id and first.candidates[0].subject_id == "CR-BEN"
    record = a.GetSearch(pb.GetSearchRequest(search_id=first.search_id))
    assert (record.examiner, record.role, record.purpose, list(record.galleries)) == ("Inspector A", "investigator", "FIR 88/2026", ["criminal_records"])
    assert record.gallery_sizes["criminal_records"] == len(PEOPLE) and record.searched_subjects == len(PEOPLE)
    assert [c.candidate.subject_id for c in record.candidates] == [c.subject_id for c in first.candidates]
    assert [c.candidate.score for c in record.candidates] == [c.score for c in first.candidates]
    assert list(record.probe_modalities) == [pb.MODALITY_FACE] and list(record.probe_has_image) == [True]
    probe = a.GetImage(pb.GetImageRequest(probe=pb.ProbeImageRef(search_id=first.search_id, sample_index=0), purpose="FIR 88/2026"))
    assert Image.open(io.BytesIO(probe.image)).size == (probe.width, probe.height) and max(probe.width, probe.height) <= 640

    # Bad decisions: named fields, unknown search or candidate.
    assert refusal(lambda: decide(a, first.search_id, "CR-BEN", IDENTIFICATION, reason="  "))[0] == grpc.StatusCode.INVALID_ARGUMENT
    code, details = refusal(lambda: decide(a, first.search_id, "CR-BEN", pb.DECISION_UNSPECIFIED))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("kind")
    assert refusal(lambda: decide(a, "s0000", "CR-BEN", IDENTIFICATION))[0] == grpc.StatusCode.NOT_FOUND
    assert refusal(lambda: decide(a, first.search_id, "CR-NOBODY", IDENTIFICATION))[0] == grpc.StatusCode.NOT_FOUND

    # A identifies; A cannot verify A's own identification.
    mine = decide(a, first.search_id, "CR-BEN", IDENTIFICATION)
    assert mine.status == pb.CANDIDATE_AWAITING_VERIFICATION and [d.examiner for d in mine.decisions] == ["Inspector A"]
    code, details = refusal(lambda: decide(a, first.search_id, "CR-BEN", IDENTIFICATION))
    assert code == grpc.StatusCode.PERMISSION_DENIED and "different examiner" in details
    assert all(i.search_id != first.search_id for i in a.VerificationQueue(pb.VerificationQueueRequest()).items)

    # B sees the candidate in the queue and in the record, without A's decision: blind.
    queued = [i for i in b.VerificationQueue(pb.VerificationQueueRequest()).items if i.search_id == first.search_id]
    assert [i.candidate.candidate.subject_id for i in queued] == ["CR-BEN"]
    assert queued[0].candidate.status == pb.CANDIDATE_AWAITING_VERIFICATION and len(queued[0].candidate.decisions) == 0
    seen_by_b = {c.candidate.subject_id: c for c in b.GetSearch(pb.GetSearchRequest(search_id=first.search_id)).candidates}
    assert all(len(c.decisions) == 0 for c in seen_by_b.values())
    confirmed = decide(b, first.search_id, "CR-BEN", IDENTIFICATION, reason="independent comparison: eyes, nose bridge, chin")
    assert confirmed.status == pb.CANDIDATE_CONFIRMED and [d.examiner for d in confirmed.decisions] == ["Inspector A", "Inspector B"]
    assert all(i.search_id != first.search_id for i in b.VerificationQueue(pb.VerificationQueueRequest()).items)
    assert refusal(lambda: decide(sup, first.search_id, "CR-BEN", EXCLUSION))[0] == grpc.StatusCode.FAILED_PRECONDITION
    # A's first search: another candidate excluded outright.
    other = next(c.subject_id for c in first.candidates if c.subject_id != "CR-BEN")
    assert decide(a, first.search_id, other, EXCLUSION, reason="different face shape").status == pb.CANDIDATE_EXCLUDED

    # A second search: A identifies, B disagrees → disputed; only a supervisor resolves it.
    second = search(a, "madonna/1.jpg", purpose="case 17 theft")
    top = second.candidates[0].subject_id
    decide(a, second.search_id, top, IDENTIFICATION)
    assert decide(b, second.search_id, top, EXCLUSION, reason="jawline differs").status == pb.CANDIDATE_DISPUTED
    code, details = refusal(lambda: decide(b, second.search_id, top, IDENTIFICATION))
    assert code == grpc.StatusCode.PERMISSION_DENIED and "supervisor" in details
    disputed = sup.ListSearches(pb.ListSearchesRequest(everyone=True, disputed_only=True)).searches
    assert [r.search_id for r in disputed] == [second.search_id]
    assert refusal(lambda: a.ListSearches(pb.ListSearchesRequest(everyone=True)))[0] == grpc.StatusCode.PERMISSION_DENIED
    resolved = decide(sup, second.search_id, top, EXCLUSION, reason="supervisor review: different person")
    assert resolved.status == pb.CANDIDATE_EXCLUDED and len(resolved.decisions) == 3
    assert sup.ListSearches(pb.ListSearchesRequest(everyone=True, disputed_only=True)).searches == []

    # Own searches, newest first, paged.
    own = a.ListSearches(pb.ListSearchesRequest(page_size=1))
    assert [r.search_id for r in own.searches] == [second.search_id] and own.next_page_token
    rest = a.ListSearches(pb.ListSearchesRequest(page_size=1, page_token=own.next_page_token))
    assert [r.search_id for r in rest.searches] == [first.search_id] and not rest.next_page_token
    assert b.ListSearches(pb.ListSearchesRequest()).searches == []  # B searched nothing

    # Every decision attempt is in the audit log, and the chain verifies.
    records = [json.loads(line) for line in cli("audit", "export", "--data-dir", str(server.data_dir)).splitlines() if line.strip()]
    decisions = [r for r in records if r["rpc"] == "RecordDecision"]
    assert Counter(r["status"] for r in decisions) == Counter(
        {"OK": 6, "INVALID_ARGUMENT": 2, "NOT_FOUND": 2, "PERMISSION_DENIED": 2, "FAILED_PRECONDITION": 1}
    )
    ok = [(r["name"], r["search_id"], r["subjects"], r["decision"], r["candidate_status"]) for r in decisions if r["status"] == "OK"]
    assert ok[:2] == [("Inspector A", first.search_id, ["criminal_records/CR-BEN"], "identification", "CANDIDATE_AWAITING_VERIFICATION"),
                      ("Inspector B", first.search_id, ["criminal_records/CR-BEN"], "identification", "CANDIDATE_CONFIRMED")]
    assert ok[-1][0] == "Superintendent S" and ok[-1][4] == "CANDIDATE_EXCLUDED"
    identify_audit = [r for r in records if r["rpc"] == "Identify" and r.get("search_id")]
    assert [r["search_id"] for r in identify_audit] == [first.search_id, second.search_id]
    cli("audit", "verify", "--data-dir", str(server.data_dir))  # exits 0 only when the chain is intact

    # The oversight body: counts that match what happened, the chain's status, and no names, ids or images.
    report = board.GetOversightReport(pb.OversightReportRequest())
    rows = {(r.purpose_kind, r.role, r.gallery): r for r in report.rows}
    assert set(rows) == {("FIR", "investigator", "criminal_records"), ("case", "investigator", "criminal_records")}
    fir, case = rows[("FIR", "investigator", "criminal_records")], rows[("case", "investigator", "criminal_records")]
    assert (fir.searches, fir.identifications, fir.exclusions, fir.inconclusive) == (1, 1, 1, 0)
    assert (case.searches, case.identifications, case.exclusions, case.inconclusive) == (1, 0, 1, 0)
    assert fir.searches_with_hits == int(any(c.hit for c in first.candidates))
    decided = {(first.search_id, "CR-BEN"): "confirmed", (first.search_id, other): "excluded", (second.search_id, top): "excluded"}
    scores = {(r.search_id, c.subject_id): (c.score, c.hit) for r in (first, second) for c in r.candidates}
    hits = {k: v for k, v in decided.items() if scores[k][1]}
    assert report.adjudicated_hits == len(hits) and report.excluded_hits == sum(v == "excluded" for v in hits.values())
    if hits:
        assert report.nominal_fmr == pytest.approx(sum(10 ** -scores[k][0] for k in hits) / len(hits))
    assert sum(report.confirmed_scores.counts) == 1 and sum(report.excluded_scores.counts) == 2
    assert len(report.confirmed_scores.edges) == len(report.confirmed_scores.counts) + 1
    assert report.audit_chain_ok and report.audit_records == len(records)  # this report's own record follows it
    assert list(report.audit_problems) == []
    serialized = report.SerializeToString()
    assert not any(name.encode() in serialized for name in [*PEOPLE, *PEOPLE.values(), "Inspector", "88/2026", "theft"])

    # The oversight role reads nothing else: no search, no image, no list.
    for call in (lambda: board.GetSearch(pb.GetSearchRequest(search_id=first.search_id)),
                 lambda: board.ListSearches(pb.ListSearchesRequest()),
                 lambda: board.GetImage(pb.GetImageRequest(probe=pb.ProbeImageRef(search_id=first.search_id), purpose="audit")),
                 lambda: board.Identify(pb.IdentifyRequest(samples=[face("ben_afflek/2.jpg", "val")], galleries=["criminal_records"]))):
        assert code_of(call) == grpc.StatusCode.PERMISSION_DENIED


def test_who_may_read_a_search_and_its_probe(casework):
    server, s = casework
    a, b, checkpoint, intake = s["Inspector A"], s["Inspector B"], s["Hotel Eye"], s["Jail intake"]
    found = search(a, "elton_john/1.jpg", purpose="FIR 90/2026")
    probe = pb.GetImageRequest(probe=pb.ProbeImageRef(search_id=found.search_id, sample_index=0), purpose="FIR 90/2026")
    # Nothing awaits verification yet: the search is A's alone.
    assert code_of(lambda: b.GetSearch(pb.GetSearchRequest(search_id=found.search_id))) == grpc.StatusCode.PERMISSION_DENIED
    assert code_of(lambda: b.GetImage(probe)) == grpc.StatusCode.PERMISSION_DENIED
    for stub in (checkpoint, intake):
        assert code_of(lambda: stub.GetImage(probe)) == grpc.StatusCode.PERMISSION_DENIED
        assert code_of(lambda: stub.GetSearch(pb.GetSearchRequest(search_id=found.search_id))) == grpc.StatusCode.PERMISSION_DENIED
    # Checkpoint and intake searches make no search record.
    assert checkpoint.Identify(pb.IdentifyRequest(samples=[face("elton_john/1.jpg", "val")], galleries=["watchlist"])).search_id == ""
    # Once A proposes an identification, B (a potential verifier) may open the record and the probe.
    decide(a, found.search_id, found.candidates[0].subject_id, IDENTIFICATION)
    assert b.GetSearch(pb.GetSearchRequest(search_id=found.search_id)).search_id == found.search_id
    assert b.GetImage(probe).image == a.GetImage(probe).image
    assert code_of(lambda: a.GetImage(pb.GetImageRequest(probe=pb.ProbeImageRef(search_id=found.search_id, sample_index=3), purpose="x"))) == grpc.StatusCode.NOT_FOUND


def test_search_records_and_decisions_on_the_redis_store(server_factory, redis_server):
    server = server_factory("data", ["--store", "redis", "--redis-url", redis_server.url, "--require-durable"])
    enroll_people(server.stub())
    a = server.stub(create_key(server, "investigator", "--name", "R-A", "--store", "redis", "--redis-url", redis_server.url)["key"])
    b = server.stub(create_key(server, "investigator", "--name", "R-B", "--store", "redis", "--redis-url", redis_server.url)["key"])
    found = search(a, "mindy_kaling/1.jpg")
    top = found.candidates[0].subject_id
    assert decide(a, found.search_id, top, IDENTIFICATION).status == pb.CANDIDATE_AWAITING_VERIFICATION
    assert code_of(lambda: decide(a, found.search_id, top, IDENTIFICATION)) == grpc.StatusCode.PERMISSION_DENIED
    assert [i.candidate.candidate.subject_id for i in b.VerificationQueue(pb.VerificationQueueRequest()).items] == [top]
    assert decide(b, found.search_id, top, IDENTIFICATION, reason="second examiner agrees").status == pb.CANDIDATE_CONFIRMED
    probe = a.GetImage(pb.GetImageRequest(probe=pb.ProbeImageRef(search_id=found.search_id), purpose="FIR 88/2026"))
    assert Image.open(io.BytesIO(probe.image)).format == "JPEG"
    # The record survives a restart of the server (it lives in Redis, not in the process).
    server.stop()
    server.start()
    again = server.stub(create_key(server, "supervisor", "--store", "redis", "--redis-url", redis_server.url)["key"])
    record = again.GetSearch(pb.GetSearchRequest(search_id=found.search_id))
    status = {c.candidate.subject_id: c.status for c in record.candidates}
    assert status[top] == pb.CANDIDATE_CONFIRMED and len(record.candidates[0].decisions) == 2
