"""Choose the IVF search settings of ``matcher/policy.py`` on the TUNE synthetic population.

    python benchmarks/tune_index.py [--n 1000000] [--small-n 100000] [--probes 1000] [--lists 250,500,1000] [--smoke]

The populations are drawn as the Scale benchmark draws them (``benchmarks/evaluation/synthetic.py``)
from ``[synthetic] tune_seed`` of ``benchmarks/protocol.toml``; ``benchmarks/test_scale.py`` reports on
the report seed, which this script never reads.  At each size the production index is built as a
server builds it (``VectorIndex`` with the production ``IndexPolicy``, IVF-PQ fast scan + exact
re-scoring), exact search over the same templates gives the ground truth, and every setting of the
grid is measured on the same index (a fresh ``ApproximateBackend`` over the same IVF lists and
vectors, whose constructor applies the setting): recall@1 = rank-1 identity agreement with exact
search over the held-out probes, top 10 subjects asked for, one query at a time on one thread, and
the median latency of those calls.

Two sizes, because ``min_probes`` and ``probe_fraction`` act at different sizes: ``--n`` (fraction
of ≈ √N/2 lists) and ``--small-n``, the size at which an index turns approximate
(``IndexPolicy.approximate_from``), where a fraction of few lists is few lists and the floor decides.

**The rule, fixed before measuring**: a setting qualifies when the lower end of the 95 % interval of
its recall@1 (Clopper–Pearson over the probes; the rule of three where no probe disagrees) is at
least ``TARGET`` = 0.99, the acceptance figure of the Scale benchmark, at both sizes.  Of the
qualifying settings the cheapest is chosen: fewest lists probed per query at ``--n``, then at
``--small-n``, then fewest candidates re-scored; ties go to the current default.  The measured
median latencies are printed alongside (they follow the lists probed; they are not the criterion,
since this machine's speed drifts).  The choice is made over a grid, so its own figures are
optimistic: the unbiased figure is the report-seed run of ``test_scale.py``.

``--lists`` also builds indexes with other numbers of lists at ``--n`` (the ``lists_for`` rule)
and measures each fraction there (without the floor): a check, not part of the choice.
``--smoke`` is a tiny run that tests the script still works; its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from fractions import Fraction
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import faiss  # noqa: E402

from benchmarks.evaluation import metrics, synthetic  # noqa: E402
from benchmarks.evaluation.protocol import PROTOCOL  # noqa: E402
from benchmarks.results import estimate_text, markdown_table  # noqa: E402
from matcher.backends import RESCORE_MIN, ApproximateBackend  # noqa: E402
from matcher.policy import IndexPolicy  # noqa: E402

TARGET = 0.99  # lower 95 % bound of recall@1 (agreement with exact search) that a setting must reach
TOP = 10  # subjects asked for, as test_scale.py and a default Identify ask
FRACTIONS = (Fraction(1, 10), Fraction(1, 8), Fraction(1, 6), Fraction(1, 5), Fraction(1, 4))
MIN_PROBES = (25, 50, 75, 100, 150)
RESCORE_FACTORS = (1.0, 1.5, 2.0, 3.0)
WARM_UP = 20


@dataclass(frozen=True)
class Measured:
    lists: int
    probes: int
    rescored: int
    agreement: metrics.Estimate
    median_ms: float
    p99_ms: float

    @property
    def qualifies(self) -> bool:
        return self.agreement.interval.low >= TARGET


@dataclass(frozen=True)
class FixedLists(IndexPolicy):
    """The production policy with a set number of lists instead of ``lists_for`` (the ``--lists`` check)."""

    lists: int = 16

    def lists_for(self, templates: int) -> int:  # type: ignore[override]
        return self.lists


def rescored(policy: IndexPolicy) -> int:
    """Candidates the approximate backend re-scores for a top-``TOP`` search (``ApproximateBackend.search``)."""
    return max(RESCORE_MIN, int(max(2 * TOP, 16) * policy.rescore_factor))


class Bench:
    """One size of the tune population: the production index, its ground truth, and measurements of settings on it."""

    def __init__(
        self, n: int, probes: int, workdir: Path, policy: IndexPolicy | None = None, population: synthetic.Population | None = None
    ) -> None:
        self.n = n
        self.population = population or synthetic.population("tune", n, probes)
        faiss.omp_set_num_threads(1)  # lone queries on one thread, as the server runs them (builds set their own)
        started = time.perf_counter()
        policy = policy or synthetic.production_policy(n)
        self.index = synthetic.production_index(self.population, policy, workdir / f"tune-{n}-{id(self)}.vectors")
        self.build_s = time.perf_counter() - started
        self.live = self.index._backend
        if not isinstance(self.live, ApproximateBackend):
            raise SystemExit(f"the index at {n:,} templates is {self.index.index_type}, not approximate")
        exact = synthetic.exact_index(self.population)
        self.truth = [hits.subject_ids[0] for hits in exact.search(self.population.probes, TOP)]
        del exact
        gc.collect()
        self.cache: dict[tuple[int, int], Measured] = {}

    @property
    def lists(self) -> int:
        return int(self.live.ivf.nlist)

    def measure(self, policy: IndexPolicy) -> Measured:
        """Recall@1 and single-query latency of the index searched with ``policy``'s knobs."""
        key = (policy.probes_for(self.lists), rescored(policy))
        if key not in self.cache:
            self.cache[key] = self._measure(policy)
        return self.cache[key]

    def _measure(self, policy: IndexPolicy) -> Measured:
        live = self.live
        self.index._backend = ApproximateBackend(live.ivf, live.slots, policy, live.trained_on, shared_slots=True)
        try:
            probes = self.population.probes
            for q in probes[:WARM_UP]:
                self.index.search(q[None], TOP)
            found, times = [], []
            for q in probes:
                started = time.perf_counter()
                hits = self.index.search(q[None], TOP)[0]
                times.append(time.perf_counter() - started)
                found.append(hits.subject_ids[0] if hits.subject_ids else None)
        finally:
            self.index._backend = live
            live.ivf.nprobe = live.policy.probes_for(self.lists)  # the constructor set it on the shared lists
        disagreements = sum(f != t for f, t in zip(found, self.truth))
        ms = np.array(times) * 1e3
        return Measured(self.lists, int(policy.probes_for(self.lists)), rescored(policy),
                        metrics.count_estimate(disagreements, len(found)).complement(), float(np.median(ms)), float(np.percentile(ms, 99)))


def fraction_text(value: float) -> str:
    f = Fraction(value).limit_denominator(100)
    return f"{f.numerator}/{f.denominator}"


def grid(default: IndexPolicy) -> list[IndexPolicy]:
    return [replace(default, probe_fraction=float(f), min_probes=m, rescore_factor=r)
            for f in FRACTIONS for m in MIN_PROBES for r in RESCORE_FACTORS]


def choose(benches: list[Bench], default: IndexPolicy) -> tuple[IndexPolicy | None, list[tuple[IndexPolicy, list[Measured]]]]:
    """The cheapest qualifying setting of the grid (the rule of the module docstring), and every setting's figures."""
    rows = [(policy, [bench.measure(policy) for bench in benches]) for policy in grid(default)]

    def cost(row: tuple[IndexPolicy, list[Measured]]) -> tuple:
        policy, measured = row
        knobs = ("probe_fraction", "min_probes", "rescore_factor")
        return (*(m.probes for m in measured), measured[0].rescored, *(getattr(policy, k) != getattr(default, k) for k in knobs))

    qualifying = [row for row in rows if all(m.qualifies for m in row[1])]
    return (min(qualifying, key=cost)[0] if qualifying else None), sorted(rows, key=cost)


def measurements_table(bench: Bench) -> str:
    rows = [[f"{m.probes} of {m.lists}", m.rescored, estimate_text(m.agreement, digits=4), f"{m.median_ms:.3f}", f"{m.p99_ms:.3f}",
             "yes" if m.qualifies else "no"] for _, m in sorted(bench.cache.items())]
    return markdown_table(["lists probed", "re-scored", "recall@1 [95 %]", "median ms", "p99 ms", f"low ≥ {TARGET}"], rows)


def settings_table(rows: list[tuple[IndexPolicy, list[Measured]]], benches: list[Bench], default: IndexPolicy, limit: int) -> str:
    headers = ["probe_fraction", "min_probes", "rescore_factor"]
    for bench in benches:
        headers += [f"probes @ {bench.n:,}", f"recall@1 @ {bench.n:,}", f"ms @ {bench.n:,}"]
    table = []
    for policy, measured in [row for row in rows if all(m.qualifies for m in row[1])][:limit]:
        mark = " (default)" if policy == default else ""
        cells = [fraction_text(policy.probe_fraction) + mark, policy.min_probes, policy.rescore_factor]
        for m in measured:
            cells += [m.probes, estimate_text(m.agreement, digits=4), f"{m.median_ms:.3f}"]
        table.append(cells)
    return markdown_table(headers, table)


def lists_check(n: int, probes: int, counts: list[int], workdir: Path, default: IndexPolicy) -> str:
    rows = []
    population = synthetic.population("tune", n, probes)
    for lists in counts:
        bench = Bench(n, probes, workdir, FixedLists(**{**asdict(synthetic.production_policy(n)), "lists": lists}), population)
        for f in FRACTIONS:
            m = bench.measure(replace(default, probe_fraction=float(f), min_probes=1))
            rows.append([lists, fraction_text(float(f)), m.probes, estimate_text(m.agreement, digits=4), f"{m.median_ms:.3f}", f"{bench.build_s:.0f}"])
        print(f"  {lists} lists measured", file=sys.stderr, flush=True)
        del bench
        gc.collect()
    return markdown_table(["lists", "fraction", "lists probed", "recall@1 [95 %]", "median ms", "build s"], rows)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="templates of the main tune population")
    parser.add_argument("--small-n", type=int, default=IndexPolicy().approximate_from,
                        help="templates of the small tune population (where an index turns approximate; 0: skip)")
    parser.add_argument("--probes", type=int, default=1000, help="held-out probes per population")
    parser.add_argument("--lists", default="", help="comma-separated list counts to check at --n (e.g. 250,500,1000; empty: skip)")
    parser.add_argument("--smoke", action="store_true", help="a tiny run (2,000 and 1,000 templates, 30 probes): tests the script, measures nothing")
    args = parser.parse_args(argv)
    if args.smoke:
        args.n, args.small_n, args.probes, args.lists = 2000, 1000, 30, args.lists or "16"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    default = IndexPolicy()
    seed = synthetic.seed_for("tune")
    print(f"Tune population: `{PROTOCOL.name}` [synthetic] tune_seed {seed}; {args.probes:,} held-out probes per size; "
          f"top {TOP} subjects, one query at a time, one thread.\n")
    with tempfile.TemporaryDirectory(prefix="tune-index-") as tmp:
        workdir = Path(tmp)
        benches = []
        for n in [args.n] + ([args.small_n] if args.small_n else []):
            bench = Bench(n, args.probes, workdir)
            print(f"{n:,} templates: `{bench.index.index_type}` built in {bench.build_s:.0f} s", file=sys.stderr, flush=True)
            benches.append(bench)
        chosen, rows = choose(benches, default)
        for bench in benches:
            print(f"### {bench.n:,} templates, {bench.lists} lists (`{bench.index.index_type}` as built)\n")
            print(measurements_table(bench) + "\n")
        print(f"### Qualifying settings (recall@1 low ≥ {TARGET} at every size), cheapest first\n")
        print(settings_table(rows, benches, default, limit=12) + "\n")
        for policy, measured in rows:
            if policy == default:
                print("Current defaults: " + "; ".join(f"{b.n:,}: {m.probes} lists, recall@1 {estimate_text(m.agreement, digits=4)}, "
                                                      f"{m.median_ms:.3f} ms" for b, m in zip(benches, measured)) + "\n")
        if chosen is None:
            print("No setting of the grid qualifies: keep the defaults and widen the grid.")
        else:
            same = (chosen.probe_fraction, chosen.min_probes, chosen.rescore_factor) == (
                default.probe_fraction, default.min_probes, default.rescore_factor)
            print(f"Chosen: probe_fraction = {fraction_text(chosen.probe_fraction)}, min_probes = {chosen.min_probes}, "
                  f"rescore_factor = {chosen.rescore_factor}" + (" (the current defaults)" if same else " (differs from the defaults)"))
        del benches
        gc.collect()
        if args.lists:
            print(f"\n### Lists at {args.n:,} (a check of `lists_for`, which gives {IndexPolicy.lists_for(args.n)}; no probe floor)\n")
            print(lists_check(args.n, args.probes, [int(c) for c in args.lists.split(",")], workdir, default))
    return 0


if __name__ == "__main__":
    sys.exit(main())
