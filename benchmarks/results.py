"""Writing measured figures into benchmarks/RESULTS.md, each benchmark in its own marked section.

Every section states the machine, the versions and the command that produced it, so a reader
can rerun it.  Sections are replaced in place; the rest of the file is left alone.
"""

from __future__ import annotations

import os
import platform
import re
import sys
import time
from importlib import metadata
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
PACKAGES = ("numpy", "faiss-cpu", "grpcio", "protobuf", "onnxruntime", "cython", "opencv-python-headless")


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    memory = ""
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        memory = f", {pages / 2**30:.0f} GiB"
    except (ValueError, OSError):
        pass
    return f"{cpu}, {cores} cores{memory}, {platform.system()} {platform.release()}"


def versions(extra_packages: tuple[str, ...] = ()) -> str:
    found = [f"python {sys.version.split()[0]}"]
    for name in (*PACKAGES, *extra_packages):
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    blas = os.environ.get("OPENBLAS_CORETYPE")
    if blas:
        found.append(f"OPENBLAS_CORETYPE={blas}")
    return ", ".join(found)


def write_section(name: str, title: str, body: str, command: str, extra_packages: tuple[str, ...] = ()) -> None:
    """Replace (or append) the section ``name`` of RESULTS.md."""
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    section = (
        f"<!-- {name}:begin -->\n## {title}\n\n"
        f"Measured {stamp} on {machine()}; {versions(extra_packages)}.\n"
        f"Reproduce: `{command}`\n\n{body.strip()}\n<!-- {name}:end -->"
    )
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n\nEvery figure below was measured by the command under its heading.\n"
    pattern = re.compile(rf"<!-- {re.escape(name)}:begin -->.*?<!-- {re.escape(name)}:end -->", re.S)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip() + "\n\n" + section + "\n"
    RESULTS.write_text(text)


def markdown_table(headers: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join("---" for _ in headers) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
