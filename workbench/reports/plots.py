"""Result rows (read_results DataFrames) -> matplotlib Figures, the same for the CLI, the UI and
the notebooks: medians per configuration, 95% CI bars when there are enough trials. Built
without pyplot (no global state, no display). Knows DataFrames only."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from workbench.reports.summary import MIN_TRIALS_FOR_CI, summarize

_LABELS = {
    "prompt_tps": "prompt processing (tok/s)",
    "generation_tps": "decode (tok/s)",
    "aggregate_generation_tps": "decode, all streams (tok/s)",
    "aggregate_tps": "generated tok/s, all streams (prefill included)",
    "ttft_s": "time to first token (s)",
    "peak_memory_gb": "peak memory (GB)",
}


def _series_label(model: str, df: pd.DataFrame) -> str:
    rows = df[df["model"] == model]
    bits = rows["bits"].dropna()
    return f"{model} ({int(bits.iloc[0])}-bit)" if len(bits) else model


def _line_panel(ax, df: pd.DataFrame, x: str, metric: str, xlabel: str) -> None:
    """One line per model: the median of `metric` at each `x`, CI error bars where known."""
    summary = summarize(df, metrics=[metric], by=["model", x])
    for model, group in summary.groupby("model", sort=False):
        group = group.sort_values(x)
        low = (group[metric] - group[f"{metric}_ci_low"]).to_numpy()
        high = (group[f"{metric}_ci_high"] - group[metric]).to_numpy()
        yerr = None if np.isnan(low).all() else np.vstack([np.nan_to_num(low), np.nan_to_num(high)])
        ax.errorbar(group[x], group[metric], yerr=yerr, marker="o", capsize=3, label=_series_label(model, df))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(_LABELS.get(metric, metric))
    ax.ticklabel_format(axis="y", useOffset=False)  # plain values, never "1e-7 + 5.5e-1"
    if metric == "peak_memory_gb":
        ax.set_ylim(bottom=0)  # memory is read against zero
    ax.grid(True, alpha=0.3)


def _one_batch_size(df: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """Rows of the smallest batch size (plots over lengths must not pool batch sizes), and
    a title note when others were left out."""
    if df.empty or df["batch_size"].nunique() == 1:
        return df, ""
    smallest = int(df["batch_size"].min())
    return df[df["batch_size"] == smallest], f", batch size {smallest}"


def _figure(df: pd.DataFrame, title: str, panels: int) -> tuple[Figure, Sequence]:
    if df.empty:
        raise ValueError("no benchmark rows to plot")
    fig = Figure(figsize=(max(7.0, 5.5 * panels), 4.2), layout="constrained")
    axes = fig.subplots(1, panels, squeeze=False)[0]
    experiments = ", ".join(sorted(set(df["experiment"].astype(str))))
    n = df.groupby(["model", "batch_size", "prompt_tokens", "generation_tokens"]).size().min()
    note = "95% CI bars" if n >= MIN_TRIALS_FOR_CI else f"n={n}, too few trials for CI bars"
    fig.suptitle(f"{title} ({experiments}): medians, {note}", fontsize=11)
    return fig, axes


def _legend(fig: Figure, axes: Sequence) -> None:
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 3), fontsize=9)


def tps_vs_prompt_length(df: pd.DataFrame) -> Figure:
    """Prompt-processing and decode tok/s against prompt length, one line per model
    (pooled over generation lengths)."""
    df, note = _one_batch_size(df)
    fig, axes = _figure(df, f"tok/s vs prompt length{note}", 2)
    _line_panel(axes[0], df, "prompt_tokens", "prompt_tps", "prompt length (tokens)")
    _line_panel(axes[1], df, "prompt_tokens", "generation_tps", "prompt length (tokens)")
    _legend(fig, axes)
    return fig


def tps_vs_generation_length(df: pd.DataFrame) -> Figure:
    """Decode tok/s against generation length, one line per model (pooled over prompt
    lengths): does decode slow down as the reply grows?"""
    df, note = _one_batch_size(df)
    fig, axes = _figure(df, f"decode tok/s vs generation length{note}", 1)
    _line_panel(axes[0], df, "generation_tokens", "generation_tps", "generation length (tokens)")
    _legend(fig, axes)
    return fig


def memory_vs_context(df: pd.DataFrame) -> Figure:
    """Peak memory against context length (prompt + generated tokens), one line per model."""
    df, note = _one_batch_size(df)
    df = df.assign(context_tokens=df["prompt_tokens"] + df["generation_tokens"])
    fig, axes = _figure(df, f"peak memory vs context{note}", 1)
    _line_panel(axes[0], df, "context_tokens", "peak_memory_gb", "context (prompt + generated tokens)")
    _legend(fig, axes)
    return fig


def variant_comparison(
    df: pd.DataFrame, metrics: Sequence[str] = ("prompt_tps", "generation_tps", "peak_memory_gb")
) -> Figure:
    """Grouped bars, one group per (prompt, generation) length pair and one bar per model
    (variant): each metric's median with its CI."""
    df, note = _one_batch_size(df)
    fig, axes = _figure(df, f"variant comparison{note}", len(metrics))
    summary = summarize(df, metrics=metrics, by=["model", "prompt_tokens", "generation_tokens"])
    cells = (
        summary[["prompt_tokens", "generation_tokens"]]
        .drop_duplicates()
        .sort_values(["prompt_tokens", "generation_tokens"])
    )
    names = [f"p{p}/g{g}" for p, g in cells.itertuples(index=False)]
    models = list(dict.fromkeys(summary["model"]))
    width = 0.8 / len(models)
    for ax, metric in zip(axes, metrics, strict=True):
        for i, model in enumerate(models):
            rows = cells.merge(summary[summary["model"] == model], how="left")
            low = (rows[metric] - rows[f"{metric}_ci_low"]).to_numpy()
            high = (rows[f"{metric}_ci_high"] - rows[metric]).to_numpy()
            yerr = None if np.isnan(low).all() else np.vstack([np.nan_to_num(low), np.nan_to_num(high)])
            x = np.arange(len(cells)) + (i - (len(models) - 1) / 2) * width
            ax.bar(x, rows[metric], width, yerr=yerr, capsize=3, label=_series_label(model, df))
        ax.set_xticks(np.arange(len(cells)), names, rotation=30 if len(names) > 4 else 0)
        ax.set_xlabel("prompt / generation tokens")
        ax.set_ylabel(_LABELS.get(metric, metric))
        ax.grid(True, axis="y", alpha=0.3)
    _legend(fig, axes)
    return fig


def tps_vs_batch_size(df: pd.DataFrame) -> Figure:
    """What batching buys: per-stream and all-streams decode tok/s, and peak memory,
    against batch size, one line per model (pooled over lengths)."""
    fig, axes = _figure(df, "tok/s vs batch size", 3)
    _line_panel(axes[0], df, "batch_size", "generation_tps", "batch size (streams)")
    _line_panel(axes[1], df, "batch_size", "aggregate_generation_tps", "batch size (streams)")
    _line_panel(axes[2], df, "batch_size", "peak_memory_gb", "batch size (streams)")
    axes[0].set_ylabel("decode per stream (tok/s)")
    _legend(fig, axes)
    return fig


def load_memory(df: pd.DataFrame) -> Figure:
    """Memory at each stage of a load/unload cycle (bench.memory.load_unload_memory rows):
    MLX active and cache memory and the process RSS, one group of bars per stage."""
    if df.empty:
        raise ValueError("no memory rows to plot")
    fig = Figure(figsize=(7, 4.2), layout="constrained")
    ax = fig.subplots()
    columns = [c for c in ("active_gb", "cache_gb", "process_rss_gb") if c in df.columns]
    labels = [stage.replace(" a ", "\na ", 1) for stage in df["stage"]]
    width = 0.8 / len(columns)
    for i, column in enumerate(columns):
        x = np.arange(len(df)) + (i - (len(columns) - 1) / 2) * width
        ax.bar(x, df[column], width, label=column.removesuffix("_gb").replace("_", " "))
    ax.set_xticks(np.arange(len(df)), labels, fontsize=8)
    ax.set_ylabel("GB (1e9 bytes)")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=9)
    models = ", ".join(dict.fromkeys(df["model"].astype(str)))
    fig.suptitle(f"memory through a load / unload of {models}", fontsize=11)
    return fig


_QUALITY_LABELS = {
    "kl_mean": "mean KL from the reference (nats, lower is better)",
    "perplexity": "perplexity on the evaluation text (lower is better)",
    "top1_agreement": "top-1 agreement with the reference (higher is better)",
    "divergence_mean": "first greedy token that differs (higher is better)",
}
_HIGHER_IS_BETTER = {"top1_agreement", "divergence_mean", "prompt_tps", "generation_tps"}


def pareto_front(df: pd.DataFrame, objectives: Sequence[str]) -> pd.Series:
    """True for rows no other row beats: at least as good on every objective and better
    on one (higher is better for tok/s, agreement and divergence; lower for the rest)."""
    signs = np.array([-1.0 if c in _HIGHER_IS_BETTER else 1.0 for c in objectives])
    values = df[list(objectives)].to_numpy(dtype=float) * signs  # now lower is better everywhere
    front = [not any(np.all(other <= row) and np.any(other < row) for other in values) for row in values]
    return pd.Series(front, index=df.index)


def quant_pareto(df: pd.DataFrame, quality: str = "kl_mean", speed: str = "generation_tps") -> Figure:
    """Quantization sweep rows (reports.schema.QUANT_COLUMNS): `quality` against `speed`,
    marker area proportional to peak memory. Filled markers are the Pareto front over
    quality, speed and memory together; hollow ones are beaten on all three by another."""
    if df.empty:
        raise ValueError("no quantization rows to plot")
    df = df.reset_index(drop=True)
    front = pareto_front(df, [quality, speed, "peak_memory_gb"])
    fig = Figure(figsize=(8.5, 5.2), layout="constrained")
    ax = fig.subplots()
    biggest = float(df["peak_memory_gb"].max()) or 1.0
    sizes = 60 + 900 * df["peak_memory_gb"].astype(float) / biggest
    for on_front in (True, False):
        part = df[front == on_front]
        if part.empty:
            continue
        ax.scatter(
            part[speed],
            part[quality],
            s=sizes[part.index],
            facecolors="tab:blue" if on_front else "none",
            edgecolors="tab:blue",
            alpha=0.6 if on_front else 0.9,
            label="Pareto front (quality, speed, memory)" if on_front else "beaten on all three",
        )
    for _, row in df.iterrows():
        label = f"{row['recipe']}\n{row['peak_memory_gb']:.2f} GB, {row['bits_per_weight']:.1f} bpw"
        if pd.isna(row["bits_per_weight"]):
            label = f"{row['recipe']}\n{row['peak_memory_gb']:.2f} GB"
        ax.annotate(label, (row[speed], row[quality]), textcoords="offset points", xytext=(8, 6), fontsize=8)
    ax.margins(x=0.2, y=0.1)  # room for the labels
    if quality == "kl_mean":
        # KL spans 0 (the reference) to several nats: linear near zero, logarithmic above.
        ax.set_yscale("symlog", linthresh=1e-3)
    ax.set_xlabel(_LABELS.get(speed, speed))
    ax.set_ylabel(_QUALITY_LABELS.get(quality, quality))
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="best", markerscale=0.5)
    models = ", ".join(dict.fromkeys(df["source_model"].astype(str)))
    fig.suptitle(
        f"quantization of {models} ({', '.join(sorted(set(df['experiment'].astype(str))))}): "
        "marker area = peak memory",
        fontsize=11,
    )
    return fig


def arena_plot(models: pd.DataFrame, pairs: pd.DataFrame, caption: str = "") -> Figure:
    """An arena's verdict beside its cost (arena.stats tables): Bradley-Terry ratings with
    their bootstrap intervals, each pair's win rate with its Wilson interval against the
    50% line, and each model's median decode tok/s labelled with its peak memory."""
    if models.empty or pairs.empty:
        raise ValueError("no votes to plot")
    fig = Figure(figsize=(15.0, 1.6 + 0.6 * max(len(models), len(pairs), 3)), layout="constrained")
    rating_ax, pair_ax, speed_ax = fig.subplots(1, 3)
    order = models.iloc[::-1]  # best on top
    y = np.arange(len(order))
    if order["rating"].notna().any():
        err = np.vstack([order["rating"] - order["rating_low"], order["rating_high"] - order["rating"]])
        rating_ax.errorbar(order["rating"], y, xerr=np.nan_to_num(err), fmt="o", capsize=4)
    rating_ax.axvline(1000, color="grey", lw=0.8, ls=":")
    rating_ax.set_yticks(y, order["model"], fontsize=8)
    rating_ax.set_xlabel("Bradley-Terry rating (Elo scale), 95% bootstrap CI")
    labels = [f"{r.model_x}\nvs {r.model_y} (n={r.votes})" for r in pairs.itertuples()]
    py = np.arange(len(pairs))[::-1]
    rate = pairs["win_rate_x"].astype(float)
    perr = np.vstack([rate - pairs["ci_low"].astype(float), pairs["ci_high"].astype(float) - rate])
    pair_ax.errorbar(rate, py, xerr=np.nan_to_num(perr), fmt="s", capsize=4, color="tab:purple")
    pair_ax.axvline(0.5, color="grey", lw=0.8, ls=":")
    pair_ax.set_xlim(0, 1)
    pair_ax.set_yticks(py, labels, fontsize=8)
    pair_ax.set_xlabel("win rate of the first model, Wilson 95% CI")
    speed = (
        order["median_tps"].astype(float) if "median_tps" in order else pd.Series(np.nan, index=order.index)
    )
    speed_ax.barh(y, speed.fillna(0), color="tab:green", alpha=0.7)
    for yi, tps, peak in zip(y, speed, order.get("median_peak_memory_gb", speed * np.nan), strict=True):
        if pd.notna(tps):
            text = f" {tps:.1f} tok/s" + (f", {peak:.2f} GB" if pd.notna(peak) else "")
            speed_ax.annotate(text, (tps, yi), va="center", fontsize=8)
    speed_ax.set_yticks(y, order["model"], fontsize=8)
    speed_ax.set_xlabel("median decode tok/s (label: median peak memory)")
    speed_ax.margins(x=0.45)
    for ax in (rating_ax, pair_ax, speed_ax):
        ax.grid(True, axis="x", alpha=0.3)
    fig.suptitle(caption or "arena", fontsize=10)
    return fig


# The report's plots, by file name stem: what `workbench report` and the UI draw.
REPORT_PLOTS = {
    "tps_vs_prompt_length": tps_vs_prompt_length,
    "tps_vs_generation_length": tps_vs_generation_length,
    "memory_vs_context": memory_vs_context,
    "variant_comparison": variant_comparison,
    "tps_vs_batch_size": tps_vs_batch_size,
}


def loss_curves(df: pd.DataFrame) -> Figure:
    """Fine-tuning losses (FINETUNE_COLUMNS rows) against the step: each run's training loss
    per step as a line, its validation losses as points on a second line."""
    if df.empty:
        raise ValueError("no fine-tuning rows to plot")
    fig = Figure(figsize=(7, 4.2), layout="constrained")
    ax = fig.subplots()
    runs = list(dict.fromkeys(zip(df["variant"].astype(str), df["run_id"].astype(str), strict=True)))
    for variant, run_id in runs:
        rows = df[(df["variant"].astype(str) == variant) & (df["run_id"].astype(str) == run_id)]
        label = variant if len(runs) == 1 else f"{variant} ({run_id})"
        train = rows[rows["kind"] == "train"].sort_values("iteration")
        valid = rows[rows["kind"] == "valid"].sort_values("iteration")
        line = ax.plot(train["iteration"], train["loss"], linewidth=1.2, label=f"{label}: train")
        color = line[0].get_color() if line else None
        ax.plot(valid["iteration"], valid["loss"], "o--", color=color, label=f"{label}: validation")
    ax.set_xlabel("training step")
    ax.set_ylabel("loss (nats per target token)")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=9)
    experiments = ", ".join(dict.fromkeys(df["experiment"].astype(str)))
    fig.suptitle(f"fine-tuning loss ({experiments})", fontsize=11)
    return fig


def kv_quality_plot(df: pd.DataFrame) -> Figure:
    """A KV-quality run (KV_QUALITY rows): next-token KL against context depth, and against the
    KV cache's memory, one line per KV storage (the reference: memory only)."""
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    kl_depth, mem_depth, kl_mem = fig.subplots(1, 3)
    for i, (label, part) in enumerate(df.sort_values("depth").groupby("kv_cache", sort=False)):
        style = {"marker": "o", "label": label, "color": f"C{i}"}  # one colour per storage throughout
        mem_depth.plot(part["depth"], part["kv_cache_gb"], **style)
        if part["kv_bits"].iloc[0] == 0:
            continue
        kl = part["kl_mean"].clip(lower=1e-7)  # log axis
        kl_depth.plot(part["depth"], kl, **style)
        kl_mem.plot(part["kv_cache_gb"], kl, **style)
    for ax, x, y in (
        (kl_depth, "context depth (tokens)", "next-token KL vs reference (nats)"),
        (mem_depth, "context depth (tokens)", "KV cache (GB)"),
        (kl_mem, "KV cache (GB)", "next-token KL vs reference (nats)"),
    ):
        ax.set_xlabel(x)
        ax.set_ylabel(y)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    kl_depth.set_yscale("log")
    kl_mem.set_yscale("log")
    model = df["model"].iloc[0] if len(df) else ""
    fig.suptitle(f"KV cache precision: quality and memory by context depth ({model})")
    return fig


def kv_memory_vs_context(df: pd.DataFrame, weights_gb: float | None = None) -> Figure:
    """Benchmark rows with a kv_bits dimension: the KV cache's size and the peak memory against
    the context (prompt + generated tokens), one line per KV precision; `weights_gb` drawn across."""
    df = df.assign(context_tokens=df["prompt_tokens"] + df["generation_tokens"])
    fig = Figure(figsize=(10, 4.2), layout="constrained")
    kv_ax, peak_ax = fig.subplots(1, 2)
    names = {0: "model's own", 16: "float16"}
    for i, (bits, part) in enumerate(df.groupby("kv_bits")):
        med = part.groupby("context_tokens")[["kv_cache_gb", "peak_memory_gb"]].median().reset_index()
        style = {"marker": "o", "color": f"C{i}", "label": names.get(int(bits), f"{bits}-bit")}
        kv_ax.plot(med["context_tokens"], med["kv_cache_gb"], **style)
        peak_ax.plot(med["context_tokens"], med["peak_memory_gb"], **style)
    if weights_gb:
        peak_ax.axhline(weights_gb, color="grey", linestyle="--", label="weights")
    for ax, label in ((kv_ax, "KV cache (GB)"), (peak_ax, "peak memory (GB)")):
        ax.set_xlabel("context (prompt + generated tokens)")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"memory vs context by KV-cache precision ({df['model'].iloc[0] if len(df) else ''})")
    return fig
