"""Micro-batching: concurrent searches get exactly the answers they would get alone, in fewer FAISS calls."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from matcher.batching import MicroBatcher
from matcher.index import VectorIndex
from matcher.policy import IndexPolicy
from tests.conftest import noisy, unit_vectors


def test_concurrent_searches_match_sequential_ones_and_are_batched():
    vectors = unit_vectors(20_000, 64, seed=3)
    batched = VectorIndex(64, "m", IndexPolicy(micro_batch=32))
    alone = VectorIndex(64, "m", IndexPolicy(micro_batch=0))
    for index in (batched, alone):
        for start in range(0, len(vectors), 5000):
            ids = np.arange(start, start + 5000)
            index.add_many([f"s{i // 2}" for i in ids], ids + 1, vectors[ids])
    probes = noisy(vectors[::50], sigma=0.8, seed=4)
    tops = [1 + i % 12 for i in range(len(probes))]  # different top per caller
    expected = [alone.search(p[None], t)[0] for p, t in zip(probes, tops)]
    with ThreadPoolExecutor(16) as pool:
        got = list(pool.map(lambda i: batched.search(probes[i][None], tops[i])[0], range(len(probes))))
    for e, g in zip(expected, got):
        assert g.subject_ids == e.subject_ids
        np.testing.assert_allclose(g.similarities, e.similarities, rtol=1e-5, atol=1e-6)
    batcher = batched._batcher
    assert batcher.queries == len(probes)
    assert batcher.batches < len(probes)  # some calls were shared


def test_a_failing_batch_fails_every_waiter_and_the_batcher_recovers():
    calls = []
    gate = threading.Event()

    def search(queries, top):
        calls.append(len(queries))
        if len(calls) == 1:
            gate.wait(5)  # hold the first batch so others queue behind it
        if len(calls) == 2:
            raise RuntimeError("boom")
        return [q.sum() for q in queries]

    batcher = MicroBatcher(search, lambda r, top: r, max_batch=8)
    results: list = []

    def call(i):
        try:
            results.append(batcher.search(np.full(3, float(i)), 1))
        except RuntimeError as error:
            results.append(error)

    first = threading.Thread(target=call, args=(0,))
    first.start()
    while not calls:
        pass
    waiters = [threading.Thread(target=call, args=(i,)) for i in range(1, 4)]
    for t in waiters:
        t.start()
    while len(batcher._queue) < 3:
        pass
    gate.set()
    for t in [first, *waiters]:
        t.join(5)
    assert sum(isinstance(r, RuntimeError) for r in results) == 3 and 0.0 in results
    assert batcher.search(np.ones(3), 1) == pytest.approx(3.0)  # not stuck busy
