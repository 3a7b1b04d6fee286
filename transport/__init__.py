"""Helpers of the gRPC transport, below ``server.py``: interceptors (errors → status, access, audit),
access control, the audit trail, sample decoding, settings and logging.

They know gRPC and protobuf; ``enrollment/`` and ``matcher/`` below them do not.
"""
