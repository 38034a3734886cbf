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

# One row per variant of a quantization sweep (workbench quantize --sweep): what it is,
# what it costs in quality against the reference, and its speed and memory (medians of
# the benchmark runner's trials, which land in <name>.bench.csv with BENCH_COLUMNS).
QUANT_COLUMNS: tuple[Column, ...] = (
    *PROVENANCE_COLUMNS,
    Column("experiment", "str", "the sweep spec's name"),
    Column("model", "str", "registered id of the variant (the reference's own id on its row)"),
    Column("source_model", "str", "the model the variant was made from"),
    Column("reference_model", "str", "the model quality is measured against"),
    Column("recipe", "str", "q<bits>-g<group>, mixed_*-g<group>, mxfp4, ..., f32; 'reference' on its row"),
    Column("mode", "str", "mlx quantization mode (affine, mxfp4, ...); 'none' for dense weights"),
    Column("bits", "int", "bits of most weights (32 = dense float32)", nullable=True),
    Column("group_size", "int", "quantization group size; empty for dense weights", nullable=True),
    Column("bits_per_weight", "float", "stored bits per parameter, scales included", nullable=True),
    Column("size_gb", "float", "size on disk (1 GB = 1e9 B)", nullable=True),
    Column("quantize_s", "float", "how long making the variant took (when it was made)", nullable=True),
    Column("cached", "bool", "the variant existed from an earlier run and was reused", nullable=True),
    Column("eval_text_sha256", "str", "sha256 of the evaluation text"),
    Column("eval_tokens", "int", "next-token positions scored"),
    Column("perplexity", "float", "exp(mean negative log-likelihood) on the evaluation text"),
    Column("reference_perplexity", "float", "the reference's perplexity on the same windows"),
    Column("kl_mean", "float", "mean KL(reference || variant) of next-token distributions, nats"),
    Column("top1_agreement", "float", "share of positions where variant and reference pick the same token"),
    Column("divergence_prompts", "int", "prompts continued greedily"),
    Column("divergence_tokens", "int", "length of each greedy continuation"),
    Column("divergence_mean", "float", "mean first token where greedy continuations differ", nullable=True),
    Column("identical_fraction", "float", "share of prompts continued identically", nullable=True),
    Column("load_s", "float", "load time of the variant", nullable=True),
    Column("peak_memory_gb", "float", "median MLX peak memory over the speed trials"),
    Column("prompt_tps", "float", "median prompt-processing tok/s over the speed trials"),
    Column("generation_tps", "float", "median decode tok/s over the speed trials"),
    Column("speed_trials", "int", "recorded speed trials (rows in <name>.bench.csv)"),
    Column("prompt_tokens", "int", "prompt length of the speed trials"),
    Column("generation_tokens", "int", "generation length of the speed trials"),
    Column("seed", "int", "sampler seed"),
    Column("spec_sha", "str", "sha256 of the full sweep spec (first 16 hex digits)"),
)
QUANT_FIELDS: tuple[str, ...] = tuple(c.name for c in QUANT_COLUMNS)
# The columns a sweep's summary table shows (CLI and UI).
QUANT_SUMMARY_FIELDS: tuple[str, ...] = (
    "model",
    "recipe",
    "bits_per_weight",
    "size_gb",
    "perplexity",
    "kl_mean",
    "top1_agreement",
    "divergence_mean",
    "peak_memory_gb",
    "prompt_tps",
    "generation_tps",
)

# One row per load-test run (workbench loadtest): C streaming clients of an
# OpenAI-compatible server, R requests in all. Server-reported columns are empty when
# the server sends no usage in its streams.
LOAD_COLUMNS: tuple[Column, ...] = (
    *PROVENANCE_COLUMNS,
    Column("server_label", "str", "what was measured, free text (--label: workbench, mlx_lm.server ...)"),
    Column("base_url", "str", "the server's OpenAI base URL"),
    Column("model", "str", "model name sent with every request"),
    Column("concurrency", "int", "requests kept in flight"),
    Column("requests", "int", "requests sent (timed; warm-ups not counted)"),
    Column("prompt_tokens", "int", "requested prompt length (words of a fixed list: ~1 token each)"),
    Column("prompt_tokens_reported", "float", "mean usage.prompt_tokens the server reported", nullable=True),
    Column("cached_tokens_reported", "float", "mean usage cached_tokens the server reported", nullable=True),
    Column("max_tokens", "int", "max_tokens of every request"),
    Column("ignore_eos", "bool", "the request asked to generate past end-of-sequence"),
    Column("completed", "int", "requests that ended without an error"),
    Column("errors", "int", "requests that failed (or were not sent before the overall timeout)"),
    Column("first_error", "str", "the first error, 'Type: message'", nullable=True),
    Column("wall_s", "float", "first request sent -> last request ended"),
    Column("completion_tokens", "int", "tokens generated by completed requests (usage, else chunks)"),
    Column("aggregate_tps", "float", "completion_tokens / wall_s"),
    Column("requests_per_s", "float", "completed / wall_s"),
    Column("ttft_p50_s", "float", "median time from send to the first text", nullable=True),
    Column("ttft_p95_s", "float", "95th percentile of that", nullable=True),
    Column("itl_p50_s", "float", "median gap between successive text chunks", nullable=True),
    Column("itl_p95_s", "float", "95th percentile of that", nullable=True),
    Column("seed", "int", "prompt seed (prompts also differ per run, so no run reuses another's)"),
)
LOAD_FIELDS: tuple[str, ...] = tuple(c.name for c in LOAD_COLUMNS)

# One row per turn of a multi-turn chat benchmark (workbench loadtest --multi-turn):
# the history grows to about history_tokens; the last turn asks a short question on
# top of all of it, so its TTFT is what a prompt cache can save.
MULTITURN_COLUMNS: tuple[Column, ...] = (
    *PROVENANCE_COLUMNS,
    Column("server_label", "str", "what was measured, free text (--label: e.g. cache-on, cache-off)"),
    Column("base_url", "str", "the server's OpenAI base URL"),
    Column("model", "str", "model name sent with every request"),
    Column("conversation", "int", "conversation number within the run, from 0"),
    Column("turns", "int", "turns per conversation"),
    Column("history_tokens", "int", "requested history length before the last turn (~1 token a word)"),
    Column("max_tokens", "int", "max_tokens of every reply"),
    Column("turn", "int", "turn number, from 1; the last one carries the whole history"),
    Column("prompt_tokens_reported", "int", "usage.prompt_tokens the server reported", nullable=True),
    Column("cached_tokens_reported", "int", "usage cached_tokens the server reported", nullable=True),
    Column("ttft_s", "float", "time from send to the first text", nullable=True),
    Column("completion_tokens", "int", "reply tokens (usage, else chunks)", nullable=True),
    Column("total_s", "float", "time from send to the end of the reply", nullable=True),
    Column("error", "str", "'Type: message' when the turn failed (the conversation stops)", nullable=True),
    Column("seed", "int", "text seed (texts also differ per conversation, so none reuses another's)"),
)
MULTITURN_FIELDS: tuple[str, ...] = tuple(c.name for c in MULTITURN_COLUMNS)
