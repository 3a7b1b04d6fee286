"""Cython kernels of the matching core; ``native.reference`` holds their NumPy definitions."""

from native.rescore import rescore
from native.topk import best_per_subject, top_k

__all__ = ["best_per_subject", "rescore", "top_k"]
