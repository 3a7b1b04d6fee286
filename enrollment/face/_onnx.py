"""One place that opens and runs ONNX Runtime sessions, so every model gets the same threading,
logging and floating-point mode."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from enrollment.errors import ModelUnavailable
from native.denormals import flushed_denormals


_LEVELS = {
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


def open_session(model_path: Path | str, threads: int = 1, optimization: str = "all") -> ort.InferenceSession:
    """A CPU session with ``threads`` intra-op threads (default 1: the service parallelises across requests).

    ``optimization`` is per model because it was measured per model (with :func:`run`'s
    flush-to-zero; without it the NCHWc layout of "all" made fr_feature 3× slower).

    Warnings about initializers listed as graph inputs (these models were exported that way) are
    silenced: they cost a little constant folding, nothing else.
    """
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    options.graph_optimization_level = _LEVELS[optimization]
    try:
        return ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
        raise ModelUnavailable(f"cannot load ONNX model {model_path}: {exc}") from exc


def check_contract(session: ort.InferenceSession, model_path: Path | str, input_shape: Sequence[int]) -> str:
    """Return the input name after checking the graph takes ``input_shape``; a mismatch means a wrong file."""
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise ModelUnavailable(f"{model_path}: expected one input, the graph has {len(inputs)}")
    shape = [d if isinstance(d, int) else -1 for d in inputs[0].shape]
    want = list(input_shape)
    if len(shape) != len(want) or any(s not in (w, -1) for s, w in zip(shape, want)):
        raise ModelUnavailable(f"{model_path}: input shape {inputs[0].shape} does not match the contract {want}")
    return inputs[0].name


def run(session: ort.InferenceSession, feeds: Mapping[str, np.ndarray], outputs: Sequence[str] | None = None) -> list:
    """``session.run`` with denormals flushed to zero on this thread (see ``native.denormals``)."""
    with flushed_denormals():
        return session.run(outputs, feeds)
