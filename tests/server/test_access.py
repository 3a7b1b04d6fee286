"""Access control, audit and TLS against a real server with access control on (the default)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time

import grpc
import pytest

from shanakht.client import connect
from shanakht.v1 import identity_pb2 as pb
from shanakht.v1 import identity_pb2_grpc as pb_grpc
from tests.conftest import REPO, template_sample, unit_vectors

ROLES = ["checkpoint", "investigator", "intake", "admin"]
ALLOWED = {
    "checkpoint": {"Identify"},
    "investigator": {"Identify", "Verify", "GetSubject", "ExtractTemplate", "ListGalleries"},
    "intake": {"Enroll", "Verify", "Identify", "ExtractTemplate", "GetSubject"},
    "admin": {"Enroll", "EnrollStream", "Identify", "Verify", "ExtractTemplate", "GetSubject", "DeleteSubject",
              "CreateGallery", "ListGalleries", "GalleryStats"},
}
SCOPE = {"checkpoint": {"watchlist"}, "intake": {"inmates"}, "investigator": None, "admin": None}  # None: every gallery
DENIED = {grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED}


def cli(*args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "cli", *args], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def create_key(server, role: str, *extra: str) -> dict:
    return json.loads(cli("keys", "create", "--data-dir", str(server.data_dir), "--role", role, "--json", *extra))


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    from tests.conftest import ServerProcess

    server = ServerProcess(tmp_path_factory.mktemp("secured") / "data").start()
    admin = server.stub()
    vector = unit_vectors(1, seed=77)[0]
    for gallery in ("watchlist", "inmates", "criminal_records"):
        admin.Enroll(pb.EnrollRequest(subject_id="P1", gallery=gallery, samples=[template_sample(vector)],
                                      metadata={"name": "Known Person", "alert_level": "red"}))
    keys = {role: create_key(server, role)["key"] for role in ROLES}
    yield server, keys, vector
    server.kill()


def calls(gallery: str, vector, n: int):
    """One minimal, valid request per RPC, aimed at ``gallery`` (names unique per call where it matters)."""
    sample = template_sample(vector)
    return {
        "Enroll": lambda s: s.Enroll(pb.EnrollRequest(subject_id=f"N{n}", gallery=gallery, samples=[sample])),
        "EnrollStream": lambda s: list(s.EnrollStream(iter([pb.EnrollRequest(subject_id=f"M{n}", gallery=gallery, samples=[sample])]))),
        "Identify": lambda s: s.Identify(pb.IdentifyRequest(samples=[sample], galleries=[gallery], purpose="FIR 1/2026")),
        "Verify": lambda s: s.Verify(pb.VerifyRequest(subject_id="P1", gallery=gallery, samples=[sample], purpose="FIR 1/2026")),
        "ExtractTemplate": lambda s: s.ExtractTemplate(pb.ExtractTemplateRequest(sample=sample)),
        "GetSubject": lambda s: s.GetSubject(pb.GetSubjectRequest(subject_id="P1", gallery=gallery, purpose="FIR 1/2026")),
        "DeleteSubject": lambda s: s.DeleteSubject(pb.DeleteSubjectRequest(subject_id=f"absent{n}", gallery=gallery)),
        "CreateGallery": lambda s: s.CreateGallery(pb.CreateGalleryRequest(name=f"new-{gallery}-{n}")),
        "ListGalleries": lambda s: s.ListGalleries(pb.ListGalleriesRequest()),
        "GalleryStats": lambda s: s.GalleryStats(pb.GalleryStatsRequest(galleries=[gallery])),
    }


def outcome(call, stub) -> grpc.StatusCode:
    try:
        call(stub)
        return grpc.StatusCode.OK
    except grpc.RpcError as error:
        return error.code()


def test_authorization_matrix(secured):
    server, keys, _ = secured
    vector = unit_vectors(1, seed=78)[0]  # not P1's: the matrix enrols its own subjects
    n = 0
    for role in ROLES:
        stub = server.stub(keys[role])
        for gallery in ("watchlist", "inmates"):
            in_scope = SCOPE[role] is None or gallery in SCOPE[role]
            for rpc, call in calls(gallery, vector, n).items():
                n += 1
                got = outcome(call, stub)
                gallery_free = rpc in ("ExtractTemplate",)
                scope_free_ok = rpc in ALLOWED[role] and (in_scope or gallery_free)
                if rpc == "ListGalleries":  # lists every gallery: needs an unscoped role
                    scope_free_ok = rpc in ALLOWED[role] and SCOPE[role] is None
                if rpc == "CreateGallery":  # the new gallery is outside any scoped key
                    scope_free_ok = rpc in ALLOWED[role] and SCOPE[role] is None
                if scope_free_ok:
                    assert got not in DENIED, f"{role} {rpc} {gallery}: {got}"
                else:
                    assert got == grpc.StatusCode.PERMISSION_DENIED, f"{role} {rpc} {gallery}: {got}"
    # No key, a malformed key, an unknown key: UNAUTHENTICATED for every RPC.
    for key in (None, "garbage", "shk.k000000000000.wrongsecret"):
        stub = server.stub(key)
        for rpc, call in calls("watchlist", vector, 999).items():
            assert outcome(call, stub) == grpc.StatusCode.UNAUTHENTICATED, (key, rpc)


def test_checkpoint_sees_no_metadata_but_an_alert_level(secured):
    server, keys, vector = secured
    found = server.stub(keys["checkpoint"]).Identify(pb.IdentifyRequest(samples=[template_sample(vector)], galleries=["watchlist"]))
    top = found.candidates[0]
    assert (top.subject_id, top.gallery, top.hit, top.alert_level) == ("P1", "watchlist", True, "red")
    assert all(c.alert_level == "" for c in found.candidates if not c.hit)
    assert len(found.candidates) > 1 and all(len(c.metadata) == 0 for c in found.candidates)
    as_investigator = server.stub(keys["investigator"]).Identify(
        pb.IdentifyRequest(samples=[template_sample(vector)], galleries=["watchlist"], purpose="FIR 7/2026")
    )
    assert as_investigator.candidates[0].metadata["name"] == "Known Person"


def test_investigator_needs_a_purpose(secured):
    server, keys, vector = secured
    stub = server.stub(keys["investigator"])
    for call in (
        lambda: stub.Identify(pb.IdentifyRequest(samples=[template_sample(vector)], galleries=["watchlist"], purpose="  ")),
        lambda: stub.GetSubject(pb.GetSubjectRequest(subject_id="P1", gallery="watchlist")),
    ):
        with pytest.raises(grpc.RpcError) as error:
            call()
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and error.value.details().startswith("purpose:")


def test_revoked_key_is_refused_within_seconds(secured):
    server, _, vector = secured
    key = create_key(server, "investigator")
    stub = server.stub(key["key"])
    stub.ListGalleries(pb.ListGalleriesRequest())
    cli("keys", "revoke", key["key_id"], "--data-dir", str(server.data_dir))
    deadline = time.monotonic() + 10
    while outcome(lambda s: s.ListGalleries(pb.ListGalleriesRequest()), stub) != grpc.StatusCode.UNAUTHENTICATED:
        assert time.monotonic() < deadline, "revocation did not take effect"
        time.sleep(0.2)
    listed = json.loads(cli("keys", "list", "--data-dir", str(server.data_dir), "--json"))
    assert next(k for k in listed if k["key_id"] == key["key_id"])["revoked"]


def test_rate_limit_per_principal(server_factory):
    server = server_factory("data", ["--rate-limit", "5"])  # after the fixture's "--rate-limit 0": last flag wins
    stub = server.stub()
    codes = [outcome(lambda s: s.ListGalleries(pb.ListGalleriesRequest()), stub) for _ in range(40)]
    assert codes[0] == grpc.StatusCode.OK
    assert grpc.StatusCode.RESOURCE_EXHAUSTED in codes
    time.sleep(1.0)
    assert outcome(lambda s: s.ListGalleries(pb.ListGalleriesRequest()), stub) == grpc.StatusCode.OK


def audit_records(server) -> list[dict]:
    return [json.loads(line) for line in cli("audit", "export", "--data-dir", str(server.data_dir)).splitlines()]


def test_audit_records_every_call_and_detects_tampering(server_factory):
    server = server_factory("data")
    admin = server.stub()
    key = create_key(server, "investigator", "--name", "Inspector Test")
    investigator = server.stub(key["key"])
    vector = unit_vectors(1, seed=5)[0]
    admin.Enroll(pb.EnrollRequest(subject_id="A1", gallery="watchlist", samples=[template_sample(vector)]))
    investigator.Identify(pb.IdentifyRequest(samples=[template_sample(vector)], galleries=["watchlist"], purpose="FIR 42/2026"))
    investigator.Verify(pb.VerifyRequest(subject_id="A1", gallery="watchlist", samples=[template_sample(vector)], purpose="FIR 42/2026"))
    investigator.GetSubject(pb.GetSubjectRequest(subject_id="A1", gallery="watchlist", purpose="FIR 42/2026"))
    assert outcome(lambda s: s.DeleteSubject(pb.DeleteSubjectRequest(subject_id="A1", gallery="watchlist")), investigator) == grpc.StatusCode.PERMISSION_DENIED
    admin.DeleteSubject(pb.DeleteSubjectRequest(subject_id="A1", gallery="watchlist", reason="court order 9"))

    records = audit_records(server)
    rpcs = [(r["rpc"], r.get("name"), r["status"]) for r in records]
    assert rpcs[0][0] == "keys.create" and rpcs[1][0] == "keys.create"  # bootstrap admin, then the investigator key
    assert rpcs[2:] == [
        ("Enroll", "bootstrap-admin", "OK"),
        ("Identify", "Inspector Test", "OK"),
        ("Verify", "Inspector Test", "OK"),
        ("GetSubject", "Inspector Test", "OK"),
        ("DeleteSubject", "Inspector Test", "PERMISSION_DENIED"),
        ("DeleteSubject", "bootstrap-admin", "OK"),
    ]
    identify = records[3]
    assert identify["role"] == "investigator" and identify["purpose"] == "FIR 42/2026" and identify["galleries"] == ["watchlist"]
    assert identify["subjects"] == ["watchlist/A1"] and identify["scores"][0] > 4 and len(identify["probe_sha256"]) == 64
    assert records[-1]["purpose"] == "court order 9"
    assert "intact: 8 records" in cli("audit", "verify", "--data-dir", str(server.data_dir))
    server.stop()

    db = server.data_dir / "shanakht.sqlite3"

    def verify_output() -> tuple[int, str]:
        result = subprocess.run([sys.executable, "-m", "cli", "audit", "verify", "--data-dir", str(server.data_dir)],
                                capture_output=True, text=True, cwd=REPO, timeout=60)
        return result.returncode, result.stdout

    def tamper(sql: str, *args) -> None:
        with sqlite3.connect(db) as conn:
            conn.execute(sql, args)

    with sqlite3.connect(db) as conn:
        original = conn.execute("SELECT payload FROM audit WHERE sequence = 4").fetchone()[0]
    tamper("UPDATE audit SET payload = ? WHERE sequence = 4", original.replace("FIR 42/2026", "FIR 43/2026"))
    code, out = verify_output()
    assert code == 2 and "record 4 was edited" in out
    tamper("UPDATE audit SET payload = ? WHERE sequence = 4", original)
    assert verify_output()[0] == 0

    with sqlite3.connect(db) as conn:
        row5 = conn.execute("SELECT sequence, prev_hash, payload, hash FROM audit WHERE sequence = 5").fetchone()
    tamper("DELETE FROM audit WHERE sequence = 5")
    code, out = verify_output()
    assert code == 2 and "record 5 missing" in out
    tamper("INSERT INTO audit (sequence, prev_hash, payload, hash) VALUES (?, ?, ?, ?)", *row5)
    assert verify_output()[0] == 0

    tamper("UPDATE audit SET sequence = sequence + 1000 WHERE sequence >= 6")  # make room, then insert a forged record 6
    tamper("UPDATE audit SET sequence = sequence - 999 WHERE sequence >= 1006")
    from matcher.store.audit import canonical, chain_hash

    forged = canonical({"rpc": "Identify", "name": "nobody"})
    tamper("INSERT INTO audit (sequence, prev_hash, payload, hash) VALUES (6, ?, ?, ?)", row5[3], forged, chain_hash(6, row5[3], forged))
    code, out = verify_output()
    assert code == 2 and "record 7 does not link" in out


def openssl(*args: str, cwd) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(directory, name: str) -> None:
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
            "-keyout", f"{name}.key", "-out", f"{name}.pem", cwd=directory)


def make_cert(directory, ca: str, name: str, san: str = "") -> None:
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=directory)
    extra = []
    if san:
        (directory / f"{name}.ext").write_text(f"subjectAltName={san}\n")
        extra = ["-extfile", f"{name}.ext"]
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key", "-CAcreateserial",
            "-days", "2", "-out", f"{name}.pem", *extra, cwd=directory)


def test_mutual_tls(server_factory, tmp_path):
    pki = tmp_path / "pki"
    pki.mkdir()
    make_ca(pki, "test-ca")
    make_ca(pki, "rogue-ca")
    make_cert(pki, "test-ca", "localhost", san="DNS:localhost,IP:127.0.0.1")
    make_cert(pki, "test-ca", "hotel-eye-01")
    make_cert(pki, "rogue-ca", "intruder")
    server = server_factory("data", ["--tls-cert", str(pki / "localhost.pem"), "--tls-key", str(pki / "localhost.key"),
                                     "--client-ca", str(pki / "test-ca.pem")])
    create_key(server, "checkpoint", "--cert-subject", "hotel-eye-01")
    address = f"localhost:{server.port}"
    request = pb.IdentifyRequest(samples=[template_sample(unit_vectors(1)[0])], galleries=["watchlist"])

    def stub(cert: str | None, key: str | None = None):
        return pb_grpc.IdentityServiceStub(connect(address, key, tls_ca=str(pki / "test-ca.pem"),
                                                   tls_cert=str(pki / f"{cert}.pem") if cert else "",
                                                   tls_key=str(pki / f"{cert}.key") if cert else ""))

    assert stub("hotel-eye-01").Identify(request, timeout=10) is not None  # the certificate is the credential
    assert outcome(lambda s: s.Identify(pb.IdentifyRequest(samples=request.samples, galleries=["inmates"]), timeout=10),
                   stub("hotel-eye-01")) == grpc.StatusCode.PERMISSION_DENIED
    for refused in (stub(None, server.admin_key), stub("intruder")):  # no client certificate; one from another CA
        assert outcome(lambda s: s.Identify(request, timeout=10), refused) == grpc.StatusCode.UNAVAILABLE
    plaintext = pb_grpc.IdentityServiceStub(connect(address, server.admin_key))
    assert outcome(lambda s: s.Identify(request, timeout=10), plaintext) == grpc.StatusCode.UNAVAILABLE
