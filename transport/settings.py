"""One typed settings object for the server: defaults, then ``SHANAKHT_*`` env vars, then flags.

Every knob the server has lives here, so an operator finds them in one place and
``shanakht serve --help`` lists them all.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from matcher.policy import IndexPolicy

DEFAULT_FACE_MODEL = "faceplugin-fr_feature@0.0.1"
DEFAULT_FACE_DIMENSION = 512


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class SettingsError(ValueError):
    """A setting out of range; the message names the flag."""


@dataclass(frozen=True)
class Settings:
    """Server configuration; field names map to ``--flag-name`` and ``SHANAKHT_FLAG_NAME``."""

    data_dir: Path = field(default=Path("data"), metadata={"help": "store, snapshots and logs live here"})
    host: str = field(default="localhost", metadata={"help": "address to listen on"})
    port: int = field(default=50051, metadata={"help": "gRPC port (0 picks a free one)"})
    workers: int = field(default=4 * _cpu_count(), metadata={"help": "gRPC handler threads"})
    max_concurrent_rpcs: int = field(default=64, metadata={"help": "RPCs in flight before RESOURCE_EXHAUSTED"})
    max_message_bytes: int = field(default=16 * 1024 * 1024, metadata={"help": "largest request accepted"})
    search_threads: int = field(
        default=1, metadata={"help": "FAISS threads per search (1 is fastest for lone queries on few cores)"}
    )
    micro_batch: int = field(default=32, metadata={"help": "concurrent searches of one index joined into one FAISS call, at most (0/1: off)"})
    batch_threads: int = field(default=0, metadata={"help": "FAISS threads for a micro-batch of concurrent searches (0: every core)"})
    approximate_from: int = field(
        default=100_000, metadata={"help": "templates from which an index turns approximate: IVF-PQ fast scan, candidates re-scored exactly (0: always exact)"}
    )
    probe_fraction: float = field(default=1 / 5, metadata={"help": "share of IVF lists probed per query (recall vs speed)"})
    min_probes: int = field(default=100, metadata={"help": "IVF lists probed per query at least, whatever the share"})
    rescore_factor: float = field(default=1.5, metadata={"help": "IVF candidates re-scored exactly per template asked for (at least 32)"})
    index_build_threads: int = field(default=1, metadata={"help": "threads that build approximate indexes in the background"})
    blas_threshold: int = field(default=8, metadata={"help": "exhaustive FAISS search uses BLAS from this many queries per call (its default is 250 of 512-d)"})
    snapshot_interval_s: float = field(default=300.0, metadata={"help": "seconds between index snapshots (0: only at shutdown)"})
    shutdown_grace_s: float = field(default=10.0, metadata={"help": "seconds to drain RPCs on SIGTERM"})
    stream_batch: int = field(default=256, metadata={"help": "EnrollStream items committed per durable write at most"})
    metrics_port: int = field(default=0, metadata={"help": "Prometheus /metrics port (0: off)"})
    default_galleries: str = field(
        default="watchlist,criminal_records,inmates", metadata={"help": "galleries created at start-up when missing"}
    )
    default_threshold_fmr: float = field(default=1e-4, metadata={"help": "decision threshold of new galleries, as an FMR"})
    face_model: str = field(default=DEFAULT_FACE_MODEL, metadata={"help": "face model id of new galleries"})
    face_dimension: int = field(default=DEFAULT_FACE_DIMENSION, metadata={"help": "face template dimension"})
    store: str = field(default="sqlite", metadata={"help": "sqlite (embedded, one process) or redis (shared by replicas)"})
    redis_url: str = field(default="redis://localhost:6379/0", metadata={"help": "Redis URL for --store redis (rediss:// for TLS, password in the URL)"})
    redis_prefix: str = field(default="shanakht", metadata={"help": "key prefix in Redis, to keep deployments apart"})
    require_durable: bool = field(default=False, metadata={"help": "refuse to start on a store that can lose acknowledged writes"})
    auth: str = field(default="required", metadata={"help": "required (API key or client certificate on every call but health) or off"})
    rate_limit: float = field(default=1000.0, metadata={"help": "calls per second per principal (bursts of twice that); 0: unlimited"})
    tls_cert: str = field(default="", metadata={"help": "PEM server certificate: serve TLS instead of plaintext"})
    tls_key: str = field(default="", metadata={"help": "PEM private key of --tls-cert"})
    client_ca: str = field(default="", metadata={"help": "PEM CA bundle: require client certificates signed by it (mTLS)"})
    model_dir: Path = field(default=Path(".cache/models"), metadata={"help": "verified ONNX model cache (env SHANAKHT_MODEL_DIR)"})
    model_threads: int = field(default=1, metadata={"help": "ONNX Runtime threads per model call (requests run in parallel anyway)"})
    log_level: str = field(default="INFO", metadata={"help": "DEBUG, INFO, WARNING or ERROR"})
    log_format: str = field(default="json", metadata={"help": "json or text"})

    def __post_init__(self) -> None:
        """Refuse values that would start a server that misbehaves later (0 workers, probing no lists)."""
        problems = [f"--{name.replace('_', '-')} {why}, got {getattr(self, name)!r}" for name, ok, why in (
            ("port", 0 <= self.port <= 65535, "must be 0–65535"),
            ("metrics_port", 0 <= self.metrics_port <= 65535, "must be 0–65535"),
            ("workers", self.workers >= 1, "must be at least 1"),
            ("max_concurrent_rpcs", self.max_concurrent_rpcs >= 1, "must be at least 1"),
            ("max_message_bytes", self.max_message_bytes >= 1024, "must be at least 1024"),
            ("search_threads", self.search_threads >= 1, "must be at least 1"),
            ("micro_batch", self.micro_batch >= 0, "must be 0 or more"),
            ("batch_threads", self.batch_threads >= 0, "must be 0 or more"),
            ("approximate_from", self.approximate_from >= 0, "must be 0 or more"),
            ("probe_fraction", 0 < self.probe_fraction <= 1, "must be in (0, 1]"),
            ("min_probes", self.min_probes >= 1, "must be at least 1"),
            ("rescore_factor", self.rescore_factor >= 1, "must be at least 1"),
            ("index_build_threads", self.index_build_threads >= 1, "must be at least 1"),
            ("blas_threshold", self.blas_threshold >= 1, "must be at least 1"),
            ("snapshot_interval_s", self.snapshot_interval_s >= 0, "must be 0 or more"),
            ("shutdown_grace_s", self.shutdown_grace_s >= 0, "must be 0 or more"),
            ("stream_batch", self.stream_batch >= 1, "must be at least 1"),
            ("default_threshold_fmr", 0 < self.default_threshold_fmr < 1, "must be in (0, 1)"),
            ("face_dimension", self.face_dimension >= 1, "must be at least 1"),
            ("rate_limit", self.rate_limit >= 0, "must be 0 (unlimited) or more"),
            ("model_threads", self.model_threads >= 1, "must be at least 1"),
        ) if not ok]
        if problems:
            raise SettingsError("; ".join(problems))

    @property
    def store_path(self) -> Path:
        return self.data_dir / "shanakht.sqlite3"

    @property
    def snapshot_dir(self) -> Path:
        return self.data_dir / "snapshots"

    @property
    def admin_key_path(self) -> Path:
        return self.data_dir / "admin.key"

    @property
    def index_policy(self) -> IndexPolicy:
        return IndexPolicy(
            micro_batch=self.micro_batch,
            batch_threads=self.batch_threads,
            approximate_from=self.approximate_from,
            probe_fraction=self.probe_fraction,
            min_probes=self.min_probes,
            rescore_factor=self.rescore_factor,
            build_threads=self.index_build_threads,
        )

    @property
    def gallery_names(self) -> list[str]:
        return [name.strip() for name in self.default_galleries.split(",") if name.strip()]


def _convert(kind: Any, text: str) -> Any:
    if kind in (bool, "bool"):
        return text.strip().lower() in ("1", "true", "yes", "on")
    if kind in (Path, "Path"):
        return Path(text)
    try:
        if kind in (int, "int"):
            return int(text)
        if kind in (float, "float"):
            return float(text)
    except ValueError:
        raise SettingsError(f"{text!r} is not a number") from None
    return text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one ``--flag`` per settings field; unset flags fall back to env vars and defaults."""
    for f in dataclasses.fields(Settings):
        help_text = f"{f.metadata.get('help', '')} (env SHANAKHT_{f.name.upper()}, default {f.default})"
        if f.type in (bool, "bool"):
            parser.add_argument("--" + f.name.replace("_", "-"), dest=f.name, action="store_true", default=None, help=help_text)
            continue
        parser.add_argument(
            "--" + f.name.replace("_", "-"),
            dest=f.name,
            default=None,
            type=lambda text, kind=f.type: _convert(kind, text),
            help=help_text,
        )


def load(args: argparse.Namespace | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Defaults, overridden by ``SHANAKHT_*`` environment variables, overridden by flags."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for f in dataclasses.fields(Settings):
        env = environ.get(f"SHANAKHT_{f.name.upper()}")
        if env is not None:
            values[f.name] = _convert(f.type, env)
        flag = getattr(args, f.name, None) if args is not None else None
        if flag is not None:
            values[f.name] = flag
    return Settings(**values)
