"""Face: image bytes → detected faces → 68 landmarks → 112×112 aligned crops → 512-d templates.

The public entry point is ``enrollment.face.pipeline.FaceExtractor`` (an
``enrollment.extractor.Extractor``); the model classes, one per ONNX file, are importable on
their own for tests and benchmarks.
"""

#: The shipped embedder's template format and length (manifest entry ``[models.fr_feature]``;
#: ``tests/enrollment/test_models.py`` keeps them equal to the manifest and the model).
MODEL_ID = "faceplugin-fr_feature@0.0.1"
DIMENSION = 512
