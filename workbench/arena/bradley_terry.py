"""Bradley-Terry strengths of models from pairwise votes, fitted by minorization-maximization
with bootstrap percentile intervals, on the Elo scale (mean 1000). Knows numpy, pandas and
scipy; no engine, no Gradio."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.sparse.csgraph import connected_components

from workbench.arena.votes import TIE_VERDICTS, models_in, winner_of

CONFIDENCE = 0.95
BOOTSTRAP = 1000
ELO_BASE, ELO_SCALE = 1000.0, 400.0


@dataclass(frozen=True)
class _Encoded:
    models: list[str]
    winner: np.ndarray  # (V,) index of the winner; for ties, of model_a
    loser: np.ndarray  # (V,)
    tie: np.ndarray  # (V,) bool


def _encode(votes: pd.DataFrame, models: Sequence[str]) -> _Encoded:
    index = {m: i for i, m in enumerate(models)}
    a = votes["model_a"].map(index).to_numpy()
    b = votes["model_b"].map(index).to_numpy()
    verdict = votes["verdict"].to_numpy()
    b_won = verdict == "b"
    return _Encoded(
        list(models),
        np.where(b_won, b, a),
        np.where(b_won, a, b),
        np.isin(verdict, TIE_VERDICTS),
    )


def _win_matrices(enc: _Encoded, weights: np.ndarray) -> np.ndarray:
    """(B, N, N) wins[i, j] = weighted wins of i over j; a tie is half a win each way.
    `weights` is (B, V): how often each vote is drawn."""
    n = len(enc.models)
    full = np.where(enc.tie, 0.5, 1.0)
    half = np.where(enc.tie, 0.5, 0.0)
    wins = np.zeros((weights.shape[0], n * n))
    np.add.at(wins.T, enc.winner * n + enc.loser, (weights * full).T)
    np.add.at(wins.T, enc.loser * n + enc.winner, (weights * half).T)
    return wins.reshape(-1, n, n)


def fit_bradley_terry(
    wins: np.ndarray, prior: float = 1.0, tol: float = 1e-9, max_iter: int = 20_000
) -> np.ndarray:
    """Log-strengths (mean 0) maximising the Bradley-Terry likelihood of `wins`
    ((N, N) or a batch (B, N, N): wins[i, j] = wins of i over j), by Hunter's MM
    updates. `prior` virtual ties are added to every pair compared at least once."""
    wins = np.asarray(wins, dtype=float)
    single = wins.ndim == 2
    wins = wins[None] if single else wins
    compared = (wins + np.swapaxes(wins, 1, 2)).sum(0) > 0
    wins = wins + compared * (prior / 2)
    games = wins + np.swapaxes(wins, 1, 2)
    total_wins = wins.sum(2)
    log_p = np.zeros(wins.shape[:2])
    for _ in range(max_iter):
        p = np.exp(log_p)
        denom = (games / (p[:, :, None] + p[:, None, :])).sum(2)
        new = np.log(np.maximum(total_wins, 1e-300) / np.maximum(denom, 1e-300))
        new -= new.mean(1, keepdims=True)
        if np.max(np.abs(new - log_p)) < tol:
            log_p = new
            break
        log_p = new
    return log_p[0] if single else log_p


def to_elo(log_strength: np.ndarray | float) -> np.ndarray | float:
    """Bradley-Terry log-strength on the Elo scale: 400 points = 10x the odds."""
    return ELO_BASE + ELO_SCALE * np.asarray(log_strength) / math.log(10)


def connected(votes: pd.DataFrame, models: Sequence[str]) -> bool:
    """Whether every model is linked to every other by a chain of compared pairs."""
    index = {m: i for i, m in enumerate(models)}
    adjacency = np.zeros((len(models), len(models)))
    for a, b in zip(votes["model_a"], votes["model_b"], strict=True):
        adjacency[index[a], index[b]] = adjacency[index[b], index[a]] = 1
    return connected_components(adjacency, directed=False)[0] == 1


BT_COLUMNS = ["model", "rating", "rating_low", "rating_high", "strength", "battles", "wins", "losses", "ties"]


def bradley_terry(
    votes: pd.DataFrame,
    *,
    bootstrap: int = BOOTSTRAP,
    confidence: float = CONFIDENCE,
    seed: int = 0,
    prior: float = 1.0,
) -> pd.DataFrame:
    """One row per model, best first: Elo-scale rating with its bootstrap percentile
    interval (`bootstrap` resamples of the votes, seeded), log-strength, and counts.
    Ratings are NaN when the models do not form one connected comparison graph."""
    models = models_in(votes)
    counts = _counts(votes, models)
    if len(models) < 2 or not connected(votes, models):
        out = pd.DataFrame({"model": models, **counts})
        for c in ("rating", "rating_low", "rating_high", "strength"):
            out[c] = math.nan
        return out[BT_COLUMNS]
    enc = _encode(votes, models)
    v = len(votes)
    point = fit_bradley_terry(_win_matrices(enc, np.ones((1, v)))[0], prior)
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(v, np.full(v, 1 / v), size=bootstrap) if bootstrap else np.ones((1, v))
    boot = fit_bradley_terry(_win_matrices(enc, draws.astype(float)), prior)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(boot, [alpha, 1 - alpha], axis=0)
    out = pd.DataFrame(
        {
            "model": models,
            "rating": to_elo(point),
            "rating_low": to_elo(low),
            "rating_high": to_elo(high),
            "strength": point,
            **counts,
        }
    )
    return out[BT_COLUMNS].sort_values("rating", ascending=False, kind="stable").reset_index(drop=True)


def _counts(votes: pd.DataFrame, models: Sequence[str]) -> dict[str, list[int]]:
    battles = dict.fromkeys(models, 0)
    wins, losses, ties = dict(battles), dict(battles), dict(battles)
    for r in votes.itertuples(index=False):
        for m in (r.model_a, r.model_b):
            battles[m] += 1
        winner = winner_of(r.model_a, r.model_b, r.verdict)
        if winner is None:
            ties[r.model_a] += 1
            ties[r.model_b] += 1
        else:
            wins[winner] += 1
            losses[r.model_b if winner == r.model_a else r.model_a] += 1
    return {
        "battles": [battles[m] for m in models],
        "wins": [wins[m] for m in models],
        "losses": [losses[m] for m in models],
        "ties": [ties[m] for m in models],
    }
