"""How an index is built and searched: one typed policy, shared by every gallery of a server.

Exact search is cheapest below a size where a lone query still meets the latency target; above
it an IVF-PQ fast-scan index (4-bit codes, 1/64 of the memory, an eighth of the lists scanned)
whose candidates are re-scored exactly.  The figures behind the defaults are in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class IndexPolicy:
    """Index choice and search knobs; see ``shanakht.settings`` for the operator-facing flags."""

    micro_batch: int = 32
    # OpenMP threads for a micro-batch of queries (0: every core); a lone query always uses one.
    batch_threads: int = 0
    # Templates from which an index turns approximate (0: always exact).
    approximate_from: int = 100_000
    # IVF lists probed per query, as a fraction of the lists.  At 1M synthetic identities rank-1
    # agreement with exact search was 0.959 at 1/32, 0.991 at 1/16, 0.998 at 1/8 (RESULTS.md).
    probe_fraction: float = 1 / 8
    # IVF candidates re-scored exactly, per template asked for.
    rescore_factor: int = 2
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
        """IVF lists ≈ 4·√N (the FAISS guideline), at least 16 and never more than N / 39 (enough training points)."""
        return int(max(16, min(4 * math.sqrt(max(templates, 1)), templates / 39, 65_536)))

    def probes_for(self, lists: int) -> int:
        return int(min(lists, max(8, round(lists * self.probe_fraction))))
