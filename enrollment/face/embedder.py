"""512-d face embeddings with faceplugin's ``fr_feature.onnx``.

Contract, as ``package/lib/fr_feature.js`` uses it: a 112×112 RGB crop aligned to the ArcFace
5-point template, ``(x − 127) / 128``, NCHW; output 512 values, which we L2-normalise so that
the inner product is the cosine similarity the matcher and the calibration table use.

The graph's batch dimension is fixed at 1, so a batch is run one crop at a time; the API is
batch-first anyway so a model with a free batch axis can be swapped in without changing callers.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from enrollment.errors import ImageDecodeError
from enrollment.face._onnx import check_contract, open_session, run
from enrollment.face.align import ALIGNED_SIZE

INPUT_SIZE = ALIGNED_SIZE
INPUT_SHAPE = (1, 3, INPUT_SIZE, INPUT_SIZE)
COLOUR_ORDER = "RGB"
PIXEL_MEAN = 127.0
PIXEL_SCALE = 1.0 / 128.0
EMBEDDING_DIM = 512
# One core, with denormals flushed: "all" (NCHWc layout) 13 ms per crop, "extended" 20 ms.
GRAPH_OPTIMIZATION = "all"


class FaceEmbedder:
    """Wraps ``fr_feature.onnx``; ``embed`` maps aligned crops to unit vectors."""

    def __init__(self, model_path: Path | str, threads: int = 1) -> None:
        self._session = open_session(model_path, threads, GRAPH_OPTIMIZATION)
        self._input = check_contract(self._session, model_path, INPUT_SHAPE)

    def embed(self, aligned: Sequence[np.ndarray]) -> np.ndarray:
        """``[N, 512]`` float32 unit vectors for N aligned ``112×112`` RGB (or grey) uint8 crops."""
        out = np.empty((len(aligned), EMBEDDING_DIM), dtype=np.float32)
        for i, crop in enumerate(aligned):
            tensor = _to_tensor(crop, i)
            (vector,) = run(self._session, {self._input: tensor})
            vector = vector.reshape(-1).astype(np.float32)
            norm = float(np.linalg.norm(vector))
            if not np.isfinite(norm) or norm == 0.0:
                raise ImageDecodeError(f"aligned crop {i} produced a degenerate embedding")
            out[i] = vector / norm
        return out


def _to_tensor(crop: np.ndarray, index: int) -> np.ndarray:
    array = np.asarray(crop)
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.shape != (INPUT_SIZE, INPUT_SIZE, 3):
        raise ImageDecodeError(
            f"aligned crop {index} is {array.shape}; the embedder takes {INPUT_SIZE}×{INPUT_SIZE} RGB "
            "(align it to the ArcFace template first)"
        )
    if array.dtype != np.uint8:
        raise ImageDecodeError(f"aligned crop {index} has dtype {array.dtype}; expected uint8 pixels")
    return np.ascontiguousarray(((array.astype(np.float32) - PIXEL_MEAN) * PIXEL_SCALE).transpose(2, 0, 1)[None])
