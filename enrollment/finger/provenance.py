"""What a minutiae-matcher score depends on, as plain data: the finger calibration table is valid for this only.

The LEADER model (by its pinned SHA-256) and every module-level constant of the steps between the
image and the score, read from the modules at call time so that a constant added later is
covered without anyone listing it: resampling (``enrollment.finger.image``), segmentation (the
print mask decides which minutiae are kept), minutiae extraction (quality and type thresholds,
the cap on their number), the template's quantisation (``matcher.finger.template``), the MCC
descriptor (``matcher.finger.descriptors``) and the matcher (``matcher.finger.parameters``).
A few of these only gate acquisition (minimum sizes); changing one costs a refit it did not
strictly need, which is cheaper than a table that silently outlives the matcher.
"""

from __future__ import annotations

from collections.abc import Mapping

from enrollment import models
from enrollment.errors import ModelUnavailable
from enrollment.finger import image, minutiae, segmentation
from enrollment.provenance import Provenance, module_constants
from matcher.finger import descriptors, parameters, template

DESCRIBES = f"MCC minutiae matcher (matcher.finger) on {minutiae.MODEL_ID} minutiae"


def score_provenance(manifest: Mapping[str, models.ModelSpec] | None = None) -> Provenance:
    """The finger pipeline's score provenance: the LEADER hash and the constants of every step."""
    specs = manifest if manifest is not None else models.load_manifest()
    if minutiae.MODEL_NAME not in specs:
        raise ModelUnavailable(f"model manifest has no [models.{minutiae.MODEL_NAME}] entry")
    return {
        "models": {minutiae.MODEL_NAME: specs[minutiae.MODEL_NAME].sha256},
        "image": module_constants(image),
        "segmentation": module_constants(segmentation),
        "minutiae": module_constants(minutiae),
        "template": module_constants(template),
        "descriptors": module_constants(descriptors),
        "matcher": module_constants(parameters),
    }
