"""``native.denormals`` flushes denormals on the calling thread only while the context is open."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from native.denormals import SUPPORTED, flushed_denormals

pytestmark = pytest.mark.skipif(not SUPPORTED, reason="no flush-to-zero control on this CPU architecture")

TINY = np.finfo(np.float32).tiny  # smallest normal float32


def halved(x: np.ndarray) -> np.ndarray:
    """x / 2 computed by NumPy on this thread: denormal for x = TINY unless flushed."""
    return np.multiply(x, np.float32(0.5))


def test_denormals_are_zero_inside_and_kept_outside():
    x = np.full(8, TINY, dtype=np.float32)
    assert np.all(halved(x) > 0)
    with flushed_denormals():
        assert np.all(halved(x) == 0)
    assert np.all(halved(x) > 0)


def test_mode_is_restored_when_the_block_raises():
    x = np.full(8, TINY, dtype=np.float32)
    with pytest.raises(RuntimeError), flushed_denormals():
        raise RuntimeError("model failed")
    assert np.all(halved(x) > 0)


def test_other_running_threads_are_not_affected():
    x = np.full(8, TINY, dtype=np.float32)
    seen: list[bool] = []
    go = threading.Event()

    def check() -> None:
        go.wait()
        seen.append(bool(np.all(halved(x) > 0)))

    worker = threading.Thread(target=check)  # started outside: a thread inherits its creator's mode
    worker.start()
    with flushed_denormals():
        go.set()
        worker.join()
        assert np.all(halved(x) == 0)
    assert seen == [True]
