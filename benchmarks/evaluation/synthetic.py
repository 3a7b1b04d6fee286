"""The synthetic population of the Scale benchmark and the index builds both its users share.

Random unit centres with ``PER_SUBJECT`` enrolled samples each and one held-out probe per sampled
identity (sample-to-sample cosine ≈ 0.67, as same-person face templates).  Two populations are drawn
the same way from the seeds of ``[synthetic]`` in ``benchmarks/protocol.toml``: the *tune* one, on
which ``benchmarks/tune_index.py`` chooses the IVF search settings of ``matcher/policy.py``, and the
*report* one, on which ``benchmarks/test_scale.py`` measures what RESULTS shows.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.evaluation.protocol import Role, load_protocol
from enrollment.face import DIMENSION as DIM
from matcher.index import VectorIndex
from matcher.policy import IndexPolicy

PER_SUBJECT = 2
SIGMA = 0.7  # sample = centre + σ·noise/√d: sample-to-sample cosine 1/(1+σ²) ≈ 0.67
LOAD_CHUNK = 100_000


@dataclass
class Population:
    vectors: np.ndarray  # [n, d]; rows 2i and 2i+1 belong to subject i
    probes: np.ndarray  # held-out samples
    truth: np.ndarray  # subject index of each probe
    seed: int = 0

    @property
    def subjects(self) -> int:
        return self.vectors.shape[0] // PER_SUBJECT

    def subject_ids(self) -> list[str]:
        """The subject id of every row of ``vectors``."""
        return [f"S{i}" for i in np.arange(self.vectors.shape[0]) // PER_SUBJECT]


def seed_for(role: Role) -> int:
    """The declared seed of the tune or the report population."""
    synthetic = load_protocol().synthetic
    if synthetic is None:
        raise KeyError("benchmarks/protocol.toml declares no [synthetic] seeds")
    return synthetic.seed(role)


def make_population(n: int, probes: int = 1000, seed: int = 11) -> Population:
    subjects = n // PER_SUBJECT
    rng = np.random.default_rng(seed)
    truth = np.sort(rng.choice(subjects, min(probes, subjects), replace=False))
    vectors = np.empty((subjects * PER_SUBJECT, DIM), dtype=np.float32)
    held_out = np.empty((truth.size, DIM), dtype=np.float32)
    chunk = 50_000
    for start in range(0, subjects, chunk):
        count = min(chunk, subjects - start)
        centres = rng.standard_normal((count, DIM), dtype=np.float32)
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
        samples = centres[:, None, :] + SIGMA * rng.standard_normal((count, PER_SUBJECT + 1, DIM), dtype=np.float32) / np.sqrt(DIM)
        samples /= np.linalg.norm(samples, axis=2, keepdims=True)
        vectors[start * PER_SUBJECT : (start + count) * PER_SUBJECT] = samples[:, :PER_SUBJECT].reshape(-1, DIM)
        mine = truth[(truth >= start) & (truth < start + count)]
        held_out[np.searchsorted(truth, mine)] = samples[mine - start, PER_SUBJECT]
    return Population(vectors, held_out, truth, seed)


def population(role: Role, n: int, probes: int = 1000) -> Population:
    """The tune or report population of ``n`` templates, from the protocol's seed."""
    return make_population(n, probes, seed_for(role))


def production_policy(n: int, **knobs) -> IndexPolicy:
    """The production policy, built inline on both cores; tiny smoke runs still exercise the approximate index."""
    approximate_from = min(IndexPolicy().approximate_from, max(n // 2, 1000))
    return IndexPolicy(approximate_from=approximate_from, background_build=False, build_threads=len(os.sched_getaffinity(0)), **knobs)


def production_index(population: Population, policy: IndexPolicy, vector_file: Path | None) -> VectorIndex:
    """The index a server builds: ``VectorIndex`` bulk-loaded in chunks, turned approximate by ``policy``."""
    subjects = population.subject_ids()
    ids = np.arange(population.vectors.shape[0], dtype=np.int64) + 1
    index = VectorIndex(DIM, "m", policy, vector_file)
    with index.bulk_loading():
        for i in range(0, ids.size, LOAD_CHUNK):
            index.add_many(subjects[i : i + LOAD_CHUNK], ids[i : i + LOAD_CHUNK], population.vectors[i : i + LOAD_CHUNK])
    return index


def exact_index(population: Population) -> VectorIndex:
    """Exact search over the same templates: the ground truth recall@1 is read against."""
    index = VectorIndex(DIM, "m", IndexPolicy(approximate_from=0))
    index.add_many(population.subject_ids(), np.arange(population.vectors.shape[0], dtype=np.int64) + 1, population.vectors)
    return index
