"""Console security over HTTP against a real console and server: CSRF, lock-out, cookies, CSP, roles, bad input."""

from __future__ import annotations

import io
import time

import httpx
import pytest
from PIL import Image
import warnings

with warnings.catch_warnings():  # Starlette 1.10 suggests httpx2; the httpx it was built on works the same here
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from console.app import ConsoleConfig, create_app
from console.sessions import COOKIE
from shanakht.v1 import identity_pb2 as pb
from tests.console.conftest import FACES, PASSWORD, csrf_of, needs_faces, signed_in_client

PHOTO = FACES / "val" / "ben_afflek" / "2.jpg"


def searches_of_everyone(stack) -> int:
    return len(stack.server.stub().ListSearches(pb.ListSearchesRequest(everyone=True, page_size=500), timeout=30).searches)


def search(client: httpx.Client, csrf: str | None, purpose: str = "FIR 9/2026", image: bytes | None = None, name: str = "probe.jpg"):
    data = {"purpose": purpose, "gallery": ["criminal_records"]}
    if csrf is not None:
        data["csrf"] = csrf
    return client.post("/search", data=data, files={"face": (name, image if image is not None else PHOTO.read_bytes(), "image/jpeg")})


@needs_faces
def test_a_form_without_or_with_a_wrong_csrf_token_is_refused_and_changes_nothing(stack):
    client = signed_in_client(stack, "inv.asad")
    csrf = csrf_of(client.get("/search").text)
    before = searches_of_everyone(stack)
    for token in (None, "forged-token", csrf[:-1] + ("A" if csrf[-1] != "A" else "B")):
        refused = search(client, token)
        assert refused.status_code == 403 and "security token" in refused.text
    assert searches_of_everyone(stack) == before  # nothing was searched, so nothing recorded

    # A real search, then a forged decision on it: refused, no decision recorded.
    made = search(client, csrf)
    assert made.status_code == 200 and "/searches/" in str(made.url)
    search_id = str(made.url).rsplit("/", 1)[1]
    forged = client.post(f"/searches/{search_id}/decide", data={"csrf": "nope", "gallery": "criminal_records", "subject_id": "CR-0001",
                                                               "kind": "identification", "reason": "looks alike"})
    assert forged.status_code == 403
    record = stack.server.stub().GetSearch(pb.GetSearchRequest(search_id=search_id), timeout=30)
    assert all(not c.decisions for c in record.candidates)
    # Signing out with a forged token does not sign out either.
    assert client.post("/signout", data={"csrf": "nope"}).status_code == 403
    assert 'id="signout"' in client.get("/search").text


def test_five_wrong_passwords_lock_the_account_with_a_clear_message(stack):
    client = httpx.Client(base_url=stack.url, follow_redirects=True, timeout=60)
    messages = []
    for _ in range(5):
        page = client.get("/signin")
        answer = client.post("/signin", data={"user": "inv.locked", "password": "wrong password!", "csrf": csrf_of(page.text)})
        assert answer.status_code == 401
        messages.append(answer.text)
    assert all("Unknown user or wrong password." in m for m in messages[:4])
    assert "locked" in messages[4]
    page = client.get("/signin")
    right = client.post("/signin", data={"user": "inv.locked", "password": PASSWORD, "csrf": csrf_of(page.text)})
    assert right.status_code == 401 and "This account is locked" in right.text and 'id="signout"' not in right.text


def test_session_cookie_is_signed_httponly_samesite_strict_and_pages_carry_a_strict_csp(stack):
    client = httpx.Client(base_url=stack.url, timeout=60)
    page = client.get("/signin")
    cookie = next(v for k, v in page.headers.multi_items() if k == "set-cookie" and v.startswith(COOKIE + "="))
    flags = [part.strip().lower() for part in cookie.split(";")]
    assert "httponly" in flags and "samesite=strict" in flags and "path=/" in flags
    assert "secure" not in flags  # plain HTTP on loopback; see the TLS case below
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp and "unsafe" not in csp and "script-src" not in csp
    assert page.headers["x-frame-options"] == "DENY" and page.headers["x-content-type-options"] == "nosniff"
    assert client.get("/static/console.css").headers["content-security-policy"] == csp
    assert "<script" not in page.text and "http://" not in page.text and "https://" not in page.text  # nothing from elsewhere

    # A cookie whose signature is altered is not a session: the browser is treated as new.
    value = cookie.split(";")[0].split("=", 1)[1]
    forged = httpx.Client(base_url=stack.url, timeout=60, cookies={COOKIE: value[:-2] + "xx"})
    assert forged.get("/search").status_code == 303


def test_over_tls_the_cookie_is_secure(stack):
    with TestClient(create_app(ConsoleConfig(server=stack.server.address, secure_cookies=True)), base_url="https://testserver") as client:
        cookie = client.get("/signin").headers["set-cookie"].lower()
    assert "secure" in [p.strip() for p in cookie.split(";")] and "httponly" in cookie


@needs_faces
def test_an_oversight_user_reaches_no_image(stack):
    investigator = signed_in_client(stack, "inv.asad")
    made = search(investigator, csrf_of(investigator.get("/search").text))
    search_id = str(made.url).rsplit("/", 1)[1]
    subject = stack.server.stub().GetSubject(pb.GetSubjectRequest(gallery="criminal_records", subject_id="CR-0001"), timeout=30)
    template_id = subject.templates[0].template_id
    urls = [f"/image/probe/{search_id}/0", "/image/subject/criminal_records/CR-0001?purpose=x",
            f"/image/template/criminal_records/CR-0001/{template_id}?purpose=x"]
    assert all(investigator.get(u).status_code == 200 for u in urls[:2])  # the images exist
    overseer = signed_in_client(stack, "ovs.dar")
    for url in urls:
        assert overseer.get(url).status_code in (403, 404), url
    assert overseer.get("/search").status_code == 403 and overseer.get("/oversight").status_code == 200


def test_a_checkpoint_user_is_refused_with_a_clear_message(stack):
    client = httpx.Client(base_url=stack.url, follow_redirects=True, timeout=60)
    page = client.get("/signin")
    answer = client.post("/signin", data={"user": "cam.hotel", "password": PASSWORD, "csrf": csrf_of(page.text)})
    assert answer.status_code == 403 and "The console is for people" in answer.text and 'id="signout"' not in answer.text
    assert str(client.get("/search").url).endswith("/signin")


@needs_faces
def test_bad_input_gets_a_clear_message_and_nothing_is_searched(stack):
    client = signed_in_client(stack, "inv.bilal")
    csrf = csrf_of(client.get("/search").text)
    before = searches_of_everyone(stack)
    no_purpose = search(client, csrf, purpose="  ")
    assert no_purpose.status_code == 400 and "State the purpose of this search" in no_purpose.text
    not_image = search(client, csrf, image=b"%PDF-1.7 this is a document", name="case.pdf")
    assert not_image.status_code == 400 and "“case.pdf” is not an image" in not_image.text
    blank = io.BytesIO()
    Image.new("RGB", (320, 240), (128, 128, 128)).save(blank, "JPEG")
    no_face = search(client, csrf, image=blank.getvalue(), name="wall.jpg")
    assert no_face.status_code == 400 and "The server refused the request" in no_face.text and "face" in no_face.text.lower()
    assert searches_of_everyone(stack) == before


def test_an_idle_session_ends_with_a_message(stack):
    with TestClient(create_app(ConsoleConfig(server=stack.server.address, idle_timeout_s=1.0))) as client:
        page = client.get("/signin")
        signed = client.post("/signin", data={"user": "int.ejaz", "password": PASSWORD, "csrf": csrf_of(page.text)})
        assert 'id="signout"' in signed.text
        time.sleep(1.5)
        after = client.get("/intake")
        assert str(after.url).endswith("/signin") and "Your session ended after a period without use" in after.text


@pytest.mark.parametrize("path", ["/search", "/queue", "/intake", "/oversight", "/oversight.csv", "/searches"])
def test_pages_need_a_signed_in_user(stack, path):
    answer = httpx.get(stack.url + path, timeout=30)
    assert answer.status_code == 303 and answer.headers["location"] == "/signin"
