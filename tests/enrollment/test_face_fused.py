"""The face template: fr_feature and MobileFaceNet of one crop, weighted so that its cosine ranks pairs as the fitted fusion does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from enrollment.errors import ImageDecodeError
from enrollment.face import fused, mobilefacenet
from enrollment.face.embedder import crop_tensor
from enrollment.face.pipeline import FaceExtractor
from tests.conftest import unit_vectors


def test_the_template_cosine_is_an_increasing_affine_function_of_the_fused_score() -> None:
    u, v = unit_vectors(40, 512, seed=1), unit_vectors(40, 192, seed=2)
    templates = fused.combine(u, v)
    assert templates.shape == (40, fused.DIMENSION) and np.allclose(np.linalg.norm(templates, axis=1), 1.0, atol=1e-6)
    cos_fr, cos_mfn, cos = (u @ u.T)[np.triu_indices(40, 1)], (v @ v.T)[np.triu_indices(40, 1)], (templates @ templates.T)[np.triu_indices(40, 1)]
    a2, b2 = 1 / fused.FR_FEATURE_IMPOSTOR_STD, fused.MOBILEFACENET_WEIGHT / fused.MOBILEFACENET_IMPOSTOR_STD
    assert np.allclose(cos, (a2 * cos_fr + b2 * cos_mfn) / (a2 + b2), atol=1e-6)
    # z_fr + w·z_mfn with any means: the template cosine is α·score + β with α > 0, so every threshold keeps its pairs.
    score = (cos_fr - 0.05) / fused.FR_FEATURE_IMPOSTOR_STD + fused.MOBILEFACENET_WEIGHT * (cos_mfn - 0.13) / fused.MOBILEFACENET_IMPOSTOR_STD
    slope, intercept = np.polyfit(score, cos, 1)
    assert slope > 0 and np.allclose(cos, slope * score + intercept, atol=1e-6)


def test_crops_are_normalised_as_mobilefacenet_was_trained() -> None:
    crop = np.zeros((112, 112, 3), dtype=np.uint8)
    crop[..., 0], crop[..., 2] = 255, 128
    tensor = crop_tensor(crop, 0, mobilefacenet.PIXEL_MEAN, mobilefacenet.PIXEL_SCALE, "MobileFaceNet")
    assert tensor.shape == (1, 3, 112, 112) and tensor.dtype == np.float32
    # (x − 127.5) / 128, RGB planes in order
    assert (tensor[0, 0, 0, 0], tensor[0, 1, 0, 0], tensor[0, 2, 0, 0]) == (0.99609375, -0.99609375, 0.00390625)
    with pytest.raises(ImageDecodeError, match="MobileFaceNet takes 112×112 RGB.*align it"):
        crop_tensor(np.zeros((96, 112, 3), dtype=np.uint8), 0, mobilefacenet.PIXEL_MEAN, mobilefacenet.PIXEL_SCALE, "MobileFaceNet")


def test_the_extractor_embeds_each_crop_with_both_models(extractor: FaceExtractor, model_dir: Path) -> None:
    crops = list(np.random.default_rng(0).integers(0, 256, (2, 112, 112, 3), dtype=np.uint8))
    first, second = extractor.embedder.embed_parts(crops)
    assert first.shape == (2, 512) and second.shape == (2, mobilefacenet.EMBEDDING_DIM)
    assert np.allclose(np.linalg.norm(second, axis=1), 1.0, atol=1e-5)
    # MobileFaceNet's free batch axis is run one crop at a time, like fr_feature's fixed one.
    assert np.array_equal(second[1], extractor.embedder.second.embed(crops[1:])[0])
    templates = extractor.embed_aligned(crops)
    assert np.array_equal(templates, fused.combine(first, second))
    a, b = fused.part_weights()
    norm = np.sqrt(a * a + b * b)
    assert np.allclose(templates[:, :512], first * a / norm, atol=1e-6)
    assert np.allclose(templates[:, 512:], second * b / norm, atol=1e-6)
