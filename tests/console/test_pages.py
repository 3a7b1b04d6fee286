"""Pages the browser story does not visit: search lists, a supervisor's view of everyone's, the CSV export."""

from __future__ import annotations

import csv
import io

from tests.console.conftest import FACES, csrf_of, needs_faces, signed_in_client


@needs_faces
def test_search_lists_are_ones_own_and_a_supervisor_sees_everyones(stack):
    investigator = signed_in_client(stack, "inv.bilal")
    csrf = csrf_of(investigator.get("/search").text)
    photo = (FACES / "val" / "madonna" / "1.jpg").read_bytes()
    made = investigator.post("/search", data={"csrf": csrf, "purpose": "case 77/2026 pages", "gallery": ["criminal_records"]},
                             files={"face": ("m.jpg", photo, "image/jpeg")})
    assert "/searches/" in str(made.url)
    assert "case 77/2026 pages" in investigator.get("/searches").text
    assert "case 77/2026 pages" not in signed_in_client(stack, "inv.asad").get("/searches").text
    supervisor = signed_in_client(stack, "sup.chaudhry")
    assert "case 77/2026 pages" not in supervisor.get("/searches").text
    assert "case 77/2026 pages" in supervisor.get("/searches?everyone=1").text
    assert supervisor.get(str(made.url).replace(stack.url, "")).status_code == 200  # and may open it


@needs_faces
def test_oversight_exports_csv_without_names_or_references(stack):
    investigator = signed_in_client(stack, "inv.asad")
    csrf = csrf_of(investigator.get("/search").text)
    photo = (FACES / "val" / "elton_john" / "1.jpg").read_bytes()
    investigator.post("/search", data={"csrf": csrf, "purpose": "FIR 5/2026 csv", "gallery": ["criminal_records"]},
                      files={"face": ("e.jpg", photo, "image/jpeg")})
    overseer = signed_in_client(stack, "ovs.dar")
    exported = overseer.get("/oversight.csv")
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    assert "attachment" in exported.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(exported.text)))
    assert rows[0] == ["week", "purpose_kind", "role", "gallery", "searches", "searches_with_hits", "identifications",
                       "exclusions", "inconclusive"]
    assert all(len(r) == 9 for r in rows)
    assert any(r[1] == "FIR" and r[2] == "investigator" and r[3] == "criminal_records" and int(r[4]) >= 1 for r in rows[1:])
    assert "/2026" not in exported.text and "Madonna" not in exported.text and "Ben Afflek" not in exported.text
