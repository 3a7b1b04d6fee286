"""The ``shanakht`` CLI contract that scripts and later checks rely on."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np

from tests.conftest import REPO, noisy, unit_vectors


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "cli", *args], capture_output=True, text=True, cwd=REPO, timeout=60)
    if check and result.returncode != 0:
        raise AssertionError(result.stderr)
    return result


def test_enroll_identify_verify_stats_delete(shared_server, tmp_path):
    server = ["--server", shared_server.address, "--api-key-file", str(shared_server.data_dir / "admin.key")]
    person, other = unit_vectors(2, seed=314)
    np.save(tmp_path / "person.npy", person)
    np.save(tmp_path / "probe.npy", noisy(person[None], seed=315)[0])
    np.save(tmp_path / "other.npy", other)
    out = cli("enroll", *server, "--gallery", "watchlist", "--subject", "CLI-1", "--template-npy", str(tmp_path / "person.npy"), "--meta", "name=Test Person").stdout
    assert "enrolled CLI-1" in out

    found = json.loads(cli("identify", *server, "--gallery", "watchlist", "--template-npy", str(tmp_path / "probe.npy"), "--top", "3", "--json").stdout)
    assert found["candidates"][0]["subject_id"] == "CLI-1" and found["candidates"][0]["hit"] is True
    assert found["candidates"][0]["metadata"] == {"name": "Test Person"}
    table = cli("identify", *server, "--gallery", "watchlist", "--template-npy", str(tmp_path / "probe.npy")).stdout
    assert table.splitlines()[0].split()[:3] == ["rank", "subject", "gallery"] and "CLI-1" in table

    assert cli("verify", *server, "--gallery", "watchlist", "--subject", "CLI-1", "--template-npy", str(tmp_path / "probe.npy")).stdout.startswith("MATCH")
    assert cli("verify", *server, "--gallery", "watchlist", "--subject", "CLI-1", "--template-npy", str(tmp_path / "other.npy")).stdout.startswith("NO MATCH")

    stats = json.loads(cli("stats", *server, "--json").stdout)
    assert any(g["gallery"] == "watchlist" and int(g["subjects"]) >= 1 for g in stats["galleries"])

    assert "deleted CLI-1" in cli("delete", *server, "--gallery", "watchlist", "--subject", "CLI-1").stdout
    failed = cli("delete", *server, "--gallery", "watchlist", "--subject", "CLI-1", check=False)
    assert failed.returncode == 1 and failed.stderr.startswith("error: NOT_FOUND")


def test_gallery_create_and_list(shared_server):
    server = ["--server", shared_server.address, "--api-key-file", str(shared_server.data_dir / "admin.key")]
    assert "created gallery cli_gallery" in cli("gallery", "create", *server, "--name", "cli_gallery", "--threshold-fmr", "1e-5").stdout
    listed = json.loads(cli("gallery", "list", *server, "--json").stdout)
    gallery = next(g for g in listed["galleries"] if g["name"] == "cli_gallery")
    assert gallery["threshold_score"] == 5.0

    assert "created gallery cli_prints" in cli("gallery", "create", *server, "--name", "cli_prints", "--finger-min-nfiq2", "40").stdout
    table = cli("gallery", "list", *server).stdout
    assert "finger:iso19794-2:2005/0 ≥40" in next(line for line in table.splitlines() if line.startswith("cli_prints"))
    refused = cli("gallery", "create", *server, "--name", "cli_bad", "--finger-min-nfiq2", "101", check=False)
    assert refused.returncode == 1 and "min_quality" in refused.stderr


def test_benchmarks_still_run_at_a_tiny_size():
    """The benchmark modules must keep working; this runs them on a few thousand templates without timing or writing."""
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "benchmarks", "-q", "--bench-n", "2000", "--scale-n", "4000", "--mixed-seconds", "3",
         "--finger-scale-n", "2000", "--finger-load-seconds", "2", "--finger-bulk-n", "1000", "-p", "no:cacheprovider"],
        capture_output=True, text=True, cwd=REPO, timeout=300,
        env={**os.environ, "FINGER_REAL_LIMIT": "40"},
    )
    assert result.returncode == 0, result.stdout[-3000:]


def test_unreadable_input_file_is_a_clear_error(shared_server, tmp_path):
    server = ["--server", shared_server.address, "--api-key-file", str(shared_server.data_dir / "admin.key")]
    for path in (tmp_path / "missing.jpg", tmp_path):  # absent, and a directory
        result = cli("identify", *server, "--gallery", "watchlist", "--face", str(path), check=False)
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert result.stderr.startswith(f"error: {path}: ")
