"""Benchmarks on the shared Engine: experiment specs (spec.py), the runner (runner.py),
exact-length prompts, provenance capture, load/unload memory, and the engine overhead probe.

Calls the Engine only (never mlx); rows go to CSV through workbench.reports.
"""
