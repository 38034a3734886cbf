"""Benchmarks on the shared Engine: provenance capture and measurement runs.

Calls the Engine only (never mlx); results are plain dict rows written as CSV.
"""
