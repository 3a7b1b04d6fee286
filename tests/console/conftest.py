"""A real server and a real console on loopback, with console users of every role."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from matcher.store.sqlite import SQLiteStore
from shanakht.v1 import identity_pb2 as pb
from tests.conftest import DATA, REPO, ServerProcess
from transport.sessions import create_user

FACES = DATA / "face" / "five_celebrities" / "images" / "Resources" / "Faces"
PASSWORD = "s3cret-console-pass"
#: user name → role; every console test module gets these.
USERS = {"inv.asad": "investigator", "inv.bilal": "investigator", "sup.chaudhry": "supervisor", "ovs.dar": "oversight",
         "int.ejaz": "intake", "cam.hotel": "checkpoint", "inv.locked": "investigator"}
needs_faces = pytest.mark.skipif(not FACES.is_dir(), reason=f"face photos not found under {FACES}; set SHANAKHT_DATA to the shared data folder")


@dataclass
class ConsoleProcess:
    """``shanakht console`` as a subprocess in front of ``server``."""

    server: ServerProcess
    args: list[str] = field(default_factory=list)
    proc: subprocess.Popen | None = None
    url: str = ""

    def start(self, timeout: float = 30.0) -> "ConsoleProcess":
        log = open(self.server.data_dir.parent / "console.log", "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cli", "console", "--server", self.server.address, "--host", "127.0.0.1", "--port", "0", *self.args],
            stdout=subprocess.PIPE, stderr=log, cwd=REPO,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            match = re.search(rb"console on (http://[\d.]+:\d+)", line)
            if match:
                self.url = match.group(1).decode()
                return self
            if self.proc.poll() is not None:
                break
        raise RuntimeError("console did not start: " + (self.server.data_dir.parent / "console.log").read_text()[-2000:])

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@dataclass
class Stack:
    """The server, the console, and how to reach them."""

    server: ServerProcess
    console: ConsoleProcess

    @property
    def url(self) -> str:
        return self.console.url


def add_users(server: ServerProcess) -> None:
    store = SQLiteStore(server.data_dir / "shanakht.sqlite3")
    try:
        for user, role in USERS.items():
            create_user(store, user, role, PASSWORD)
    finally:
        store.close()


def enrol_people(server: ServerProcess) -> None:
    """A wanted person with two photos in criminal_records (images kept there), and strangers."""
    stub = server.stub()
    people = {"CR-0001": "Ben Afflek", "CR-0002": "Elton John", "CR-0003": "Madonna", "CR-0004": "Mindy Kaling"}
    for subject, folder in people.items():
        photos = [FACES / "train" / folder / name for name in ("1.jpg", "2.jpg")]
        stub.Enroll(pb.EnrollRequest(gallery="criminal_records", subject_id=subject, metadata={"name": folder},
                                     samples=[pb.Sample(face=pb.FaceImage(image=p.read_bytes())) for p in photos]), timeout=120)


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    """One server with enrolled people and users, and one console (idle time-out 20 s) in front of it.

    Shared by the console's test modules (a server start and the enrolments cost seconds each): each
    test uses its own users, subjects or purposes, and counts changes rather than totals."""
    root = tmp_path_factory.mktemp("console")
    server = ServerProcess(root / "data").start()
    add_users(server)
    if FACES.is_dir():
        enrol_people(server)
    console = ConsoleProcess(server, ["--idle-timeout-s", "20"]).start()
    yield Stack(server, console)
    console.stop()
    server.kill()


CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "the page has no CSRF token"
    return found.group(1)


def signed_in_client(stack: Stack, user: str, password: str = PASSWORD) -> httpx.Client:
    """An HTTP client (a browser without one) signed in as ``user``."""
    client = httpx.Client(base_url=stack.url, follow_redirects=True, timeout=120)
    page = client.get("/signin")
    response = client.post("/signin", data={"user": user, "password": password, "csrf": csrf_of(page.text)})
    assert response.status_code == 200 and 'id="signout"' in response.text, response.text[-1500:]
    return client
