"""Shanakht enrollment: turn a biometric sample (image bytes) into a ``matcher`` template.

Plain library: no gRPC, no storage.  Each modality exposes one extractor (``enrollment.face``);
models are described, fetched and verified through ``enrollment.models``.
"""
