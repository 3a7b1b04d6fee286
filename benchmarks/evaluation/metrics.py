"""The error rates every benchmark reports and their 95 % intervals, once, so face and finger figures mean the same.

One convention throughout: a comparison is **accepted when its score is ≥ the threshold**.  With
``n`` impostor and ``m`` genuine scores, at threshold ``t``

* FMR(t)  = #(impostor ≥ t) / n  (false match rate, a.k.a. FAR),
* FNMR(t) = #(genuine < t) / m   (false non-match rate; TAR = 1 − FNMR).

"FNMR at FMR x" is read at the lowest threshold whose FMR is at most x, which is the least FNMR
any threshold with FMR ≤ x achieves.  That threshold lies just above the ⌊x·n⌋-th highest impostor
(counting from 0), so a genuine score is accepted exactly when it is strictly above that impostor.
When a set has fewer than 1/x impostors it is the highest impostor: "no false match observed",
which is a weaker claim than the FMR (the reports star such figures).  **ZeroFMR** is FNMR at
FMR 0: every genuine score at or below the highest impostor is a false non-match.

Open-set identification follows NIST FRTE: a *mated* search has its probe's identity enrolled, a
*non-mated* search does not.  With a candidate list of length L and threshold T,

* FPIR(T) = share of non-mated searches returning any candidate with score ≥ T,
* FNIR(T) = share of mated searches whose mate is not among the L candidates with score ≥ T,

and "FNIR at FPIR x" is read at the lowest T with FPIR(T) ≤ x: the same reading as FNMR at FMR,
with a search's best non-mated score as its impostor and its mate's score (−inf when the mate is
not in the list) as its genuine score.

Intervals (95 %, two-sided unless named otherwise):

* a count of errors among independent trials: **Clopper–Pearson** (exact binomial); where no
  error is seen, the **rule of three** (one-sided upper bound 3/n), named as such;
* a rate whose trials share identities (all pairs of a set, searches at a threshold read from the
  same data) or the EER: a **bootstrap over identities** (identities resampled with replacement,
  fixed seed, each trial weighted by how often its identities were drawn; percentile interval).

Failures to acquire or enrol are the caller's business: score them so that they never match
(0 for the finger matcher, a zero vector's cosine 0 for the face, −inf for a search) before calling
these.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

# ⌊x·n⌋ is taken of x·n + this: 1e-3 · n is not always exact in binary.
_COUNT_SLACK = 1e-9
CONFIDENCE = 0.95
BOOTSTRAP_REPS = 1000
BOOTSTRAP_SEED = 20261201
_BETA_ITERATIONS = 200  # continued-fraction terms; converges in far fewer for the n the reports use
_BETA_EPS = 1e-15
_BISECTIONS = 60  # 2^-60: below any digit a report prints


# ---------------------------------------------------------------------- rates


def threshold_at_fmr(impostor: ArrayLike, fmr: float) -> float:
    """The lowest threshold that accepts at most ``fmr`` of the impostors (−inf when that is all of them)."""
    ordered = np.sort(_scores(impostor))[::-1]
    if len(ordered) == 0:
        raise ValueError("no impostor scores")
    allowed = math.floor(fmr * len(ordered) + _COUNT_SLACK)  # impostors that may be accepted
    if allowed >= len(ordered):
        return -math.inf
    return float(np.nextafter(ordered[allowed], math.inf))


def fnmr_at_fmr(genuine: ArrayLike, impostor: ArrayLike, fmr: float) -> float:
    """FNMR at the lowest threshold with FMR ≤ ``fmr`` (NaN when either side is empty)."""
    return ErrorCurve.from_scores(genuine, impostor).fnmr_at_fmr(fmr)


def tar_at_far(genuine: ArrayLike, impostor: ArrayLike, far: float) -> float:
    """TAR = 1 − FNMR at FMR ``far``, counted (not subtracted) so it is exact to the last bit."""
    return ErrorCurve.from_scores(genuine, impostor).tar_at_far(far)


def zero_fmr(genuine: ArrayLike, impostor: ArrayLike) -> float:
    """ZeroFMR: FNMR at the lowest threshold that accepts no impostor (NaN when either side is empty)."""
    return fnmr_at_fmr(genuine, impostor, 0.0)


def eer(genuine: ArrayLike, impostor: ArrayLike) -> float:
    """Equal error rate: the mean of FMR and FNMR at the observed threshold where they are closest.

    Every distinct score (and +inf, reject all) is a candidate threshold, so the rate is exact for
    the data rather than interpolated; on a tie the lowest threshold wins.
    """
    return ErrorCurve.from_scores(genuine, impostor).eer()


def d_prime(genuine: ArrayLike, impostor: ArrayLike) -> float:
    """Decidability d′ = |μg − μi| / √((σg² + σi²) / 2) (population variances).

    The separation of the two score distributions in pooled standard deviations: a threshold-free
    figure that still moves when the error rates are already 0 on a small set.
    """
    g, i = _scores(genuine), _scores(impostor)
    return float(abs(g.mean() - i.mean()) / np.sqrt((g.var() + i.var()) / 2))


@dataclass(frozen=True)
class ErrorCurve:
    """False accepts and false rejects at every threshold that changes them, ascending, ending at +inf.

    Counts are weights (1 per score unless told otherwise; the identity bootstrap passes how often
    a score's identities were drawn), so a weighted curve is the curve of the replicated scores.
    """

    thresholds: np.ndarray
    false_accepts: np.ndarray  # impostor weight with score ≥ threshold
    false_rejects: np.ndarray  # genuine weight with score < threshold
    impostors: float  # total impostor weight
    genuine: float  # total genuine weight

    @classmethod
    def from_scores(
        cls,
        genuine: ArrayLike,
        impostor: ArrayLike,
        genuine_weights: ArrayLike | None = None,
        impostor_weights: ArrayLike | None = None,
    ) -> "ErrorCurve":
        return _CurveFrame(genuine, impostor).curve(genuine_weights, impostor_weights)

    @property
    def fmr(self) -> np.ndarray:
        return self.false_accepts / self.impostors if self.impostors else np.full(len(self.thresholds), math.nan)

    @property
    def fnmr(self) -> np.ndarray:
        return self.false_rejects / self.genuine if self.genuine else np.full(len(self.thresholds), math.nan)

    def index_at_fmr(self, fmr: float) -> int:
        """Position of the lowest threshold whose FMR is at most ``fmr`` (+inf always qualifies)."""
        allowed = math.floor(fmr * self.impostors + _COUNT_SLACK)
        return int(np.argmax(self.false_accepts <= allowed))

    def threshold_at_fmr(self, fmr: float) -> float:
        """The lowest *observed* threshold with FMR ≤ ``fmr`` (a score, or +inf)."""
        return float(self.thresholds[self.index_at_fmr(fmr)])

    def fnmr_at_fmr(self, fmr: float) -> float:
        if not (self.genuine and self.impostors):
            return math.nan
        return float(self.false_rejects[self.index_at_fmr(fmr)] / self.genuine)

    def tar_at_far(self, far: float) -> float:
        if not (self.genuine and self.impostors):
            return math.nan
        return float((self.genuine - self.false_rejects[self.index_at_fmr(far)]) / self.genuine)

    def eer(self) -> float:
        if not (self.genuine and self.impostors):
            return math.nan
        fmr, fnmr = self.fmr, self.fnmr
        k = int(np.argmin(np.abs(fmr - fnmr)))
        return float((fmr[k] + fnmr[k]) / 2)


class _CurveFrame:
    """The sorting behind an :class:`ErrorCurve`, done once so that a bootstrap only re-weighs."""

    def __init__(self, genuine: ArrayLike, impostor: ArrayLike) -> None:
        g, i = _scores(genuine), _scores(impostor)
        self._g_order, self._i_order = np.argsort(g, kind="stable"), np.argsort(i, kind="stable")
        # −inf marks "nothing returned" (a search): never accepted, so it is no threshold either.
        observed = np.concatenate([g, i])
        self.thresholds = np.unique(np.concatenate([observed[np.isfinite(observed)], [np.inf]]))
        self._g_below = np.searchsorted(g[self._g_order], self.thresholds, side="left")
        self._i_below = np.searchsorted(i[self._i_order], self.thresholds, side="left")

    def curve(self, genuine_weights: ArrayLike | None = None, impostor_weights: ArrayLike | None = None) -> ErrorCurve:
        g_cum = _cumulative(self._g_order, genuine_weights)
        i_cum = _cumulative(self._i_order, impostor_weights)
        return ErrorCurve(
            thresholds=self.thresholds,
            false_accepts=i_cum[-1] - i_cum[self._i_below],
            false_rejects=g_cum[self._g_below],
            impostors=float(i_cum[-1]),
            genuine=float(g_cum[-1]),
        )


def _cumulative(order: np.ndarray, weights: ArrayLike | None) -> np.ndarray:
    """0 followed by the running sum of the weights in score order."""
    w = np.ones(len(order)) if weights is None else np.asarray(weights, dtype=np.float64)[order]
    return np.concatenate([[0.0], np.cumsum(w)])


# ---------------------------------------------------------------------- identification


def identification_hits(
    candidates: Sequence[Sequence[object]],
    true_labels: Sequence[object],
    k: int,
    found: Sequence[bool] | None = None,
) -> np.ndarray:
    """Per probe, whether its own label is among its first ``k`` candidates (labels, best first).

    ``found[j]`` False marks a probe that produced no template: a miss whatever it scored.
    """
    if len(candidates) != len(true_labels) or (found is not None and len(found) != len(true_labels)):
        raise ValueError("one candidate list, one label (and one found flag) per probe")
    hits = np.array([label in list(c)[:k] for c, label in zip(candidates, true_labels)], dtype=bool)
    if found is not None:
        hits &= np.asarray(found, dtype=bool)
    return hits


def rank_k(
    candidates: Sequence[Sequence[object]],
    true_labels: Sequence[object],
    k: int,
    found: Sequence[bool] | None = None,
) -> float:
    """Rank-k rate: the share of probes with their own label among the first ``k`` candidates (NaN: no probes)."""
    hits = identification_hits(candidates, true_labels, k, found)
    return float(hits.mean()) if len(hits) else math.nan


def rank1(top_labels: Sequence[object], true_labels: Sequence[object], found: Sequence[bool] | None = None) -> float:
    """Rank-1 identification rate: the share of probes whose best candidate carries the probe's own label.

    ``top_labels[k]`` is probe k's best candidate (None when the search returned nothing);
    ``found[k]`` False marks a probe that produced no template, which is a miss whatever it scored.
    NaN when there are no probes.
    """
    return rank_k([[] if top is None else [top] for top in top_labels], true_labels, 1, found)


def mate_scores(
    candidates: Sequence[Sequence[tuple[object, float]]], true_labels: Sequence[object], length: int
) -> np.ndarray:
    """Per mated search, its mate's score within the first ``length`` (label, score) candidates; −inf when absent."""
    out = np.full(len(true_labels), -np.inf)
    for j, (found, label) in enumerate(zip(candidates, true_labels)):
        scores = [score for candidate, score in list(found)[:length] if candidate == label]
        if scores:
            out[j] = max(scores)
    return out


def top_scores(candidates: Sequence[Sequence[tuple[object, float]]]) -> np.ndarray:
    """Per non-mated search, its best candidate's score; −inf when it returned nothing."""
    return np.array([max((score for _, score in found), default=-np.inf) for found in candidates], dtype=np.float64)


def fpir(nonmated_top: ArrayLike, threshold: float) -> float:
    """FPIR(T): share of non-mated searches with any candidate scoring ≥ T; −inf (nothing returned) never counts."""
    top = _scores(nonmated_top)
    return float(np.mean((top >= threshold) & (top > -np.inf))) if len(top) else math.nan


def fnir(mated: ArrayLike, threshold: float) -> float:
    """FNIR(T): share of mated searches whose mate is missing from the list (−inf) or below T (NaN: no searches)."""
    mate = _scores(mated)
    return float(np.mean((mate < threshold) | (mate == -np.inf))) if len(mate) else math.nan


def fnir_at_fpir(mated: ArrayLike, nonmated_top: ArrayLike, rate: float) -> float:
    """FNIR at the lowest threshold with FPIR ≤ ``rate`` (see the module docstring); NaN when either side is empty."""
    return fnmr_at_fmr(mated, nonmated_top, rate)


# ---------------------------------------------------------------------- intervals


@dataclass(frozen=True)
class Interval:
    """A confidence interval for a rate, and the method that produced it (reports name it)."""

    low: float
    high: float
    method: str

    def complement(self) -> "Interval":
        """The interval of 1 − rate (TAR from FNMR, a hit rate from a miss rate)."""
        return Interval(1.0 - self.high, 1.0 - self.low, self.method)


def regularized_beta(x: float, a: float, b: float) -> float:
    """I_x(a, b), the regularized incomplete beta function (Lentz's continued fraction, Numerical Recipes §6.4)."""
    if not 0.0 <= x <= 1.0:
        raise ValueError("x must be in [0, 1]")
    if x in (0.0, 1.0):
        return x
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_fraction(x, a, b) / a
    return 1.0 - front * _beta_fraction(1.0 - x, b, a) / b


def _beta_fraction(x: float, a: float, b: float) -> float:
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, _BETA_ITERATIONS + 1):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            result *= c * d
        if abs(c * d - 1.0) < _BETA_EPS:
            break
    return result


def beta_quantile(p: float, a: float, b: float) -> float:
    """The x with I_x(a, b) = p, by bisection (I_x is increasing in x)."""
    low, high = 0.0, 1.0
    for _ in range(_BISECTIONS):
        mid = (low + high) / 2
        if regularized_beta(mid, a, b) < p:
            low = mid
        else:
            high = mid
    return (low + high) / 2


def clopper_pearson(errors: int, n: int, confidence: float = CONFIDENCE) -> Interval:
    """The exact binomial interval for ``errors`` of ``n`` independent trials (never narrower than the truth)."""
    if n <= 0 or not 0 <= errors <= n:
        raise ValueError(f"need 0 ≤ errors ≤ n and n > 0, got {errors} of {n}")
    alpha = 1.0 - confidence
    low = 0.0 if errors == 0 else beta_quantile(alpha / 2, errors, n - errors + 1)
    high = 1.0 if errors == n else beta_quantile(1 - alpha / 2, errors + 1, n - errors)
    return Interval(low, high, "Clopper–Pearson")


def rule_of_three(n: int) -> Interval:
    """No error in ``n`` trials: the rate is below 3/n with 95 % confidence (one-sided)."""
    if n <= 0:
        raise ValueError("the rule of three needs at least one trial")
    return Interval(0.0, min(1.0, 3.0 / n), "rule of three")


def count_interval(errors: int, n: int, confidence: float = CONFIDENCE) -> Interval:
    """Interval of an error count among independent trials: the rule of three at 0 errors, else Clopper–Pearson."""
    return rule_of_three(n) if errors == 0 and confidence == CONFIDENCE else clopper_pearson(errors, n, confidence)


@dataclass(frozen=True)
class Trials:
    """Genuine and impostor scores with the identities behind each (an index per identity; a pair has two columns).

    For identification, a mated search's mate score is a genuine trial and a non-mated search's
    best score an impostor trial, each with the probe's identity.
    """

    genuine: np.ndarray
    impostor: np.ndarray
    genuine_ids: np.ndarray  # [m] or [m, 2] int
    impostor_ids: np.ndarray  # [n] or [n, 2] int
    identities: int

    def curve(self) -> ErrorCurve:
        return ErrorCurve.from_scores(self.genuine, self.impostor)


def identity_bootstrap(
    trials: Trials,
    statistics: Mapping[str, Callable[[ErrorCurve], float]],
    reps: int = BOOTSTRAP_REPS,
    seed: int = BOOTSTRAP_SEED,
    confidence: float = CONFIDENCE,
) -> dict[str, Interval]:
    """Percentile intervals of curve statistics when the identities are resampled with replacement.

    A trial's weight in a replicate is the product of the draw counts of its distinct identities,
    so a replicate is the data of the drawn identities (impostor pairs between two drawn identities
    once per pair of copies).  Replicates where a statistic is undefined (no genuine trial drawn)
    are left out of that statistic.
    """
    frame = _CurveFrame(trials.genuine, trials.impostor)
    rng = np.random.default_rng(seed)
    values: dict[str, list[float]] = {name: [] for name in statistics}
    for _ in range(reps):
        counts = np.bincount(rng.integers(0, trials.identities, trials.identities), minlength=trials.identities)
        curve = frame.curve(_trial_weights(counts, trials.genuine_ids), _trial_weights(counts, trials.impostor_ids))
        for name, statistic in statistics.items():
            values[name].append(statistic(curve))
    alpha = 1.0 - confidence
    intervals = {}
    for name, found in values.items():
        finite = np.asarray(found, dtype=np.float64)
        finite = finite[~np.isnan(finite)]
        low, high = np.quantile(finite, [alpha / 2, 1 - alpha / 2]) if len(finite) else (math.nan, math.nan)
        intervals[name] = Interval(float(low), float(high), "identity bootstrap")
    return intervals


def _trial_weights(counts: np.ndarray, ids: np.ndarray) -> np.ndarray:
    ids = np.asarray(ids, dtype=np.int64)
    if ids.ndim == 1:
        return counts[ids].astype(np.float64)
    first, second = counts[ids[:, 0]], counts[ids[:, 1]]
    return (first * np.where(ids[:, 1] == ids[:, 0], 1, second)).astype(np.float64)


def unless_no_error(rate: float, interval: Interval, clusters: int) -> Interval:
    """The bootstrap interval, or the rule of three over ``clusters`` independent units where no error was seen.

    A bootstrap of zero errors is [0, 0], which claims more than the data can; the rule of three
    over the identities (the units the trials are not independent within) says what it can.
    """
    return rule_of_three(clusters) if rate == 0.0 and clusters > 0 else interval


@dataclass(frozen=True)
class Estimate:
    """A measured rate with its 95 % interval."""

    value: float
    interval: Interval

    def complement(self) -> "Estimate":
        """The estimate of 1 − rate (TAR from FNMR, a hit rate from a miss rate)."""
        return Estimate(1.0 - self.value, self.interval.complement())


def count_estimate(errors: int, n: int) -> Estimate:
    """``errors`` of ``n`` independent trials, with :func:`count_interval` (NaN and no interval when n is 0)."""
    if n == 0:
        return Estimate(math.nan, Interval(math.nan, math.nan, "none"))
    return Estimate(errors / n, count_interval(errors, n))


def curve_estimates(
    trials: Trials,
    statistics: Mapping[str, Callable[[ErrorCurve], float]],
    reps: int = BOOTSTRAP_REPS,
    seed: int = BOOTSTRAP_SEED,
) -> dict[str, Estimate]:
    """Error-rate statistics of the trials' curve, each with its identity-bootstrap interval.

    Where a statistic is 0 (no error seen) its interval is the rule of three over the identities
    that have genuine trials (:func:`unless_no_error`).
    """
    curve = trials.curve()
    intervals = identity_bootstrap(trials, statistics, reps, seed)
    genuine_ids = np.asarray(trials.genuine_ids)
    clusters = len(np.unique(genuine_ids if genuine_ids.ndim == 1 else genuine_ids[:, 0]))
    out = {}
    for name, statistic in statistics.items():
        value = statistic(curve)
        out[name] = Estimate(value, unless_no_error(value, intervals[name], clusters))
    return out


@dataclass(frozen=True)
class Searches:
    """One open-set (1:N) experiment as scores: per mated search its mate's score within the candidate list
    (−inf when absent or the probe failed), per non-mated search its best candidate's score (−inf: nothing
    returned), and each search's probe identity (an index; the bootstrap's unit)."""

    mated: np.ndarray
    nonmated: np.ndarray
    mated_ids: np.ndarray
    nonmated_ids: np.ndarray
    identities: int

    def trials(self) -> Trials:
        return Trials(self.mated, self.nonmated, self.mated_ids, self.nonmated_ids, self.identities)

    def fnir_at_fpir(self, rate: float) -> float:
        return fnir_at_fpir(self.mated, self.nonmated, rate)

    @staticmethod
    def pooled(parts: Sequence["Searches"]) -> "Searches":
        """Several experiments' searches as one (identities renumbered so that they stay apart)."""
        offsets = np.cumsum([0] + [p.identities for p in parts])
        return Searches(
            mated=np.concatenate([p.mated for p in parts]),
            nonmated=np.concatenate([p.nonmated for p in parts]),
            mated_ids=np.concatenate([p.mated_ids + o for p, o in zip(parts, offsets)]),
            nonmated_ids=np.concatenate([p.nonmated_ids + o for p, o in zip(parts, offsets)]),
            identities=int(offsets[-1]),
        )


@dataclass(frozen=True)
class OpenSetRate:
    """FNIR at one FPIR with its interval, the threshold it was read at, and how many non-mated searches set it."""

    fpir: float
    fnir: Estimate
    threshold: float  # the lowest observed score with FPIR ≤ fpir (+inf: none; NaN: no searches)
    nonmated: int

    @property
    def unresolved(self) -> bool:
        """Fewer than 1/FPIR non-mated searches: the threshold is above the highest of them (no false positive seen)."""
        return self.fpir * self.nonmated < 1


def open_set_rates(
    searches: Searches, rates: Sequence[float], reps: int = BOOTSTRAP_REPS, seed: int = BOOTSTRAP_SEED
) -> list[OpenSetRate]:
    """FNIR at each FPIR of ``rates`` with identity-bootstrap intervals (the threshold re-read in every replicate)."""
    if not (len(searches.mated) and len(searches.nonmated)):
        return [OpenSetRate(x, count_estimate(0, 0), math.nan, len(searches.nonmated)) for x in rates]
    trials = searches.trials()
    fnir = curve_estimates(trials, {str(x): fnmr_reader(x) for x in rates}, reps=reps, seed=seed)
    curve = trials.curve()
    return [OpenSetRate(x, fnir[str(x)], curve.threshold_at_fmr(x), len(searches.nonmated)) for x in rates]


def fnmr_reader(rate: float) -> Callable[[ErrorCurve], float]:
    """The statistic "FNMR at FMR ``rate``" (FNIR at FPIR, for searches) of a curve, for :func:`curve_estimates`."""
    return lambda curve: curve.fnmr_at_fmr(rate)


def _scores(values: ArrayLike) -> np.ndarray:
    return np.asarray(values, dtype=np.float64).ravel()
