"""What a face score depends on, as plain data: the face calibration table is valid for this only.

Every model whose output reaches the template (the detector's box is cropped for the landmarks,
the landmarks place the alignment, the two embedders make its two parts) is named by its pinned
SHA-256, and every constant of the modules that feed them (input sizes, normalisation, detection
thresholds and padding, the ArcFace template and crop size, the fusion's fitted weights) is read
from the modules themselves, at call time.  The quality models (pose, eyes, liveness) only warn
or refuse, so they are not part of it.
"""

from __future__ import annotations

from collections.abc import Mapping

from enrollment import models
from enrollment.errors import ModelUnavailable
from enrollment.face import align, detector, embedder, fused, landmarks, mobilefacenet
from enrollment.provenance import Provenance, module_constants

# The models whose outputs reach the template, in pipeline order (the embedders follow, from enrollment.face.fused).
UPSTREAM_MODELS = ("fr_detect", "fr_landmark")


def score_provenance(manifest: Mapping[str, models.ModelSpec] | None = None) -> Provenance:
    """The face pipeline's score provenance: model hashes (from the manifest) and the constants of its steps."""
    specs = manifest if manifest is not None else models.load_manifest()
    hashes = {}
    for name in (*UPSTREAM_MODELS, *fused.EMBEDDERS):
        if name not in specs:
            raise ModelUnavailable(f"model manifest has no [models.{name}] entry")
        hashes[name] = specs[name].sha256
    return {
        "models": hashes,
        "detector": module_constants(detector),
        "landmarks": module_constants(landmarks),
        "align": module_constants(align),
        "embedder": module_constants(embedder),
        "mobilefacenet": module_constants(mobilefacenet),
        "fused": module_constants(fused),
    }
