"""One typed settings object for the server: defaults, then ``SHANAKHT_*`` env vars, then flags.

Every knob the server has lives here, so an operator finds them in one place and
``shanakht serve --help`` lists them all.  Every value is validated before the server starts: a
misspelt boolean or number in a ``SHANAKHT_*`` variable stops it with a message naming the
variable, and a value out of range with one naming the flag.

Why argparse and a frozen dataclass rather than pydantic-settings: the one dataclass below drives
the flags, their ``--help`` and the environment variables; the only conversions are to int,
float, bool, Path and str, which ``_convert`` does strictly in a dozen lines; and the range checks
must name the operator's flag, which ``__post_init__`` does.  A validation framework (and its
compiled core) would add a dependency to the server without removing any of that code.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from matcher.policy import IndexPolicy

def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class SettingsError(ValueError):
    """A setting out of range; the message names the flag."""


@dataclass(frozen=True)
class Bounds:
    """The values a numeric setting may take; ``above``/``below`` exclude the bound itself."""

    at_least: float | None = None
    at_most: float | None = None
    above: float | None = None
    below: float | None = None

    def admits(self, value: float) -> bool:
        return not (
            value != value  # NaN is in no range
            or (self.at_least is not None and value < self.at_least)
            or (self.at_most is not None and value > self.at_most)
            or (self.above is not None and value <= self.above)
            or (self.below is not None and value >= self.below)
        )

    def __str__(self) -> str:
        low, high = self.at_least if self.above is None else self.above, self.at_most if self.below is None else self.below
        if low is not None and high is not None:
            if self.above is None and self.below is None:
                return f"must be {low:g}–{high:g}"
            return f"must be in {'(' if self.above is not None else '['}{low:g}, {high:g}{')' if self.below is not None else ']'}"
        return "must be 0 or more" if low == 0 else f"must be at least {low:g}"


def _setting(default: Any, help: str, bounds: Bounds | None = None, choices: tuple[str, ...] = ()) -> Any:
    """A settings field: its default, its ``--help`` text, and the values it may take."""
    return field(default=default, metadata={"help": help, "bounds": bounds, "choices": choices})


AT_LEAST_1, NOT_NEGATIVE, PORT = Bounds(at_least=1), Bounds(at_least=0), Bounds(at_least=0, at_most=65535)


# Settings passed to ``matcher.policy.IndexPolicy`` under the same name.
_POLICY_SETTINGS = ("micro_batch", "batch_threads", "approximate_from", "probe_fraction", "min_probes", "rescore_factor")
_POLICY = IndexPolicy()  # their defaults: tuned once, in matcher/policy.py (benchmarks/constants.toml)


@dataclass(frozen=True)
class Settings:
    """Server configuration; field names map to ``--flag-name`` and ``SHANAKHT_FLAG_NAME``."""

    data_dir: Path = _setting(Path("data"), "store, snapshots and logs live here")
    host: str = _setting("localhost", "address to listen on")
    port: int = _setting(50051, "gRPC port (0 picks a free one)", PORT)
    workers: int = _setting(4 * _cpu_count(), "gRPC handler threads", AT_LEAST_1)
    max_concurrent_rpcs: int = _setting(64, "RPCs in flight before RESOURCE_EXHAUSTED", AT_LEAST_1)
    max_message_bytes: int = _setting(16 * 1024 * 1024, "largest request accepted", Bounds(at_least=1024))
    search_threads: int = _setting(1, "FAISS threads per search (1 is fastest for lone queries on few cores)", AT_LEAST_1)
    micro_batch: int = _setting(_POLICY.micro_batch, "concurrent searches of one index joined into one FAISS call, at most (0/1: off)", NOT_NEGATIVE)
    batch_threads: int = _setting(_POLICY.batch_threads, "FAISS threads for a micro-batch of concurrent searches (0: every core)", NOT_NEGATIVE)
    approximate_from: int = _setting(
        _POLICY.approximate_from,
        "templates from which an index turns approximate: IVF-PQ fast scan, candidates re-scored exactly (0: always exact)",
        NOT_NEGATIVE,
    )
    probe_fraction: float = _setting(_POLICY.probe_fraction, "share of IVF lists probed per query (recall vs speed)", Bounds(above=0, at_most=1))
    min_probes: int = _setting(_POLICY.min_probes, "IVF lists probed per query at least, whatever the share", AT_LEAST_1)
    rescore_factor: float = _setting(_POLICY.rescore_factor, "IVF candidates re-scored exactly per template asked for (at least 32)", AT_LEAST_1)
    index_build_threads: int = _setting(1, "threads that build approximate indexes in the background", AT_LEAST_1)
    blas_threshold: int = _setting(
        8, "exhaustive FAISS search uses BLAS from this many queries per call (its default is 250 of 512-d)", AT_LEAST_1
    )
    snapshot_interval_s: float = _setting(300.0, "seconds between index snapshots (0: only at shutdown)", NOT_NEGATIVE)
    shutdown_grace_s: float = _setting(10.0, "seconds to drain RPCs on SIGTERM", NOT_NEGATIVE)
    stream_batch: int = _setting(256, "EnrollStream items committed per durable write at most", AT_LEAST_1)
    metrics_port: int = _setting(0, "Prometheus /metrics port (0: off)", PORT)
    default_galleries: str = _setting("watchlist,criminal_records,inmates", "galleries created at start-up when missing")
    default_threshold_fmr: float = _setting(1e-4, "decision threshold of new galleries, as an FMR", Bounds(above=0, below=1))
    store: str = _setting("sqlite", "sqlite (embedded, one process) or redis (shared by replicas)", choices=("sqlite", "redis"))
    redis_url: str = _setting("redis://localhost:6379/0", "Redis URL for --store redis (rediss:// for TLS, password in the URL)")
    redis_prefix: str = _setting("shanakht", "key prefix in Redis, to keep deployments apart")
    require_durable: bool = _setting(False, "refuse to start on a store that can lose acknowledged writes")
    auth: str = _setting(
        "required", "required (API key or client certificate on every call but health) or off", choices=("required", "off")
    )
    rate_limit: float = _setting(1000.0, "calls per second per principal (bursts of twice that); 0: unlimited", NOT_NEGATIVE)
    session_idle_s: float = _setting(900.0, "a console session token expires after this many seconds unused", Bounds(at_least=5))
    sign_in_max_failures: int = _setting(5, "consecutive failed sign-ins of a user that lock it", AT_LEAST_1)
    sign_in_lockout_s: float = _setting(900.0, "seconds a user stays locked after too many failed sign-ins", NOT_NEGATIVE)
    evidence_key_file: str = _setting(
        "", "AES-256-GCM key sealing evidence images, mode 0600 (default DATA_DIR/evidence.key; replicas sharing a Redis store share one)"
    )
    tls_cert: str = _setting("", "PEM server certificate: serve TLS instead of plaintext")
    tls_key: str = _setting("", "PEM private key of --tls-cert")
    client_ca: str = _setting("", "PEM CA bundle: require client certificates signed by it (mTLS)")
    model_dir: Path = _setting(Path(".cache/models"), "verified ONNX model cache (env SHANAKHT_MODEL_DIR)")
    transaction_mapping: str = _setting("", "TOML file mapping ANSI/NIST-ITL Type-1/2 fields to subject id and metadata (empty: the shipped enrollment/transaction/mapping.toml)")
    model_threads: int = _setting(1, "ONNX Runtime threads per model call (requests run in parallel anyway)", AT_LEAST_1)
    dedup_batch: int = _setting(1024, "de-duplication: subjects searched per checkpoint (pairs and cursor stored together)", AT_LEAST_1)
    dedup_neighbours: int = _setting(10, "de-duplication: best other subjects kept per searched subject", Bounds(at_least=1, at_most=1000))
    dedup_threads: int = _setting(_cpu_count(), "de-duplication: search threads of a run (one FAISS thread each)", AT_LEAST_1)
    log_level: str = _setting("INFO", "how much to log", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    log_format: str = _setting("json", "json lines or text", choices=("json", "text"))

    def __post_init__(self) -> None:
        """Refuse values that would start a server that misbehaves later (0 workers, probing no lists)."""
        problems = []
        for f in dataclasses.fields(self):
            value, bounds, choices = getattr(self, f.name), f.metadata["bounds"], f.metadata["choices"]
            if bounds is not None and not bounds.admits(value):
                problems.append(f"--{f.name.replace('_', '-')} {bounds}, got {value!r}")
            if choices and value not in choices:
                problems.append(f"--{f.name.replace('_', '-')} must be {' or '.join(choices)}, got {value!r}")
        if problems:
            raise SettingsError("; ".join(problems))

    @property
    def store_path(self) -> Path:
        return self.data_dir / "shanakht.sqlite3"

    @property
    def snapshot_dir(self) -> Path:
        return self.data_dir / "snapshots"

    @property
    def evidence_key_path(self) -> Path:
        return Path(self.evidence_key_file) if self.evidence_key_file else self.data_dir / "evidence.key"

    @property
    def admin_key_path(self) -> Path:
        return self.data_dir / "admin.key"

    @property
    def index_policy(self) -> IndexPolicy:
        return IndexPolicy(build_threads=self.index_build_threads, **{name: getattr(self, name) for name in _POLICY_SETTINGS})

    @property
    def dedup_options(self) -> "DedupOptions":
        from matcher.deduplication import DedupOptions

        return DedupOptions(batch=self.dedup_batch, neighbours=self.dedup_neighbours, threads=self.dedup_threads)

    @property
    def gallery_names(self) -> list[str]:
        return [name.strip() for name in self.default_galleries.split(",") if name.strip()]


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _convert(kind: Any, text: str) -> Any:
    """``text`` as the field's type; anything else is a ``SettingsError`` (a typo must not silently mean false)."""
    if kind in (bool, "bool"):
        word = text.strip().lower()
        if word not in _TRUE + _FALSE:
            raise SettingsError(f"{text!r} is not a boolean (use one of {', '.join(_TRUE + _FALSE)})")
        return word in _TRUE
    if kind in (Path, "Path"):
        return Path(text)
    try:
        if kind in (int, "int"):
            return int(text)
        if kind in (float, "float"):
            return float(text)
    except ValueError:
        raise SettingsError(f"{text!r} is not a {'whole ' if kind in (int, 'int') else ''}number") from None
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


#: ``SHANAKHT_*`` variables that are not server settings: the CLI's credentials, the data sets, the benchmarks' cache.
OTHER_VARIABLES = frozenset({"SHANAKHT_API_KEY", "SHANAKHT_API_KEY_FILE", "SHANAKHT_DATA", "SHANAKHT_FINGER_CACHE"})


def _check_names(environ: Mapping[str, str]) -> None:
    """A misspelt variable name would silently leave its setting at the default: refuse it, suggesting the name meant."""
    known = {f"SHANAKHT_{f.name.upper()}" for f in dataclasses.fields(Settings)} | OTHER_VARIABLES
    problems = []
    for variable in sorted(v for v in environ if v.startswith("SHANAKHT_") and v not in known):
        close = difflib.get_close_matches(variable, sorted(known), n=1)
        problems.append(f"{variable} is not a setting" + (f" (did you mean {close[0]}?)" if close else ""))
    if problems:
        raise SettingsError("; ".join(problems))


def load(args: argparse.Namespace | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Defaults, overridden by ``SHANAKHT_*`` environment variables, overridden by flags."""
    environ = os.environ if environ is None else environ
    _check_names(environ)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(Settings):
        variable = f"SHANAKHT_{f.name.upper()}"
        env = environ.get(variable)
        if env is not None:
            try:
                values[f.name] = _convert(f.type, env)
            except SettingsError as error:
                raise SettingsError(f"{variable}: {error}") from None
        flag = getattr(args, f.name, None) if args is not None else None
        if flag is not None:
            values[f.name] = flag
    return Settings(**values)
