"""How an index is built and searched: one typed policy, shared by every gallery of a server.

Exact search is cheapest below a size where a lone query still meets the latency target; above
it an IVF-PQ fast-scan index (4-bit codes, 1/128 of the memory, a fifth of the lists scanned)
whose candidates are re-scored exactly.  The figures behind the defaults are in benchmarks/RESULTS.md.
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
    # IVF lists probed per query, as a fraction of the lists (see ``lists_for``).  At 1M synthetic
    # identities in 500 lists, rank-1 agreement with exact search was 0.993 at 1/6, 1.000 at 1/5.
    probe_fraction: float = 1 / 5
    # ... but never fewer lists than this: with √N/2 lists a fifth is few lists at 100k (158 lists,
    # 32 probed: agreement 0.973), and it is the lists probed that decide recall.
    min_probes: int = 100
    # IVF candidates re-scored exactly, per template asked for (at least backends.RESCORE_MIN).
    # At 1M, widths of 20 to 64 gave the same rank-1 agreement (1.000); FAISS's fast scan keeps
    # up to 32 results in a cheaper structure than more (k = 40 cost 20% more than k = 32).
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
        list probed, which dominated with short lists.  Measured at 1M × 512, one thread, PQ32:
        4,000 lists at 1/8 agreed 0.997 with exact search in 0.99 ms, 1,000 at 1/5 0.997 in
        0.51 ms, 500 at 1/5 1.000 in 0.34 ms.
        """
        return int(max(16, min(math.sqrt(max(templates, 1)) / 2, templates / 39, 65_536)))

    def probes_for(self, lists: int) -> int:
        return int(min(lists, max(self.min_probes, round(lists * self.probe_fraction))))
