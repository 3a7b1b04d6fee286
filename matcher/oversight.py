"""Aggregates for an oversight body: what searches were for, how often their hits held up.

Why counts only: the body must judge use and accuracy without itself becoming a way to look
people up, so nothing here carries a subject id, a name, a purpose's reference or an image.
The observed share of adjudicated hits that examiners excluded is set beside the *nominal* FMR
of those hits (the mean of 10^-score, what the scores promised) so that a drift between the two,
say a gallery whose hits are excluded far more often than their scores predict, shows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field

from matcher.adjudication import FINAL, SearchRecord, Status, purpose_kind

#: Histogram bin edges of calibrated scores (-log10 FMR); the last bin takes everything above.
SCORE_EDGES: tuple[float, ...] = tuple(x / 2 for x in range(0, 25))


@dataclass
class OversightRow:
    """Searches in one week, for one purpose kind, role and gallery."""

    week: str
    purpose_kind: str
    role: str
    gallery: str
    searches: int = 0
    searches_with_hits: int = 0
    identifications: int = 0
    exclusions: int = 0
    inconclusive: int = 0


@dataclass
class Histogram:
    edges: tuple[float, ...] = SCORE_EDGES
    counts: list[int] = field(default_factory=lambda: [0] * (len(SCORE_EDGES) - 1))

    def add(self, score: float) -> None:
        bins = len(self.edges) - 1
        index = next((i for i in range(bins) if score < self.edges[i + 1]), bins - 1)
        self.counts[max(0, index)] += 1


@dataclass
class Report:
    rows: list[OversightRow]
    adjudicated_hits: int
    excluded_hits: int
    nominal_fmr: float
    confirmed_scores: Histogram
    excluded_scores: Histogram


def week_of(timestamp: float) -> str:
    """The Monday (UTC) of the ISO week holding ``timestamp``, as YYYY-MM-DD."""
    day = dt.datetime.fromtimestamp(timestamp, dt.timezone.utc).date()
    return (day - dt.timedelta(days=day.weekday())).isoformat()


def aggregate(searches: Iterable[SearchRecord]) -> Report:
    """One pass over the search records of the period."""
    rows: dict[tuple[str, str, str, str], OversightRow] = {}
    confirmed, excluded = Histogram(), Histogram()
    adjudicated = excluded_hits = 0
    fmr_sum = 0.0
    for search in searches:
        week, kind = week_of(search.created_at), purpose_kind(search.purpose)
        for gallery in search.galleries:
            key = (week, kind, search.role, gallery)
            row = rows.setdefault(key, OversightRow(*key))
            row.searches += 1
            mine = [c for c in search.candidates if c.gallery == gallery]
            row.searches_with_hits += any(c.hit for c in mine)
            row.identifications += sum(c.status is Status.CONFIRMED for c in mine)
            row.exclusions += sum(c.status is Status.EXCLUDED for c in mine)
            row.inconclusive += sum(c.status is Status.INCONCLUSIVE for c in mine)
        for c in search.candidates:
            if c.status is Status.CONFIRMED:
                confirmed.add(c.score)
            elif c.status is Status.EXCLUDED:
                excluded.add(c.score)
            if c.hit and c.status in FINAL:
                adjudicated += 1
                excluded_hits += c.status is Status.EXCLUDED
                fmr_sum += 10.0 ** -c.score
    return Report(
        rows=[rows[k] for k in sorted(rows)],
        adjudicated_hits=adjudicated,
        excluded_hits=excluded_hits,
        nominal_fmr=fmr_sum / adjudicated if adjudicated else 0.0,
        confirmed_scores=confirmed,
        excluded_scores=excluded,
    )
