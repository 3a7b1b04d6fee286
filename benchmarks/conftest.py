"""Benchmark options and the hook that writes measured figures to RESULTS.md.

``make bench`` runs ``pytest benchmarks --benchmark-enable --write-results``; the test suite
runs the same modules at a tiny size as a smoke test, without writing anything.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from benchmarks import results
from enrollment.face import DIMENSION as DIM


def pytest_addoption(parser):
    parser.addoption("--bench-n", type=int, default=100_000, help="gallery size for the identify benchmark")
    parser.addoption("--write-results", action="store_true", help="write figures to benchmarks/RESULTS.md")
    parser.addoption("--scale-n", type=int, default=1_000_000, help="templates in the scale benchmark (test_scale.py)")
    parser.addoption("--mixed-seconds", type=float, default=300.0, help="length of the scale benchmark's mixed load test")
    parser.addoption("--finger-scale-n", type=int, default=20_000, help="finger templates in test_finger_scale.py")
    parser.addoption("--finger-load-seconds", type=float, default=0.0,
                     help="length of each Identify load in test_finger_scale.py (0: 30 s from 100,000 templates, else 10 s)")
    parser.addoption("--finger-bulk-n", type=int, default=5_000, help="finger templates streamed in test_finger_bulk.py")


@pytest.fixture(scope="session")
def bench_n(request) -> int:
    return request.config.getoption("--bench-n")


@pytest.fixture(scope="session")
def figures(request) -> dict:
    """name → pytest-benchmark stats, filled by the benchmarks, read at session end."""
    store: dict = {}
    request.config._shanakht_figures = store
    return store


def record(figures: dict, name: str, benchmark) -> None:
    if benchmark.stats is not None:  # None when benchmarks are disabled
        figures[name] = benchmark.stats.stats


def pytest_sessionfinish(session, exitstatus):
    figures = getattr(session.config, "_shanakht_figures", None)
    if not figures or exitstatus != 0 or not session.config.getoption("--write-results"):
        return
    n = session.config.getoption("--bench-n")
    command = "make bench  # = " + " ".join(["pytest", *sys.argv[1:]])
    for writer in WRITERS:
        writer(figures, n, command)
    if "scale_recall" in figures:
        write_scale(figures, session.config.getoption("--scale-n"), "make bench-scale  # = " + " ".join(["pytest", *sys.argv[1:]]))


def _ms(stats) -> str:
    return f"{stats.median * 1e3:.3f}"


def write_identify(figures: dict, n: int, command: str) -> None:
    rows = []
    raw = figures.get("raw_faiss")
    for name, label in (
        ("raw_faiss", "raw FAISS `IndexFlatIP.search`, 1 thread"),
        ("library_identify", "`Galleries.identify` (library, same index type)"),
        ("grpc_identify", "gRPC `Identify` over loopback (client + server on this machine)"),
    ):
        stats = figures.get(name)
        if stats is None or raw is None:
            continue
        rows.append([label, _ms(stats), f"{stats.mean * 1e3:.3f}", f"{stats.max * 1e3:.3f}", stats.rounds, f"{stats.median / raw.median:.2f}×"])
    load_rows = [
        [("on (≤ 32)" if mb else "off"), f"{r.calls_per_s:,.0f}", f"{r.percentile(50):.2f}", f"{r.percentile(95):.2f}", f"{r.percentile(99):.2f}"]
        for mb, r in ((mb, figures.get(f"load_{mb}")) for mb in (0, 32)) if r is not None
    ]
    interleaved = figures.get("interleaved")
    if interleaved:
        rows.append([f"**interleaved** ({interleaved['rounds']} rounds, raw / library / gRPC call by call): raw FAISS", f"{interleaved['raw'] * 1e3:.3f}", "", "", interleaved["rounds"], "1.00×"])
        for name in ("library", "grpc"):
            rows.append([f"**interleaved**: {'`Galleries.identify`' if name == 'library' else 'gRPC `Identify`'}", f"{interleaved[name] * 1e3:.3f}", "", "", interleaved["rounds"], f"{interleaved[name] / interleaved['raw']:.2f}×"])
    if rows:
        load = ""
        if load_rows:
            load = (
                "\n\nUnder load: 8 concurrent gRPC clients for 10 s (`benchmarks/load.py`, client and server share the 2 cores), "
                "same gallery, micro-batching of concurrent searches into one FAISS call off and on.\n\n"
                + results.markdown_table(["micro-batching", "calls/s", "p50 ms", "p95 ms", "p99 ms"], load_rows)
            )
        body = (
            f"Gallery of {n:,} random unit templates, d = {DIM}, exact inner product; one query at a time, "
            "top 10 subjects; the probes are noisy copies of enrolled templates, and every benchmark "
            "checks its rank-1 answers.  Ratio = median / raw FAISS median, measured in the same run.\n\n"
            + results.markdown_table(["what", "median ms", "mean ms", "max ms", "rounds", "ratio to raw FAISS"], rows)
            + load
        )
        results.write_section("identify_exact", f"Identify at N = {n:,} (exact) vs raw FAISS", body, command)


def write_kernels(figures: dict, n: int, command: str) -> None:
    rows = []
    for name, label in (
        ("collapse_1x40", "best_per_subject, 1 query × 40 hits, top 10"),
        ("collapse_32x100", "best_per_subject, 32 queries × 100 hits, top 10"),
        ("topk_3000", "top_k, 3,000 scores, k 10"),
        ("rescore_1x40", "rescore, 1 query × 40 IVF candidates, d 512, k 20"),
    ):
        native_stats, numpy_stats = figures.get(f"{name}_native"), figures.get(f"{name}_numpy")
        if native_stats and numpy_stats:
            rows.append([label, f"{numpy_stats.median * 1e6:.1f}", f"{native_stats.median * 1e6:.1f}", f"{numpy_stats.median / native_stats.median:.1f}×"])
    if rows:
        body = "Cython kernels (`native/`) against their NumPy references (`native/reference.py`), same inputs.\n\n" + results.markdown_table(
            ["kernel", "NumPy µs", "Cython µs", "speed-up"], rows
        )
        results.write_section("native_kernels", "Native kernels vs NumPy reference", body, command)


def write_backends(figures: dict, n: int, command: str) -> None:
    rows = []
    for name in ("sqlite", "redis"):
        rate, identify = figures.get(f"enroll_{name}_per_s"), figures.get(f"identify_{name}")
        if rate and identify:
            rows.append([name, f"{rate:,.0f}", f"{identify.median * 1e3:.2f}", f"{identify.mean * 1e3:.2f}", f"{identify.max * 1e3:.2f}"])
    if rows:
        body = (
            f"`EnrollStream` of {min(n, 20_000):,} templates (d = {DIM}) into an empty gallery, one client; then gRPC `Identify` "
            "on that gallery, one call at a time.  SQLite: WAL, synchronous=FULL.  Redis 7 on loopback: AOF with "
            "appendfsync always.  Both acknowledge only durable writes.\n\n"
            + results.markdown_table(["store", "enrolments/s", "identify median ms", "mean ms", "max ms"], rows)
        )
        results.write_section("store_backends", "Redis store vs SQLite store", body, command)


def write_fuzz(figures: dict, n: int, command: str) -> None:
    report = figures.get("fuzz")
    if report is None:
        return
    answers = ", ".join(f"{code} {count:,}" for code, count in report.statuses.most_common())
    body = (
        f"{report.inputs:,} generated inputs (hypothesis: malformed images and templates, out-of-range numbers, odd strings, "
        f"unknown enum values, raw bytes as protobuf) across all RPCs in {report.seconds:.1f} s: "
        f"**{len(report.crashes)} crashes, {len(report.hangs)} hangs**, server healthy afterwards.\n\n"
        f"Answers: {answers}.  INTERNAL answers are gRPC's own refusal of bytes that are not a protobuf message "
        "(\"Exception deserializing request\"), before our code runs; any other INTERNAL or UNKNOWN counts as a crash."
    )
    results.write_section("fuzz", "Fuzzing the gRPC surface", body, command)


def write_face_throughput(figures: dict, n: int, command: str) -> None:
    rows = []
    for clients in (1, 4):
        measured = figures.get(f"face_enroll_{clients}")
        if measured:
            photos, seconds = measured
            rows.append([clients, photos, f"{seconds:.1f}", f"{photos / seconds:.1f}"])
    if rows:
        body = (
            "gRPC `Enroll` of att_orl photos (92×112 PGM) into an empty gallery: decode, detect, landmarks, align, embed, "
            "quality (pose, eyes) and liveness, then the durable write and audit record; one ONNX Runtime thread per call, "
            "concurrency from the clients.\n\n"
            + results.markdown_table(["concurrent clients", "photos", "seconds", "photos/s"], rows)
        )
        results.write_section("face_throughput", "Face enrolment throughput over gRPC", body, command)


def _gib(value: int) -> str:
    return f"{value / 2**30:.2f}"


def write_scale(figures: dict, n: int, command: str) -> None:
    """The 1M section: recall, ours vs raw FAISS, server latency under load, bulk load, restart, memory, mixed load."""
    recall = figures["scale_recall"]
    per_template = figures["scale_bytes_per_template"]
    parts = [
        f"{n:,} templates (d = {DIM}): {n // 2:,} synthetic identities × 2 samples (sample-to-sample cosine ≈ 0.67), "
        f"{recall['probes']:,} held-out probes: the **report** population (`benchmarks/protocol.toml` `[synthetic]` "
        f"report_seed {recall['seed']}); the index settings (`matcher/policy.py`) were chosen by `benchmarks/tune_index.py` "
        f"on the tune population, drawn the same way from another seed.  Production index: `{figures['scale_index_type']}`, "
        f"built in {figures['scale_build_s']:.0f} s (training + filling, both cores).",
        "",
        "**Recall** (production index vs exact search, same probes; 95 % interval over the probes: Clopper–Pearson, "
        f"or the rule of three ({results.RULE_OF_THREE_MARK}) where no probe disagreed):",
        "",
        results.markdown_table(
            ["measure", "value"],
            [
                ["recall@1 = rank-1 identity agreement with exact search [95 % interval]", results.estimate_text(recall["agreement"], digits=4)],
                ["top-10 subject overlap with exact search (ranks 2–10 here are random identities at cosine ≈ 0.2, spread over all lists; the IVF looks only where the probe lies)", f"{recall['top10_overlap']:.4f}"],
                ["rank-1 accuracy (probe's own identity first): exact", f"{recall['rank1_exact']:.4f}"],
                ["rank-1 accuracy: production index", f"{recall['rank1_production']:.4f}"],
            ],
        ),
    ]
    rows = []
    for key, label in (("scale_latency_approximate", "production (IVF-PQ fast scan + exact re-scoring)"), ("scale_latency_exact", "exact")):
        times = figures.get(key)
        if times is None:
            continue
        raw, ours = times["raw"] * 1e3, times["ours"] * 1e3
        raw_label = "`IndexIVFPQFastScan.search` (k = 10), same index object" if "approx" in key else "`IndexFlatIP.search`, same vectors"
        rows.append([label, raw_label, f"{np.median(raw):.3f}", f"{np.percentile(raw, 99):.3f}", f"{np.median(ours):.3f}",
                     f"{np.percentile(ours, 99):.3f}", f"{np.median(ours) / np.median(raw):.2f}×", len(raw)])
    parts += [
        "",
        "**Library search vs raw FAISS**, one query at a time on one thread, top 10, calls alternating raw / ours (`VectorIndex.search`: "
        "id mapping, per-subject collapse, exact re-scoring):",
        "",
        results.markdown_table(["index", "raw FAISS call", "raw median ms", "raw p99 ms", "ours median ms", "ours p99 ms", "ratio (medians)", "rounds"], rows),
    ]
    load_rows = []
    for key, label in (("scale_load_templates", "template probe, 8 clients"), ("scale_load_photos", "photo probe (detect + embed included), 4 clients")):
        report = figures.get(key)
        if report is not None:
            load_rows.append([label, f"{report.calls_per_s:,.0f}", *(f"{report.percentile(p, source):.2f}" for source in ("server", "handler", "client") for p in (50, 99)),
                              sum(report.errors.values())])
    bulk = figures["scale_bulk_load"]
    parts += [
        "",
        "**Server** (gRPC on loopback, clients on the same 2 cores; server-side = the server's own time per call, from its "
        "`server-timing` trailer: from the call's arrival, when gRPC runs the interceptors, to the answer; of that, in the "
        "handler = after gRPC's queue for a handler thread; client-side includes the client's share of the CPUs; measured after the "
        "bulk load's dirty pages were written out):",
        "",
        results.markdown_table(["Identify", "calls/s", "server p50 ms", "server p99 ms", "handler p50 ms", "handler p99 ms",
                                "client p50 ms", "client p99 ms", "errors"], load_rows),
        "",
        f"Bulk load through `EnrollStream` (one stream, durable SQLite group commits, audit record per subject): "
        f"{bulk['templates']:,} templates ({bulk['subjects']:,} subjects) in {bulk['seconds']:.0f} s = {bulk['templates'] / bulk['seconds']:,.0f} templates/s; "
        "the index turned approximate in the background during the load.",
    ]
    stats = figures.get("scale_stats")
    if stats:
        parts.append(f"`GalleryStats` at that point: `{stats[0]}`, {stats[1]:,} templates, {stats[2]:.0f} bytes/template of process memory.")
    parts.append(
        f"Bytes per template (`VectorIndex.memory_bytes`): production {per_template['production']:.0f}, exact float32 {per_template['exact']:.0f}."
    )
    memory_rows = []
    for key, label in (
        ("scale_memory_compressed", "compressed (IVF-PQ fast scan), after the load tests"),
        ("scale_memory_after_restart", "compressed (IVF-PQ fast scan), after restart from snapshot"),
        ("scale_memory_float32", "float32 exact (`--approximate-from 0`), after rebuild from the store"),
    ):
        m = figures.get(key)
        if m:
            memory_rows.append([label, _gib(m["VmRSS"]), _gib(m["RssAnon"]), _gib(m["RssFile"])])
    if memory_rows:
        parts += [
            "",
            "**Resident memory of the server process** at this size (GiB; anonymous = the process's own memory; file = "
            "mapped files in the page cache, here the float32 vector file read only for re-scoring and 1:1 verification, reclaimable by the kernel):",
            "",
            results.markdown_table(["storage", "RSS", "anonymous", "file-backed"], memory_rows),
        ]
    if "scale_restart_s" in figures:
        parts.append(
            f"\nRestart after a graceful stop (snapshot written at SIGTERM): serving again in {figures['scale_restart_s']:.1f} s "
            f"(`{figures['scale_restart_index']}`); the same store started with `--approximate-from 0` rebuilt float32 exact from the store in "
            f"{figures.get('scale_float32_rebuild_s', float('nan')):.1f} s."
        )
    mixed = figures.get("scale_mixed")
    if mixed:
        memory = [m for t, m in mixed.memory if t >= min(30.0, mixed.seconds / 5)] or [m for _, m in mixed.memory]
        growth = (memory[-1] / memory[0] - 1) * 100 if memory else float("nan")
        parts.append(
            f"\n**Mixed load** for {mixed.seconds:.0f} s (2 enrolling clients, 1 deleting the subjects the probes belong to, 4 identifying): "
            + ", ".join(f"{k} {v:,}" for k, v in sorted(mixed.calls.items()))
            + f"; errors {len(mixed.errors)}; deleted subjects returned after their deletion was acknowledged: {len(mixed.violations)}; "
            f"server RSS {_gib(memory[0])} → {_gib(memory[-1])} GiB ({growth:+.1f}%, from the {min(30.0, mixed.seconds / 5):.0f} s mark)."
        )
    results.write_section("scale", f"Scale: {n:,} templates, production index vs exact and raw FAISS", "\n".join(parts), command)


WRITERS = [write_identify, write_kernels, write_backends, write_fuzz, write_face_throughput]
