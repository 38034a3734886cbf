"""The ONE benchmark CSV contract: every column, its type, whether it may be empty.

The runner writes rows with exactly these keys; `reports.store.read_results`
checks a file against them. Knows columns and types, not how they are measured.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ColumnKind = Literal["str", "int", "float", "bool"]


@dataclass(frozen=True)
class Column:
    name: str
    kind: ColumnKind
    doc: str
    nullable: bool = False


# What bench.provenance.capture() stamps on every row of every report (benchmarks, votes).
PROVENANCE_COLUMNS: tuple[Column, ...] = (
    Column("run_id", "str", "one id per run (kept by --resume)"),
    Column("timestamp", "str", "UTC time (ISO 8601) the row was written"),
    Column("git_sha", "str", "commit of the workbench checkout ('unknown' outside git)"),
    Column("git_dirty", "bool", "uncommitted changes to tracked files", nullable=True),
    Column("python_version", "str", "Python version"),
    Column("mlx_version", "str", "mlx version"),
    Column("mlx_lm_version", "str", "mlx-lm version"),
    Column("workbench_version", "str", "workbench version"),
    Column("platform", "str", "OS and machine (platform.platform())"),
    Column("cpu_count", "int", "logical CPUs"),
    Column("device", "str", "MLX device: cpu or gpu"),
    Column("blas", "str", "BLAS library behind CPU matmuls ('gpu' on Metal/CUDA)"),
)
PROVENANCE_FIELDS: tuple[str, ...] = tuple(c.name for c in PROVENANCE_COLUMNS)

BENCH_COLUMNS: tuple[Column, ...] = (
    *PROVENANCE_COLUMNS,
    Column("experiment", "str", "the spec's name"),
    Column("model", "str", "registered model id"),
    Column("variant", "str", "variant of that id (f32, 4bit, gguf, mlx ...)"),
    Column("bits", "int", "weight bits (32 = dense float32); empty when unknown", nullable=True),
    Column("group_size", "int", "quantization group size; empty for dense weights", nullable=True),
    Column("batch_size", "int", "sequences generated together"),
    Column("prompt_tokens", "int", "exact prompt length in tokens"),
    Column("generation_tokens", "int", "tokens generated (end-of-sequence ignored)"),
    Column("trial", "int", "trial number within its configuration, from 0"),
    Column("seed", "int", "sampler seed"),
    Column("sampler", "str", "how tokens were chosen ('greedy')"),
    Column("prompt_sha", "str", "sha256 of the prompt token ids (first 16 hex digits)"),
    Column("ttft_s", "float", "time to first token: prompt processing, after any load"),
    Column("prompt_tps", "float", "prompt tokens / ttft_s"),
    Column("generation_tps", "float", "tokens after the first / time after the first (decode only)"),
    Column("peak_memory_gb", "float", "MLX peak memory during the trial (reset per trial; 1 GB = 1e9 B)"),
    Column("load_s", "float", "how long loading the model took in this process", nullable=True),
    Column("spec_sha", "str", "sha256 of the full spec (first 16 hex digits); the sidecar has the spec"),
)
BENCH_FIELDS: tuple[str, ...] = tuple(c.name for c in BENCH_COLUMNS)
# The columns that identify one trial: --resume skips rows that match on these.
TRIAL_KEY: tuple[str, ...] = ("model", "batch_size", "prompt_tokens", "generation_tokens", "trial")
# The columns that identify one configuration, for summaries and plots.
CONFIG_KEY: tuple[str, ...] = ("model", "variant", "batch_size", "prompt_tokens", "generation_tokens")
