"""De-duplication runs over gRPC on a real server: progress to DONE, report, adjudication, access, bad input, kill -9.

Subjects are face templates (random identities, the same identity's second sample a noisy copy),
so the gallery can be made large enough for a run to be killed half-way; the library tests
(``tests/matcher/test_deduplication.py``) measure recall and precision on real photos.
"""

from __future__ import annotations

import grpc
import pytest

from shanakht.v1 import identity_pb2 as pb
from tests.conftest import noisy, template_sample, unit_vectors
import json

from tests.server.test_access import cli, create_key

PEOPLE, DUPLICATED = 240, 24


def _seed(stub, gallery: str) -> set[tuple[str, str]]:
    """PEOPLE identities as P###, the first DUPLICATED again as D### (a noisy second sample); returns the true pairs."""
    stub.CreateGallery(pb.CreateGalleryRequest(name=gallery))
    people = unit_vectors(PEOPLE, seed=31)
    again = noisy(people[:DUPLICATED], sigma=0.3, seed=32)

    def requests():
        for i, v in enumerate(people):
            yield pb.EnrollRequest(gallery=gallery, subject_id=f"P{i:03d}", samples=[template_sample(v)])
        for i, v in enumerate(again):
            yield pb.EnrollRequest(gallery=gallery, subject_id=f"D{i:03d}", samples=[template_sample(v)])

    for response in stub.EnrollStream(requests()):
        assert response.status_code == 0, response.status_message
    return {(f"D{i:03d}", f"P{i:03d}") for i in range(DUPLICATED)}


def _follow(stub, job_id: str) -> list[pb.DeduplicationJob]:
    return list(stub.WatchDeduplication(pb.DeduplicationJobRequest(job_id=job_id), timeout=60))


def _pairs(report: pb.DeduplicationReport) -> dict[tuple[str, str], float]:
    return {(p.subject_a, p.subject_b): round(p.score, 4) for p in report.pairs}


def test_a_run_over_grpc_finds_the_pairs_and_they_are_adjudicable(server_factory):
    server = server_factory()
    admin = server.stub()
    truth = _seed(admin, "merge")
    job = admin.StartDeduplication(pb.StartDeduplicationRequest(gallery="merge", purpose="merger audit 7/2026"))
    assert job.state == pb.DEDUPLICATION_RUNNING and job.min_score == pytest.approx(4.0)
    updates = _follow(admin, job.job_id)
    assert updates[-1].state == pb.DEDUPLICATION_DONE
    assert updates[-1].subjects_done == updates[-1].subjects_total == PEOPLE + DUPLICATED
    report = admin.GetDeduplicationReport(pb.DeduplicationJobRequest(job_id=job.job_id))
    found = set(_pairs(report))
    assert found == truth  # noisy copies score far above 4, strangers far below
    assert report.job.pairs_found == len(truth)
    assert {tuple(c.members) for c in report.clusters} == {(f"merge/{a}", f"merge/{b}") for a, b in truth}
    # Adjudication: the pair's search record holds it as a candidate; RecordDecision works on it unchanged.
    pair = report.pairs[0]
    record = admin.GetSearch(pb.GetSearchRequest(search_id=pair.search_id))
    assert [c.candidate.subject_id for c in record.candidates] == [pair.subject_b]
    decided = admin.RecordDecision(pb.RecordDecisionRequest(
        search_id=pair.search_id, gallery=pair.gallery_b, subject_id=pair.subject_b, kind=pb.DECISION_IDENTIFICATION,
        reason="same face, two record numbers"))
    assert decided.status == pb.CANDIDATE_AWAITING_VERIFICATION
    listed = admin.ListDeduplicationJobs(pb.ListDeduplicationJobsRequest())
    assert [j.job_id for j in listed.jobs] == [job.job_id]
    with pytest.raises(grpc.RpcError) as error:  # finished: nothing to cancel
        admin.CancelDeduplication(pb.DeduplicationJobRequest(job_id=job.job_id))
    assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION

    # Starting (and refused cancelling) are in the audit log, with the run's id.
    from matcher.store.sqlite import SQLiteStore

    audit = [r.data for r in SQLiteStore(server.data_dir / "shanakht.sqlite3").audit_records()]
    started = [p for p in audit if p.get("rpc") == "StartDeduplication"]
    assert started and started[0]["job_id"] == job.job_id and started[0]["purpose"] == "merger audit 7/2026"
    assert any(p.get("rpc") == "CancelDeduplication" and p["status"] == "FAILED_PRECONDITION" for p in audit)

    # The CLI: start follows the run to its end (progress on standard error), report and list read it.
    common = ("--server", server.address, "--api-key", server.admin_key, "--json")
    ran = json.loads(cli("dedup", "start", "merge", "--purpose", "cli run", *common))
    assert ran["state"] == "DEDUPLICATION_DONE" and int(ran["pairs_found"]) == len(truth)
    cli_report = json.loads(cli("dedup", "report", ran["job_id"], *common))
    assert {(p["subject_a"], p["subject_b"]) for p in cli_report["pairs"]} == truth
    assert len(json.loads(cli("dedup", "list", *common))["jobs"]) == 2

    # Bad input, each naming its field.
    for request, code, field in (
        (pb.StartDeduplicationRequest(gallery="merge"), grpc.StatusCode.INVALID_ARGUMENT, "purpose"),
        (pb.StartDeduplicationRequest(gallery="merge", against="merge", purpose="x"), grpc.StatusCode.INVALID_ARGUMENT, "against"),
        (pb.StartDeduplicationRequest(gallery="nope", purpose="x"), grpc.StatusCode.NOT_FOUND, "nope"),
    ):
        with pytest.raises(grpc.RpcError) as error:
            admin.StartDeduplication(request)
        assert error.value.code() == code and field in error.value.details()
    for call in (admin.GetDeduplicationReport, admin.CancelDeduplication):
        with pytest.raises(grpc.RpcError) as error:
            call(pb.DeduplicationJobRequest(job_id="d-unknown"))
        assert error.value.code() == grpc.StatusCode.NOT_FOUND

    # Access: supervisors read runs, never start or cancel them; other roles see nothing.
    supervisor = server.stub(create_key(server, "supervisor")["key"])
    assert supervisor.GetDeduplicationReport(pb.DeduplicationJobRequest(job_id=job.job_id)).job.job_id == job.job_id
    assert _follow(supervisor, job.job_id)[-1].state == pb.DEDUPLICATION_DONE
    for stub, rpcs in (
        (supervisor, ("StartDeduplication", "CancelDeduplication")),
        (server.stub(create_key(server, "investigator")["key"]), ("StartDeduplication", "ListDeduplicationJobs", "GetDeduplicationReport", "WatchDeduplication")),
    ):
        for rpc in rpcs:
            request = pb.StartDeduplicationRequest(gallery="merge", purpose="x") if rpc == "StartDeduplication" else (
                pb.ListDeduplicationJobsRequest() if rpc == "ListDeduplicationJobs" else pb.DeduplicationJobRequest(job_id=job.job_id))
            with pytest.raises(grpc.RpcError) as error:
                result = getattr(stub, rpc)(request)
                if rpc == "WatchDeduplication":
                    list(result)
            assert error.value.code() == grpc.StatusCode.PERMISSION_DENIED, rpc


def test_kill_9_mid_run_resumes_to_the_uninterrupted_pairs(server_factory):
    """One subject per checkpoint makes the run slow enough to be killed half-way; the restarted server finishes it."""
    reference = server_factory("reference")
    truth = _seed(reference.stub(), "merge")
    whole = reference.stub().StartDeduplication(pb.StartDeduplicationRequest(gallery="merge", purpose="reference"))
    _follow(reference.stub(), whole.job_id)
    expected = _pairs(reference.stub().GetDeduplicationReport(pb.DeduplicationJobRequest(job_id=whole.job_id)))
    assert set(expected) == truth

    server = server_factory("killed", ["--dedup-batch", "1", "--dedup-threads", "1"])
    _seed(server.stub(), "merge")
    job = server.stub().StartDeduplication(pb.StartDeduplicationRequest(gallery="merge", purpose="killed run"))
    seen = 0
    for update in server.stub().WatchDeduplication(pb.DeduplicationJobRequest(job_id=job.job_id), timeout=60):
        seen = update.subjects_done
        if seen >= (PEOPLE + DUPLICATED) // 3:
            break
    server.kill()
    server.start()
    stub = server.stub()
    final = _follow(stub, job.job_id)[-1]
    assert final.state == pb.DEDUPLICATION_DONE
    report = stub.GetDeduplicationReport(pb.DeduplicationJobRequest(job_id=job.job_id))
    assert _pairs(report) == expected  # none lost, none changed
    assert report.job.pairs_found == len(report.pairs) == len(expected)  # none counted twice
    assert seen < final.subjects_total  # it really was killed half-way
