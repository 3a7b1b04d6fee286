"""What a face score depends on, as plain data: the calibration table of the embedder is valid for this only.

Every model whose output reaches the embedding (the detector's box is cropped for the landmarks,
the landmarks place the alignment, the embedder makes the vector) is named by its pinned SHA-256,
and every constant of the modules that feed them (input sizes, normalisation, detection
thresholds and padding, the ArcFace template and crop size) is read from the modules themselves.
The quality models (pose, eyes, liveness) only warn or refuse, so they are not part of it.
"""

from __future__ import annotations

from collections.abc import Mapping

from enrollment import models
from enrollment.errors import ModelUnavailable
from enrollment.face import align, detector, embedder, landmarks
from enrollment.provenance import Provenance, module_constants

EMBEDDER = "fr_feature"
# The models whose outputs reach the embedding, in pipeline order (the embedder is added by name).
UPSTREAM_MODELS = ("fr_detect", "fr_landmark")


def score_provenance(
    manifest: Mapping[str, models.ModelSpec] | None = None, embedder_name: str = EMBEDDER
) -> Provenance:
    """The face pipeline's score provenance: model hashes (from the manifest) and the constants of its steps."""
    specs = manifest if manifest is not None else models.load_manifest()
    hashes = {}
    for name in (*UPSTREAM_MODELS, embedder_name):
        if name not in specs:
            raise ModelUnavailable(f"model manifest has no [models.{name}] entry")
        hashes[name] = specs[name].sha256
    return {
        "models": hashes,
        "detector": module_constants(detector),
        "landmarks": module_constants(landmarks),
        "align": module_constants(align),
        "embedder": module_constants(embedder),
    }
