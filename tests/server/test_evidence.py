"""Evidence images over gRPC: kept sealed per gallery, returned to the right roles only, erased with the subject.

A real server (SQLite, and Redis), real face photos and FVC prints from the shared data folder.
"""

from __future__ import annotations

import io
import json
import os
import sqlite3
import stat
from contextlib import closing

import grpc
import pytest
import redis
from PIL import Image

from enrollment.finger.image import decode_finger
from shanakht.v1 import identity_pb2 as pb
from tests.conftest import DATA, ServerProcess
from tests.finger_fixtures import DB1
from tests.server.test_access import create_key

CELEBRITIES = DATA / "face" / "five_celebrities" / "images" / "Resources" / "Faces"
PRINTS = DATA / "finger" / DB1
pytestmark = pytest.mark.skipif(
    not (CELEBRITIES / "train").is_dir() or not (PRINTS / "101_1.tif").is_file(),
    reason="face or finger data not found; set SHANAKHT_DATA to the shared data folder",
)
ROLES = ("investigator", "supervisor", "checkpoint", "intake", "oversight")


def face(name: str, subset: str = "train") -> pb.Sample:
    return pb.Sample(face=pb.FaceImage(image=(CELEBRITIES / subset / name).read_bytes()))


def finger(name: str, position: int = 2) -> pb.Sample:
    return pb.Sample(finger=pb.FingerImage(image=(PRINTS / f"{name}.tif").read_bytes(), position=position))


def code_of(call) -> grpc.StatusCode:
    try:
        call()
    except grpc.RpcError as error:
        return error.code()
    return grpc.StatusCode.OK


def sample_ref(gallery: str, subject: str, template_id: int, purpose: str = "FIR 12/2026") -> pb.GetImageRequest:
    return pb.GetImageRequest(sample=pb.SampleImageRef(gallery=gallery, subject_id=subject, template_id=template_id), purpose=purpose)


@pytest.fixture(scope="module")
def evidence_server(tmp_path_factory):
    server = ServerProcess(tmp_path_factory.mktemp("evidence") / "data").start()
    keys = {role: create_key(server, role)["key"] for role in ROLES}
    yield server, keys
    server.kill()


def test_key_file_is_private_and_a_loose_one_stops_the_server(evidence_server, tmp_path):
    server, _ = evidence_server
    path = server.data_dir / "evidence.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(path.read_bytes()) == 32
    loose = ServerProcess(tmp_path / "loose")
    loose.data_dir.mkdir(parents=True)
    (loose.data_dir / "evidence.key").write_bytes(os.urandom(32))
    os.chmod(loose.data_dir / "evidence.key", 0o644)
    with pytest.raises(RuntimeError) as refused:
        loose.start()
    assert "evidence key" in str(refused.value) and "chmod 600" in str(refused.value)


def test_galleries_retain_images_by_name_unless_told(evidence_server):
    server, _ = evidence_server
    admin = server.stub()
    listed = {g.name: g.retain_images for g in admin.ListGalleries(pb.ListGalleriesRequest()).galleries}
    assert listed == {"criminal_records": True, "inmates": True, "watchlist": False}
    assert admin.CreateGallery(pb.CreateGalleryRequest(name="ev-default")).retain_images is False
    assert admin.CreateGallery(pb.CreateGalleryRequest(name="ev-on", retain_images=True)).retain_images is True
    ack = admin.Enroll(pb.EnrollRequest(subject_id="W-1", gallery="watchlist", samples=[face("Madonna/1.jpg")]), timeout=120)
    subject = admin.GetSubject(pb.GetSubjectRequest(gallery="watchlist", subject_id="W-1"))
    assert [t.has_image for t in subject.templates] == [False]
    assert code_of(lambda: admin.GetImage(sample_ref("watchlist", "W-1", ack.template_ids[0]))) == grpc.StatusCode.NOT_FOUND


def test_investigator_gets_normalised_face_and_finger_images_back(evidence_server):
    server, keys = evidence_server
    admin = server.stub()
    ack = admin.Enroll(pb.EnrollRequest(subject_id="CR-1", gallery="criminal_records",
                                        samples=[face("Ben Afflek/1.jpg"), finger("101_1")]), timeout=120)
    subject = admin.GetSubject(pb.GetSubjectRequest(gallery="criminal_records", subject_id="CR-1"))
    assert [t.has_image for t in subject.templates] == [True, True]
    face_id, finger_id = ack.template_ids
    investigator = server.stub(keys["investigator"])

    kept_face = investigator.GetImage(sample_ref("criminal_records", "CR-1", face_id))
    original = Image.open(CELEBRITIES / "train" / "Ben Afflek" / "1.jpg")
    decoded = Image.open(io.BytesIO(kept_face.image))
    assert kept_face.media_type == "image/jpeg" and decoded.format == "JPEG"
    assert decoded.size == (kept_face.width, kept_face.height) and max(decoded.size) <= 640
    ratio = original.size[0] / original.size[1]
    assert abs(decoded.size[0] / decoded.size[1] - ratio) < 0.02  # shrunk, not distorted
    assert kept_face.modality == pb.MODALITY_FACE

    kept_print = investigator.GetImage(sample_ref("criminal_records", "CR-1", finger_id))
    print_image = Image.open(io.BytesIO(kept_print.image))
    at_500 = decode_finger((PRINTS / "101_1.tif").read_bytes())
    assert kept_print.media_type == "image/png" and print_image.mode == "L"
    assert print_image.size == (at_500.width, at_500.height) == (kept_print.width, kept_print.height)
    assert kept_print.modality == pb.MODALITY_FINGER and kept_print.finger_position == 2
    import numpy as np

    assert np.array_equal(np.asarray(print_image), at_500.gray)  # lossless: the print the minutiae were found on

    for role in ("supervisor",):
        assert server.stub(keys[role]).GetImage(sample_ref("criminal_records", "CR-1", face_id)).image == kept_face.image
    with pytest.raises(grpc.RpcError) as error:
        investigator.GetImage(sample_ref("criminal_records", "CR-1", face_id, purpose=" "))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and error.value.details().startswith("purpose")
    assert code_of(lambda: investigator.GetImage(sample_ref("criminal_records", "CR-1", 10**9))) == grpc.StatusCode.NOT_FOUND
    assert code_of(lambda: investigator.GetImage(pb.GetImageRequest(purpose="FIR 1"))) == grpc.StatusCode.INVALID_ARGUMENT


def test_image_refused_to_checkpoint_oversight_and_intake_outside_its_galleries(evidence_server):
    server, keys = evidence_server
    admin = server.stub()
    criminal = admin.Enroll(pb.EnrollRequest(subject_id="CR-2", gallery="criminal_records", samples=[face("Elton John/1.jpg")]), timeout=120)
    inmate = admin.Enroll(pb.EnrollRequest(subject_id="INM-1", gallery="inmates", samples=[face("Elton John/2.jpg")]), timeout=120)
    watch = create_key(server, "checkpoint", "--galleries", "watchlist,criminal_records")["key"]
    for key in (keys["checkpoint"], watch, keys["oversight"], keys["intake"]):
        got = code_of(lambda: server.stub(key).GetImage(sample_ref("criminal_records", "CR-2", criminal.template_ids[0])))
        assert got == grpc.StatusCode.PERMISSION_DENIED
    for key in (keys["checkpoint"], keys["oversight"]):
        assert code_of(lambda: server.stub(key).GetImage(sample_ref("inmates", "INM-1", inmate.template_ids[0]))) == grpc.StatusCode.PERMISSION_DENIED
    # Intake sees its own galleries' images (duplicate candidates side by side at intake), for a stated purpose.
    kept = server.stub(keys["intake"]).GetImage(sample_ref("inmates", "INM-1", inmate.template_ids[0], purpose="intake 2026-0001"))
    assert Image.open(io.BytesIO(kept.image)).size == (kept.width, kept.height)
    # The refusals are audited, like the images shown.
    exported = json.loads("[" + ",".join(_audit_lines(server)) + "]")
    refused = [r for r in exported if r["rpc"] == "GetImage" and r["status"] == "PERMISSION_DENIED"]
    assert len(refused) >= 6 and all(r["subjects"] for r in refused)


def _audit_lines(server) -> list[str]:
    from tests.server.test_access import cli

    return [line for line in cli("audit", "export", "--data-dir", str(server.data_dir)).splitlines() if line.strip()]


def _files_contain(folder, needle: bytes) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.startswith("shanakht.sqlite3") and needle in p.read_bytes()]


def test_delete_subject_erases_the_image_from_the_sqlite_files(evidence_server):
    server, keys = evidence_server
    admin = server.stub()
    ack = admin.Enroll(pb.EnrollRequest(subject_id="CR-DEL", gallery="criminal_records", samples=[face("Jerry Seinfield/1.jpg")]), timeout=120)
    with closing(sqlite3.connect(f"file:{server.data_dir / 'shanakht.sqlite3'}?mode=ro", uri=True)) as db:
        (sealed,) = db.execute("SELECT sealed FROM sample_images WHERE template_id = ?", (ack.template_ids[0],)).fetchone()
    needle = bytes(sealed[200:264])  # 64 bytes of ciphertext: no other data repeats them by chance
    assert _files_contain(server.data_dir, needle), "the sealed image must be on disk before the delete"
    assert Image.open(io.BytesIO(admin.GetImage(sample_ref("criminal_records", "CR-DEL", ack.template_ids[0])).image))

    # Replacing the enrolment erases the old image too.
    again = admin.Enroll(pb.EnrollRequest(subject_id="CR-DEL", gallery="criminal_records", samples=[face("Jerry Seinfield/2.jpg")],
                                          replace=True), timeout=120)
    assert _files_contain(server.data_dir, needle) == []
    with closing(sqlite3.connect(f"file:{server.data_dir / 'shanakht.sqlite3'}?mode=ro", uri=True)) as db:
        (sealed,) = db.execute("SELECT sealed FROM sample_images WHERE template_id = ?", (again.template_ids[0],)).fetchone()
    needle = bytes(sealed[200:264])
    assert _files_contain(server.data_dir, needle)

    admin.DeleteSubject(pb.DeleteSubjectRequest(gallery="criminal_records", subject_id="CR-DEL", reason="court order 5/2026"))
    assert _files_contain(server.data_dir, needle) == []
    assert code_of(lambda: admin.GetImage(sample_ref("criminal_records", "CR-DEL", again.template_ids[0]))) == grpc.StatusCode.NOT_FOUND


def _redis_holds(client: redis.Redis, needle: bytes) -> list[bytes]:
    found = []
    for key in client.scan_iter(count=1000):
        kind = client.type(key)
        values = [client.get(key)] if kind == b"string" else list(client.hgetall(key).values()) if kind == b"hash" else []
        found += [key for v in values if v and needle in v]
    return found


def test_redis_store_keeps_returns_and_erases_images(server_factory, redis_server):
    server = server_factory("data", ["--store", "redis", "--redis-url", redis_server.url, "--require-durable"])
    admin = server.stub()
    ack = admin.Enroll(pb.EnrollRequest(subject_id="R-1", gallery="inmates", samples=[face("Madonna/2.jpg"), finger("102_1")]), timeout=120)
    subject = admin.GetSubject(pb.GetSubjectRequest(gallery="inmates", subject_id="R-1"))
    assert [t.has_image for t in subject.templates] == [True, True]
    kept = admin.GetImage(sample_ref("inmates", "R-1", ack.template_ids[1]))
    assert Image.open(io.BytesIO(kept.image)).size == (kept.width, kept.height)
    client = redis.Redis.from_url(redis_server.url)
    needles = [client.get(f"shanakht:image:{t}")[200:264] for t in ack.template_ids]
    assert all(_redis_holds(client, n) for n in needles)
    admin.DeleteSubject(pb.DeleteSubjectRequest(gallery="inmates", subject_id="R-1", reason="released, record expunged"))
    assert [n for n in needles if _redis_holds(client, n)] == []
    assert code_of(lambda: admin.GetImage(sample_ref("inmates", "R-1", ack.template_ids[0]))) == grpc.StatusCode.NOT_FOUND


def test_rotate_key_reseals_every_image_and_retires_the_old_key(server_factory):
    from tests.server.test_access import cli

    server = server_factory("data")
    admin = server.stub()
    ack = admin.Enroll(pb.EnrollRequest(subject_id="ROT-1", gallery="inmates", samples=[face("Mindy Kaling/1.jpg"), finger("103_1")]),
                       timeout=120)
    investigator = server.stub(create_key(server, "investigator")["key"])
    found = investigator.Identify(pb.IdentifyRequest(samples=[face("mindy_kaling/1.jpg", "val")], galleries=["inmates"], purpose="FIR 3"))
    before = [admin.GetImage(sample_ref("inmates", "ROT-1", t)).image for t in ack.template_ids]
    probe_ref = pb.GetImageRequest(probe=pb.ProbeImageRef(search_id=found.search_id), purpose="FIR 3")
    probe_before = admin.GetImage(probe_ref).image
    old_key = (server.data_dir / "evidence.key").read_bytes()
    with closing(sqlite3.connect(f"file:{server.data_dir / 'shanakht.sqlite3'}?mode=ro", uri=True)) as db:
        old_sealed = [bytes(row[0]) for row in db.execute("SELECT sealed FROM sample_images UNION ALL SELECT sealed FROM search_probes")]
    assert len(old_sealed) == 3
    server.stop()

    out = json.loads(cli("evidence", "rotate-key", "--data-dir", str(server.data_dir), "--json"))
    assert out["resealed"] == 3
    key = server.data_dir / "evidence.key"
    assert key.read_bytes() != old_key and stat.S_IMODE(key.stat().st_mode) == 0o600
    assert not (server.data_dir / "evidence.key.next").exists()
    with closing(sqlite3.connect(f"file:{server.data_dir / 'shanakht.sqlite3'}?mode=ro", uri=True)) as db:
        new_sealed = [bytes(row[0]) for row in db.execute("SELECT sealed FROM sample_images UNION ALL SELECT sealed FROM search_probes")]
    assert len(new_sealed) == 3 and not set(new_sealed) & set(old_sealed)
    assert [s for s in old_sealed if _files_contain(server.data_dir, s[200:264])] == []  # the old ciphertext is gone too

    server.start()
    admin = server.stub()
    assert [admin.GetImage(sample_ref("inmates", "ROT-1", t)).image for t in ack.template_ids] == before
    assert admin.GetImage(probe_ref).image == probe_before
