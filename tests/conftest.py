"""Shared fixtures: a real ``shanakht serve`` process on a free loopback port, and its client."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from shanakht.client import connect
from enrollment.face import DIMENSION as DEFAULT_FACE_DIMENSION
from enrollment.face import MODEL_ID as DEFAULT_FACE_MODEL
from shanakht.v1 import identity_pb2 as pb
from shanakht.v1 import identity_pb2_grpc as pb_grpc

pytest_plugins = ["tests.finger_fixtures", "tests.redis_server"]

REPO = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("SHANAKHT_DATA", REPO.parent / "shared" / "data"))


def model_cache() -> Path:
    """The verified model cache the tests use: $SHANAKHT_MODEL_DIR, else the repo's .cache/models."""
    env = os.environ.get("SHANAKHT_MODEL_DIR")
    return Path(env) if env else REPO / ".cache" / "models"


def unit_vectors(n: int, dim: int = DEFAULT_FACE_DIMENSION, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def noisy(vectors: np.ndarray, sigma: float = 0.5, seed: int = 1) -> np.ndarray:
    """A same-identity sample: cosine to the original ≈ 1/sqrt(1+sigma²) (0.89 for sigma 0.5)."""
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal(vectors.shape).astype(np.float32) / np.sqrt(vectors.shape[1])
    out = vectors + sigma * noise
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def template_sample(vector: np.ndarray, model_id: str = DEFAULT_FACE_MODEL) -> pb.Sample:
    return pb.Sample(
        template=pb.Template(modality=pb.MODALITY_FACE, model_id=model_id, vector=np.asarray(vector, "<f4").tobytes())
    )


@dataclass
class ServerProcess:
    """A ``shanakht serve`` subprocess; restartable on the same data directory."""

    data_dir: Path
    extra_args: list[str] = field(default_factory=list)
    proc: subprocess.Popen | None = None
    port: int = 0
    log_path: Path | None = None
    key_dir: Path | None = None  # where the bootstrap admin key is (replicas share the first one's)

    def start(self, timeout: float = 60.0) -> "ServerProcess":
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}-server.log"
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cli", "serve", "--data-dir", str(self.data_dir), "--host", "127.0.0.1",
             "--port", "0", "--snapshot-interval-s", "0", "--log-format", "text", "--rate-limit", "0", *self.extra_args],
            stdout=subprocess.PIPE, stderr=log, cwd=REPO,
        )
        deadline = time.monotonic() + timeout
        line = b""
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            match = re.search(rb"listening on [^:]+:(\d+)", line)
            if match:
                self.port = int(match.group(1))
                break
            if self.proc.poll() is not None:
                break
        else:
            raise RuntimeError("server did not start in time")
        if not self.port:
            raise RuntimeError(f"server failed to start: {self.log_path.read_text()[-3000:]}")
        if "--tls-cert" not in self.extra_args and not self.healthy():
            raise RuntimeError("server not healthy")
        return self

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def admin_key(self) -> str | None:
        path = (self.key_dir or self.data_dir) / "admin.key"
        return path.read_text().strip() if path.exists() else None

    def channel(self, api_key: str | None = "admin", **options) -> grpc.Channel:
        """A channel sending ``api_key`` (default: the bootstrap admin key; None: no key)."""
        key = self.admin_key if api_key == "admin" else api_key
        return connect(self.address, key, options=list(options.items()))

    def stub(self, api_key: str | None = "admin") -> pb_grpc.IdentityServiceStub:
        return pb_grpc.IdentityServiceStub(self.channel(api_key))

    def stop(self) -> int:
        """Graceful stop (SIGTERM: drain, snapshot)."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=60)
        return self.proc.returncode if self.proc else 0

    def kill(self) -> None:
        """``kill -9``: no drain, no snapshot."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)

    def healthy(self) -> bool:
        try:
            with grpc.insecure_channel(self.address) as channel:
                status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
            return status.status == health_pb2.HealthCheckResponse.SERVING
        except grpc.RpcError:
            return False


@pytest.fixture
def server_factory(tmp_path):
    started: list[ServerProcess] = []

    def make(name: str = "data", extra_args: list[str] | None = None, key_dir: Path | None = None) -> ServerProcess:
        server = ServerProcess(tmp_path / name, extra_args or [], key_dir=key_dir)
        started.append(server)
        return server.start()

    yield make
    for server in started:
        server.kill()


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory):
    """One server for a module's read-mostly tests (each test uses its own subjects or gallery)."""
    server = ServerProcess(tmp_path_factory.mktemp("shared") / "data").start()
    yield server
    server.kill()


@pytest.fixture
def stub(shared_server) -> pb_grpc.IdentityServiceStub:
    return shared_server.stub()
