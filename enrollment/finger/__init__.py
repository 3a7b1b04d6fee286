"""Fingerprint enrollment: image bytes → minutiae template (LEADER) and quality.

The public entry point is ``enrollment.finger.pipeline.FingerExtractor`` (an
``enrollment.extractor.Extractor``).  Templates and their ISO 19794-2 records belong to the
matcher (``matcher.finger``), which must read stored records without depending on this package.
"""
