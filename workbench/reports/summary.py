"""Summaries of benchmark rows: per configuration, the median of each metric and a
distribution-free 95% confidence interval for it (order statistics; NaN under 6 trials).
Knows DataFrames, not how rows were measured."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from workbench.reports.schema import CONFIG_KEY

METRICS: tuple[str, ...] = (
    "ttft_s",
    "prompt_tps",
    "generation_tps",
    "aggregate_generation_tps",
    "peak_memory_gb",
)
CONFIDENCE = 0.95
# The smallest sample whose min..max brackets the median with >= 95% confidence.
MIN_TRIALS_FOR_CI = 6


def median_ci(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """(median, low, high) of `values`; low/high are NaN below MIN_TRIALS_FOR_CI values."""
    from scipy import stats

    x = np.asarray([v for v in values if not math.isnan(v)], dtype=float)
    if x.size == 0:
        return math.nan, math.nan, math.nan
    median = float(np.median(x))
    if x.size < MIN_TRIALS_FOR_CI:
        return median, math.nan, math.nan
    ci = stats.quantile_test(x, q=median, p=0.5).confidence_interval(confidence)
    return median, float(ci.low), float(ci.high)


def summarize(
    df: pd.DataFrame, metrics: Sequence[str] = METRICS, by: Sequence[str] = CONFIG_KEY
) -> pd.DataFrame:
    """One row per configuration (`by`): n, then `<metric>`, `<metric>_ci_low`,
    `<metric>_ci_high` for each metric, sorted by the configuration columns."""
    records = []
    for key, group in df.groupby(list(by), sort=True, dropna=False):
        record = dict(zip(by, key if isinstance(key, tuple) else (key,), strict=True))
        record["n"] = len(group)
        for metric in metrics:
            median, low, high = median_ci(group[metric].astype(float).tolist())
            record[metric] = median
            record[f"{metric}_ci_low"] = low
            record[f"{metric}_ci_high"] = high
        records.append(record)
    return pd.DataFrame.from_records(records)


def format_summary(summary: pd.DataFrame, metrics: Sequence[str] = METRICS) -> pd.DataFrame:
    """The summary as strings for a terminal or a UI table: 'median [low, high]'."""
    out = summary[[c for c in summary.columns if c in CONFIG_KEY or c == "n"]].copy()
    for metric in metrics:
        digits = 3 if metric in ("ttft_s", "peak_memory_gb") else 1
        out[metric] = [
            _cell(m, lo, hi, digits)
            for m, lo, hi in zip(
                summary[metric], summary[f"{metric}_ci_low"], summary[f"{metric}_ci_high"], strict=True
            )
        ]
    return out


def _cell(median: float, low: float, high: float, digits: int) -> str:
    if math.isnan(median):
        return "-"
    if math.isnan(low):
        return f"{median:.{digits}f}"
    return f"{median:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"
