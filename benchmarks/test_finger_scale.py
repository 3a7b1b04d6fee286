"""Finger scale: a server's gallery grown to N finger templates, searched by real probes.

    make bench-finger-scale                       # N = 1,000,000 (FINGER_SCALE_N)
    pytest benchmarks/test_finger_scale.py --finger-scale-n 20000 --write-results

The gallery holds real fingers — FVC2002 DB1/DB2/DB3-like (first impression each, one subject
per finger) and the four ten-finger people (ten fingers each, impression 1, finger positions
set) — and is grown to N templates with jittered copies of SOCOFing prints (other fingers, so
they are distractors of every probe), all through ``EnrollStream``.  Probes are the real
fingers' other impressions.  Measured: the bulk rate, resident memory per template (the server's
RSS over the load, divided by the templates), one-finger and ten-finger Identify latency under
4 concurrent clients (server-side, from the ``server-timing`` trailer), rank-1 of the real
probes inside the grown gallery, and the restart from the snapshot (trained IVF included).
"""

from __future__ import annotations

import os
import time

import pytest

from benchmarks import results
from benchmarks.evaluation import growth
from benchmarks.evaluation.metrics import count_estimate
from benchmarks.load import run_load
from shanakht.v1 import identity_pb2 as pb
from tests.conftest import ServerProcess

pytestmark = pytest.mark.timeout(0)

GALLERY = "fscale"


@pytest.fixture(scope="module")
def n(request) -> int:
    return request.config.getoption("--finger-scale-n")


@pytest.fixture(scope="module")
def load_seconds(request, n) -> float:
    return request.config.getoption("--finger-load-seconds") or (30.0 if n >= 100_000 else 10.0)


@pytest.fixture(scope="module")
def figures(request, n):
    found: dict = {"n": n}
    yield found
    if request.config.getoption("--write-results") and "restart_s" in found:
        write(found, f"make bench-finger-scale FINGER_SCALE_N={n}  # = pytest benchmarks/test_finger_scale.py --finger-scale-n {n} --write-results")


@pytest.fixture(scope="module")
def prints():
    growth.require_prints()
    fvc = growth.mated_prints(sets=tuple(s for s in growth.MATED_SETS if s != growth.TEN_FINGER_SET))
    return fvc, growth.ten_prints(), growth.real_set(growth.DISTRACTOR_SET).records


def finger_stats(stub):
    stats = stub.GalleryStats(pb.GalleryStatsRequest(galleries=[GALLERY])).galleries[0]
    return next(i for i in stats.indexes if i.modality == pb.MODALITY_FINGER)


def wait_until_built(stub, timeout: float) -> pb.IndexStats:
    deadline = time.monotonic() + timeout
    while True:
        stats = finger_stats(stub)
        if not stats.rebuilding or time.monotonic() > deadline:
            return stats
        time.sleep(2)


@pytest.fixture(scope="module")
def served(prints, figures, n, tmp_path_factory):
    fvc, ten, bases = prints
    data_dir = tmp_path_factory.mktemp("finger-scale") / "data"
    server = ServerProcess(data_dir, ["--default-galleries", GALLERY, "--max-concurrent-rpcs", "256"]).start(timeout=600)
    stub = server.stub()
    before = growth.memory_of(server.proc.pid)

    real = [(f"ten-{person}", records) for person, records in ten.enrolled.items()]
    real += [(label, [record]) for label, record in fvc.enrolled]
    real_templates = sum(len(r) for _, r in real)
    grown = max(0, n - real_templates)

    minutiae = [0]

    def subjects():
        for subject, records in (*real, *growth.grown_subjects(bases, grown, seed=1)):
            minutiae[0] += sum(growth.minutiae_in(r) for r in records)
            yield subject, records

    started = time.perf_counter()
    acknowledged, errors = growth.stream_enrol(stub, GALLERY, subjects())
    streamed = time.perf_counter() - started
    assert acknowledged == len(real) + grown, errors
    stats = wait_until_built(stub, timeout=36_000)  # the stream deferred the IVF training: it runs once now
    built = time.perf_counter() - started
    after = growth.memory_of(server.proc.pid)
    templates = real_templates + grown
    figures.update(
        templates=templates, stream_s=streamed, stream_per_s=templates / streamed, built_s=built, index_type=stats.index_type,
        accounted_bytes=stats.bytes_per_template, rss_before=before, rss_after=after,
        rss_per_template=(after["VmRSS"] - before["VmRSS"]) / templates,
        anon_per_template=(after["RssAnon"] - before["RssAnon"]) / templates,
        minutiae_per_template=minutiae[0] / templates,
    )
    print(f"{templates} templates streamed in {streamed:.0f} s ({templates / streamed:.0f}/s), index {stats.index_type} after {built:.0f} s; "
          f"RSS +{(after['VmRSS'] - before['VmRSS']) / templates:.0f} B per template")
    os.sync()
    yield server, stub
    server.kill()


def one_finger_requests(fvc, ten) -> list[tuple[str, pb.IdentifyRequest]]:
    out = [(label, [record]) for label, record in fvc.probes]
    out += [(f"ten-{person}", [record]) for person, records in ten.probes.items() for record in records]
    return [(label, pb.IdentifyRequest(samples=[growth.finger_sample(r) for r in rs], galleries=[GALLERY], max_candidates=10)) for label, rs in out]


def ten_finger_requests(ten) -> list[tuple[str, pb.IdentifyRequest]]:
    return [
        (f"ten-{person}", pb.IdentifyRequest(samples=[growth.finger_sample(r) for r in records], galleries=[GALLERY], max_candidates=10))
        for person, records in ten.probes.items()
    ]


def rank1(stub, labelled) -> tuple[int, int]:
    hits = 0
    for label, request in labelled:
        found = stub.Identify(request, timeout=120).candidates
        hits += bool(found) and found[0].subject_id == label
    return hits, len(labelled)


def test_rank1_of_real_probes_in_the_grown_gallery(prints, served, figures):
    fvc, ten, _ = prints
    _, stub = served
    figures["rank1_one"] = rank1(stub, one_finger_requests(fvc, ten))
    figures["rank1_ten"] = rank1(stub, ten_finger_requests(ten))
    print("rank-1 one finger", figures["rank1_one"], "ten fingers", figures["rank1_ten"])
    hits, total = figures["rank1_one"]
    assert hits >= 0.5 * total


def test_identify_latency_4_clients(prints, served, figures, load_seconds):
    fvc, ten, _ = prints
    _, stub = served
    for key, labelled in (("load_one", one_finger_requests(fvc, ten)), ("load_ten", ten_finger_requests(ten))):
        report = run_load(stub, [r for _, r in labelled], clients=4, seconds=load_seconds)
        assert not report.errors, report.errors
        figures[key] = report
        print(key, report.summary())
    figures["rss_after_load"] = growth.memory_of(served[0].proc.pid)


def test_restart_from_snapshot(prints, served, figures):
    """Graceful stop (snapshot with the trained IVF), start: seconds until serving, and the same answers."""
    fvc, ten, _ = prints
    server, stub = served
    labelled = one_finger_requests(fvc, ten)[:20]
    before = [[(c.subject_id, round(c.score, 6)) for c in stub.Identify(r, timeout=120).candidates] for _, r in labelled]
    server.stop()
    started = time.perf_counter()
    server.start(timeout=3600)
    figures["restart_s"] = time.perf_counter() - started
    stub = server.stub()
    stats = finger_stats(stub)
    figures["restart_index_type"], figures["restart_rebuilding"] = stats.index_type, stats.rebuilding
    figures["rss_after_restart"] = growth.memory_of(server.proc.pid)
    after = [[(c.subject_id, round(c.score, 6)) for c in stub.Identify(r, timeout=120).candidates] for _, r in labelled]
    assert after == before
    assert not stats.rebuilding  # nothing retrained on load
    print(f"restart {figures['restart_s']:.1f} s, {stats.index_type}")


def write(f: dict, command: str) -> None:
    one, ten = f["rank1_one"], f["rank1_ten"]
    rate = lambda hits, total: f"{results.estimate_text(count_estimate(total - hits, total).complement())} ({hits} of {total})"  # noqa: E731
    lines = [
        f"A server's gallery of **{f['templates']:,} finger templates**: the real fingers of FVC2002 DB1_B, DB2_B and the "
        f"300×300 set (first impression each) and the four ten-finger people (ten fingers each), grown with jittered copies "
        f"of SOCOFing prints, all through `EnrollStream` (SQLite store).",
        "",
        "| | |",
        "| --- | ---: |",
        f"| bulk load through `EnrollStream` | {f['stream_s']:,.0f} s = **{f['stream_per_s']:,.0f} templates/s** |",
        f"| retrieval index once loaded (IVF trained once, after the stream) | `{f['index_type']}`, ready after {f['built_s']:,.0f} s |",
        f"| resident memory per template (server RSS over the load ÷ templates) | **{f['rss_per_template']:,.0f} B** "
        f"(anonymous {f['anon_per_template']:,.0f} B; the index's own accounting {f['accounted_bytes']:,.0f} B) |",
        f"| minutiae per template (ISO records) / resident bytes per minutia | {f['minutiae_per_template']:.1f} / "
        f"{f['rss_per_template'] / f['minutiae_per_template']:,.0f} B |",
        f"| server RSS after the load / after restart | {f['rss_after']['VmRSS'] / 2**20:,.0f} MiB / {f['rss_after_restart']['VmRSS'] / 2**20:,.0f} MiB |",
        f"| restart from the snapshot (trained IVF read back, no training) | **{f['restart_s']:.1f} s** (`{f['restart_index_type']}`) |",
        f"| rank-1, one real finger ({one[1]} probes: the other impressions; FVC sets are tune sets, so this checks that search survives the scale, it is not an accuracy figure) | {rate(*one)} |",
        f"| rank-1, ten real fingers ({ten[1]} people) | {rate(*ten)} |",
    ]
    for key, label in (("load_one", "one-finger Identify"), ("load_ten", "ten-finger Identify")):
        r = f.get(key)
        if r is not None:
            lines.append(
                f"| {label}, 4 clients, {r.seconds:.0f} s: server-side p50 / p99 | {r.percentile(50, 'server'):.1f} / "
                f"{r.percentile(99, 'server'):.1f} ms ({r.calls_per_s:.1f} calls/s; client p50 {r.percentile(50):.1f} ms) |"
            )
    results.write_section("finger-scale", f"Finger scale: {f['templates']:,} templates", "\n".join(lines), command)
