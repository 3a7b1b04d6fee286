"""Evaluation code for the benchmarks and the calibration command, kept out of the production packages.

``datasets`` reads the labelled sets of the data folder, ``face`` embeds a face set, ``finger``
extracts a finger set (caching LEADER's output), and ``metrics`` holds the one implementation of
every error rate the benchmarks report.  ``enrollment``, ``matcher`` and the server never import
this package: it reads research-only data and exists to measure them.
"""
