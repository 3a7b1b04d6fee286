"""How an index is built and searched: one typed policy, shared by every gallery of a server.

Exact search is cheapest below a size where a lone query still meets the latency target; above
it an IVF-PQ fast-scan index (4-bit codes, 1/128 of the memory, a quarter of the lists scanned)
whose candidates are re-scored exactly.  The search settings below were chosen by
``benchmarks/tune_index.py`` on the TUNE synthetic population (``benchmarks/protocol.toml``
``[synthetic] tune_seed``; 1,000 held-out probes, top 10, one thread): the cheapest setting whose
recall@1 (rank-1 agreement with exact search) has a 95 % lower bound of at least 0.99 at 1M and at
100k templates.  RESULTS' Scale section reports recall on the REPORT population, which they were
not chosen on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class IndexPolicy:
    """Index choice and search knobs; see ``transport.settings`` for the operator-facing flags."""

    micro_batch: int = 32
    # OpenMP threads for a micro-batch of queries (0: every core); a lone query always uses one.
    batch_threads: int = 0
    # Templates from which an index turns approximate (0: always exact).
    approximate_from: int = 100_000
    # IVF lists probed per query, as a fraction of the lists (see ``lists_for``).  Tune population of
    # 704-d face templates, 1M in 500 lists: recall@1 0.9920 [0.9843, 0.9965] at 1/5 (100 lists),
    # 0.9970 [0.9913, 0.9994] at 1/4 (125 lists), the fewest lists whose lower bound is ≥ 0.99.
    probe_fraction: float = 1 / 4
    # ... but never fewer lists than this: with √N/2 lists a quarter is few lists at 100k (158 lists,
    # 40 probed: recall@1 0.9900 [0.9817, 0.9952]), and it is the lists probed that decide recall.
    # Tune population, 100k: 50 probed 0.9960 [0.9898, 0.9989], 75 probed 1.0000 [0.9970, 1.0000].
    min_probes: int = 75
    # IVF candidates re-scored exactly, per template asked for (at least backends.RESCORE_MIN).
    # Tune population, 1M and 100k: re-scoring 32, 40 or 60 candidates for a top-10 search (factors
    # 1.0 to 3.0) gave the same recall@1 at every number of lists probed; 1.5 re-scores the minimum,
    # 32, for up to 21 templates asked for.
    rescore_factor: float = 1.5
    # OpenMP threads for training and filling an IVF index in the background.
    build_threads: int = 1
    # Build approximate indexes on a background thread (False: inline, for tests and tools).
    background_build: bool = True
    # Rebuild (retrain) an approximate index once it holds this many times the templates it was trained on.
    regrow_factor: float = 2.0

    def wants_approximate(self, templates: int) -> bool:
        return self.approximate_from > 0 and templates >= self.approximate_from

    @staticmethod
    def lists_for(templates: int) -> int:
        """IVF lists ≈ √N / 2, at least 16 and never more than N / 39 (enough training points).

        Fewer and longer lists than the FAISS guideline (4·√N): fast scan pays a fixed cost per
        list probed, which dominated with short lists.  ``benchmarks/tune_index.py --lists``, tune
        population, 1M × 512, one thread, PQ32, recall@1 and median latency: 250 lists at 1/5
        0.9930 [0.9856, 0.9972] in 0.446 ms, at 1/4 0.9970 [0.9913, 0.9994] in 0.652 ms; 500 at
        1/5 1.0000 [0.9970, 1.0000] in 0.601 ms; 1,000 at 1/8 0.9930 [0.9856, 0.9972] in 0.730 ms,
        at 1/5 0.9980 [0.9928, 0.9998] in 1.116 ms (a shared machine: latencies drift by tens of %).
        Measured on 512-d templates, before the face template became 704-d; not re-measured since.
        """
        return int(max(16, min(math.sqrt(max(templates, 1)) / 2, templates / 39, 65_536)))

    def probes_for(self, lists: int) -> int:
        return int(min(lists, max(self.min_probes, round(lists * self.probe_fraction))))
