"""Benchmarks on the shared Engine: experiment specs, the runner, exact-length prompts,
load/unload memory and the engine overhead probe. Calls the Engine only (never mlx); runs are
recorded through workbench.runs, rows go to CSV through workbench.reports."""
