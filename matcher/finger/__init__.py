"""Fingerprint matching: MCC cylinders, the Cython minutiae matcher, and the two-stage 1:N index."""

from matcher.finger.descriptors import PreparedTemplate, prepare
from matcher.finger.index import FingerIndex
from matcher.finger.matching import match

__all__ = ["FingerIndex", "PreparedTemplate", "match", "prepare"]
