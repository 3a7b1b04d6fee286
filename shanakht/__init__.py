"""The Shanakht client package: the generated API (``shanakht.v1``) and ``shanakht.client.connect``.

It is the bottom of the transport stack and imports nothing else of ours, so a checkpoint system
that only calls the service needs this package alone.  The server lives in ``server.py`` and its
helpers in ``transport/``; the command line in ``cli/``.
"""
