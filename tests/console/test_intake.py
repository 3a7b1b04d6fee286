"""Prison intake in the console: enrol with the duplicate check, see the duplicate beside the new record, verify 1:1."""

from __future__ import annotations

import re

import pytest

from shanakht.v1 import identity_pb2 as pb
from tests.console.conftest import csrf_of, signed_in_client
from tests.conftest import DATA

ATT = DATA / "face" / "att_orl" / "images" / "resources" / "att_faces"
pytestmark = pytest.mark.skipif(not ATT.is_dir(), reason=f"AT&T faces not found under {ATT}; set SHANAKHT_DATA to the shared data folder")


def enrol(client, subject: str, photo, name: str = ""):
    csrf = csrf_of(client.get("/intake").text)
    return client.post("/intake/enroll", data={"csrf": csrf, "subject": subject, "gallery": "inmates", "name": name},
                       files={"face": (photo.name, photo.read_bytes(), "image/x-portable-graymap")})


def test_enrol_shows_the_duplicate_beside_the_new_inmate_and_verify_matches(stack):
    client = signed_in_client(stack, "int.ejaz")
    first = enrol(client, "INM-2026-0101", ATT / "s1" / "1.pgm", "First Inmate")
    assert first.status_code == 200 and "Enrolled INM-2026-0101" in first.text and "No possible duplicates." in first.text
    second = enrol(client, "INM-2026-0102", ATT / "s1" / "2.pgm")
    assert second.status_code == 200 and "Possible duplicates" in second.text
    duplicate = second.text[second.text.index('class="pair duplicate"'):]
    assert "INM-2026-0101" in duplicate and "INM-2026-0102" in duplicate
    # The new inmate's kept image is shown from the server (intake may see images of its own gallery).
    new_image = re.search(r'src="(/image/template/inmates/INM-2026-0102/\d+\?purpose=[^"]+)"', duplicate)
    assert new_image, duplicate[:1500]
    image = client.get(new_image.group(1).replace("&amp;", "&"))
    assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg" and image.content[:3] == b"\xff\xd8\xff"
    # ... and beside it the image of the inmate already enrolled under the other number.
    existing = re.search(r'src="(/image/subject/inmates/INM-2026-0101\?purpose=[^"]+)"', duplicate)
    assert existing, duplicate[:1500]
    image = client.get(existing.group(1).replace("&amp;", "&"))
    assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg" and image.content[:3] == b"\xff\xd8\xff"

    csrf = csrf_of(client.get("/intake").text)
    verified = client.post("/intake/verify", data={"csrf": csrf, "subject": "INM-2026-0101", "gallery": "inmates"},
                           files={"face": ("3.pgm", (ATT / "s1" / "3.pgm").read_bytes(), "image/x-portable-graymap")})
    assert verified.status_code == 200 and re.search(r'id="verified">Match: score', verified.text)
    other = client.post("/intake/verify", data={"csrf": csrf, "subject": "INM-2026-0101", "gallery": "inmates"},
                        files={"face": ("1.pgm", (ATT / "s7" / "1.pgm").read_bytes(), "image/x-portable-graymap")})
    assert re.search(r'id="verified">No match: score', other.text)


def test_intake_outside_its_gallery_is_refused_and_nothing_is_stored(stack):
    client = signed_in_client(stack, "int.ejaz")
    csrf = csrf_of(client.get("/intake").text)
    refused = client.post("/intake/enroll", data={"csrf": csrf, "subject": "X-1", "gallery": "watchlist"},
                          files={"face": ("1.pgm", (ATT / "s2" / "1.pgm").read_bytes(), "image/x-portable-graymap")})
    assert refused.status_code == 403 and "The server refused the request" in refused.text
    missing = stack.server.stub().GalleryStats(pb.GalleryStatsRequest(galleries=["watchlist"]), timeout=30)
    assert missing.galleries[0].subjects == 0
