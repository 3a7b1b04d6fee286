"""512-d face embeddings with faceplugin's ``fr_feature.onnx``, and what every aligned-crop embedder shares.

Contract, as ``package/lib/fr_feature.js`` uses it: a 112×112 RGB crop aligned to the ArcFace
5-point template, ``(x − 127) / 128``, NCHW; output 512 values, which we L2-normalise so that
the inner product is the cosine similarity.  The product's face template is not this vector alone
but its fusion with MobileFaceNet's (``enrollment.face.fused``).

The graph's batch dimension is fixed at 1, so a batch is run one crop at a time; the API is
batch-first anyway so a model with a free batch axis can be swapped in without changing callers.
:class:`AlignedCropEmbedder` is that loop, shared with ``enrollment.face.mobilefacenet``: a model
states its contract as module constants and its class repeats them as class attributes.
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


class AlignedCropEmbedder:
    """One ONNX session that maps aligned 112×112 crops, one at a time, to unit vectors of ``dimension`` values.

    A model class sets the class attributes from its module's contract constants.
    """

    label = "the embedder"  # how errors name the model
    dimension = 0
    input_shape: tuple[int, ...] = INPUT_SHAPE
    pixel_mean = 0.0
    pixel_scale = 1.0
    optimization = "all"

    def __init__(self, model_path: Path | str, threads: int = 1) -> None:
        self._session = open_session(model_path, threads, self.optimization)
        self._input = check_contract(self._session, model_path, self.input_shape)

    def embed(self, aligned: Sequence[np.ndarray]) -> np.ndarray:
        """``[N, dimension]`` float32 unit vectors for N aligned ``112×112`` RGB (or grey) uint8 crops."""
        out = np.empty((len(aligned), self.dimension), dtype=np.float32)
        for i, crop in enumerate(aligned):
            (vector,) = run(self._session, {self._input: self.tensor(crop, i)})
            vector = vector.reshape(-1).astype(np.float32)
            norm = float(np.linalg.norm(vector))
            if not np.isfinite(norm) or norm == 0.0:
                raise ImageDecodeError(f"aligned crop {i} produced a degenerate embedding ({self.label})")
            out[i] = vector / norm
        return out

    def tensor(self, crop: np.ndarray, index: int) -> np.ndarray:
        """The model's ``[1, 3, 112, 112]`` input for one crop (``index`` names it in errors)."""
        return crop_tensor(crop, index, self.pixel_mean, self.pixel_scale, self.label)


class FaceEmbedder(AlignedCropEmbedder):
    """Wraps ``fr_feature.onnx``; ``embed`` maps aligned crops to 512-d unit vectors."""

    label, dimension, input_shape = "fr_feature", EMBEDDING_DIM, INPUT_SHAPE
    pixel_mean, pixel_scale, optimization = PIXEL_MEAN, PIXEL_SCALE, GRAPH_OPTIMIZATION


def crop_tensor(crop: np.ndarray, index: int, mean: float, scale: float, label: str) -> np.ndarray:
    """``(x − mean) · scale`` of an aligned ``112×112`` RGB (or grey) uint8 crop, as a contiguous NCHW batch of one."""
    array = np.asarray(crop)
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.shape != (ALIGNED_SIZE, ALIGNED_SIZE, 3):
        raise ImageDecodeError(
            f"aligned crop {index} is {array.shape}; {label} takes {ALIGNED_SIZE}×{ALIGNED_SIZE} RGB "
            "(align it to the ArcFace template first)"
        )
    if array.dtype != np.uint8:
        raise ImageDecodeError(f"aligned crop {index} has dtype {array.dtype}; expected uint8 pixels")
    return np.ascontiguousarray(((array.astype(np.float32) - mean) * scale).transpose(2, 0, 1)[None])
