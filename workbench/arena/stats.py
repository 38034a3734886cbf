"""Statistics of pairwise votes (Compare tab or arena) at one researcher's sample sizes: per
pair a Wilson interval, an exact sign test and a stopping hint; per model Bradley-Terry ratings
and speed. Votes are read and checked by arena.votes; knows pandas and scipy, no engine."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import pandas as pd
from scipy.stats import binomtest, norm

from workbench.arena.bradley_terry import (
    BOOTSTRAP,
    BT_COLUMNS,
    CONFIDENCE,
    bradley_terry,
    fit_bradley_terry,
    to_elo,
)
from workbench.arena.votes import check_votes, models_in, read_votes, winner_of

Ties = Literal["exclude", "split"]
__all__ = [
    "BT_COLUMNS",
    "CONFIDENCE",
    "PAIR_COLUMNS",
    "SPEED_COLUMNS",
    "ArenaStats",
    "arena_stats",
    "binomial_test",
    "bradley_terry",
    "check_votes",
    "excludes_half",
    "fit_bradley_terry",
    "model_speed",
    "pair_table",
    "read_votes",
    "to_elo",
    "votes_needed",
    "wilson_interval",
]


# ---- one proportion ---------------------------------------------------------
def wilson_interval(successes: float, n: float, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson score interval for a proportion (no continuity correction). `successes`
    may be fractional (ties split). (nan, nan) when n == 0."""
    if n <= 0:
        return math.nan, math.nan
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be in [0, n], got {successes} of {n}")
    z = float(norm.ppf(0.5 + confidence / 2))
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # The interval holds p exactly (rounding gave 0.9999999999999999 for 10 of 10).
    return max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half))


def binomial_test(k: int, n: int, p: float = 0.5) -> float:
    """Exact two-sided binomial (sign) test of k successes in n trials (scipy's binomtest:
    outcomes no more likely than k count). 1.0 when n == 0."""
    if n == 0:
        return 1.0
    if not 0 <= k <= n:
        raise ValueError(f"k must be in [0, n], got {k} of {n}")
    return float(binomtest(k, n, p).pvalue)


def excludes_half(low: float, high: float) -> bool:
    return low > 0.5 or high < 0.5


def votes_needed(rate: float, confidence: float = CONFIDENCE, limit: int = 100_000) -> int | None:
    """Fewest decisive votes at which a win rate of `rate` has a Wilson interval that
    excludes 50% (None: not within `limit`, e.g. a rate of exactly 50%)."""
    if rate == 0.5 or not 0 <= rate <= 1:
        return None
    lo, hi = 1, limit
    if not excludes_half(*wilson_interval(rate * hi, hi, confidence)):
        return None
    while lo < hi:  # the interval narrows as n grows at a fixed rate: bisect
        mid = (lo + hi) // 2
        if excludes_half(*wilson_interval(rate * mid, mid, confidence)):
            hi = mid
        else:
            lo = mid + 1
    return lo


# ---- pairs ------------------------------------------------------------------
def pair_table(votes: pd.DataFrame, ties: Ties = "exclude", confidence: float = CONFIDENCE) -> pd.DataFrame:
    """One row per pair of models (in order of first appearance): counts, the first
    model's win rate with its Wilson interval, the sign test's p-value, and the hint."""
    if ties not in ("exclude", "split"):
        raise ValueError(f"ties must be 'exclude' or 'split', got {ties!r}")
    order = {m: i for i, m in enumerate(models_in(votes))}
    rows = []
    keys = [
        tuple(sorted((a, b), key=order.__getitem__))
        for a, b in zip(votes["model_a"], votes["model_b"], strict=True)
    ]
    for (x, y), group in votes.groupby(pd.Series(keys, index=votes.index), sort=False):
        winners = [winner_of(r.model_a, r.model_b, r.verdict) for r in group.itertuples(index=False)]
        rows.append(_pair_row(x, y, winners, list(group["verdict"]), ties, confidence))
    return pd.DataFrame(rows, columns=PAIR_COLUMNS)


PAIR_COLUMNS = [
    "model_x",
    "model_y",
    "votes",
    "x_wins",
    "y_wins",
    "ties",
    "both_bad",
    "win_rate_x",
    "ci_low",
    "ci_high",
    "p_value",
    "decided_after",
    "hint",
]


def _pair_row(
    x: str, y: str, winners: Sequence[str | None], verdicts: Sequence[str], ties: Ties, confidence: float
) -> dict[str, object]:
    x_wins = sum(w == x for w in winners)
    y_wins = sum(w == y for w in winners)
    n_ties = sum(v == "tie" for v in verdicts)
    n_bad = sum(v == "both_bad" for v in verdicts)
    undecided = n_ties + n_bad
    if ties == "split":
        k, n = x_wins + undecided / 2, len(winners)
    else:
        k, n = x_wins, x_wins + y_wins
    rate = k / n if n else math.nan
    low, high = wilson_interval(k, n, confidence)
    # When did the interval come to exclude 50% and stay so? (votes counted in file order)
    decided = None
    kx = ky = und = 0
    for i, w in enumerate(winners, start=1):
        kx += w == x
        ky += w == y
        und += w is None
        kk, nn = (kx + und / 2, i) if ties == "split" else (kx, kx + ky)
        excluded = bool(nn) and excludes_half(*wilson_interval(kk, nn, confidence))
        decided = (decided or i) if excluded else None
    return {
        "model_x": x,
        "model_y": y,
        "votes": len(winners),
        "x_wins": x_wins,
        "y_wins": y_wins,
        "ties": n_ties,
        "both_bad": n_bad,
        "win_rate_x": rate,
        "ci_low": low,
        "ci_high": high,
        "p_value": binomial_test(x_wins, x_wins + y_wins),
        "decided_after": decided,
        "hint": _hint(x, y, rate, decided, len(winners), n, confidence),
    }


def _hint(
    x: str, y: str, rate: float, decided: int | None, votes: int, counted: int, confidence: float
) -> str:
    level = f"{confidence:.0%}"
    if decided is not None:
        better = x if rate > 0.5 else y
        return f"{better} preferred: the {level} interval excludes 50% since vote {decided} (of {votes})"
    if not counted or math.isnan(rate):
        return "no decisive votes yet"
    needed = votes_needed(rate, confidence)
    if needed is None:
        return f"no preference so far ({rate:.0%}); at this rate no number of votes would decide"
    share = counted / votes  # decisive votes per vote, to turn decisive votes into votes
    more = max(1, math.ceil(needed / share) - votes)
    return f"not yet: at {rate:.0%}, about {more} more votes would make the {level} interval exclude 50%"


# ---- speed and memory from the same battles --------------------------------
SPEED_COLUMNS = ["model", "replies", "median_tps", "median_peak_memory_gb"]


def model_speed(votes: pd.DataFrame) -> pd.DataFrame:
    """Each model's median decode tok/s and peak memory over the replies in the votes
    (a reply judged in several battles counts once). Empty when the file has no stats."""
    parts = []
    for side in ("a", "b"):
        columns = {
            f"model_{side}": "model",
            f"generation_tps_{side}": "tps",
            f"peak_memory_gb_{side}": "peak",
        }
        if not set(columns) <= set(votes.columns):
            return pd.DataFrame(columns=SPEED_COLUMNS)
        keep = [*columns, *(c for c in (f"output_{side}", "prompt") if c in votes.columns)]
        part = votes[keep].rename(columns=columns | {f"output_{side}": "output"})
        parts.append(part)
    replies = pd.concat(parts, ignore_index=True).drop_duplicates()
    replies[["tps", "peak"]] = replies[["tps", "peak"]].apply(pd.to_numeric, errors="coerce")
    grouped = replies.groupby("model", sort=False)
    out = pd.DataFrame(
        {
            "replies": grouped.size(),
            "median_tps": grouped["tps"].median(),
            "median_peak_memory_gb": grouped["peak"].median(),
        }
    ).reset_index()
    return out[SPEED_COLUMNS]


# ---- everything at once -----------------------------------------------------
@dataclass(frozen=True)
class ArenaStats:
    """The tables the Arena tab, `workbench arena stats` and notebook 04 show."""

    votes: int
    ties: Ties
    confidence: float
    pairs: pd.DataFrame  # pair_table
    models: pd.DataFrame  # bradley_terry joined with model_speed

    def caption(self) -> str:
        how = "excluded" if self.ties == "exclude" else "split (half a win each)"
        return (
            f"{self.votes} votes · win rates with Wilson {self.confidence:.0%} intervals, ties and "
            f"'both bad' {how}; sign test two-sided, exact; Bradley-Terry ratings (Elo scale) with "
            f"bootstrap {self.confidence:.0%} intervals"
        )


def arena_stats(
    votes: pd.DataFrame,
    *,
    ties: Ties = "exclude",
    confidence: float = CONFIDENCE,
    bootstrap: int = BOOTSTRAP,
    seed: int = 0,
) -> ArenaStats:
    """Pair table, Bradley-Terry ratings, and speed/memory of each model, from `votes`."""
    votes = check_votes(votes)
    if votes.empty:
        raise ValueError("no votes yet")
    bt = bradley_terry(votes, bootstrap=bootstrap, confidence=confidence, seed=seed)
    models = bt.merge(model_speed(votes), on="model", how="left")
    return ArenaStats(len(votes), ties, confidence, pair_table(votes, ties, confidence), models)
