"""Blind comparisons: which model answers at which hidden label, and the vote rows
(results/votes.csv, votes_<N>way.csv; columns in reports.schema) with read_votes for the
statistics. Knows engine result types and pandas; nothing of Gradio."""

from __future__ import annotations

import random
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from workbench.engine import GenerationStats, SamplingParams
from workbench.reports.schema import PROVENANCE_FIELDS, VOTE_SAMPLING_FIELDS, VOTE_STAT_FIELDS, vote_fields
from workbench.reports.store import append_rows, read_table

# A two-sided vote file's verdicts, as the CSV spells them: the side shown, or no preference.
TIE_VERDICTS = ("tie", "both_bad")
PAIR_VERDICTS = ("a", "b", *TIE_VERDICTS)
REQUIRED = ("model_a", "model_b", "verdict")


def side_labels(n: int) -> list[str]:
    """Display labels of n sides: A, B, C, ..."""
    if not 2 <= n <= len(string.ascii_uppercase):
        raise ValueError(f"a comparison has 2..26 sides, got {n}")
    return list(string.ascii_uppercase[:n])


def verdicts(n: int) -> list[str]:
    """What a voter can say about n sides: one label each, a tie, or all bad."""
    return [*side_labels(n), "tie", "both bad" if n == 2 else "all bad"]


def blind_order(n: int, rng: random.Random | None = None) -> list[int]:
    """A shuffled order: element i is the picker index shown at label i."""
    order = list(range(n))
    (rng or random.SystemRandom()).shuffle(order)
    return order


def votes_path(results_dir: Path, n: int) -> Path:
    return Path(results_dir) / ("votes.csv" if n == 2 else f"votes_{n}way.csv")


@dataclass(frozen=True)
class BlindRound:
    """One finished blind comparison, held back from the page until the vote.

    `models`, `outputs` and `stats` are in display order (label A first);
    `picker_order[i]` is the picker the model at label i came from.
    """

    prompt: str
    system_prompt: str
    models: tuple[str, ...]
    picker_order: tuple[int, ...]
    outputs: tuple[str, ...]
    stats: tuple[GenerationStats | None, ...]
    sampling: SamplingParams
    max_tokens: int
    seed: int
    mode: str

    def vote_row(self, verdict: str, provenance: Mapping[str, Any]) -> dict[str, Any]:
        """The CSV row for `verdict` (one of verdicts(n))."""
        n = len(self.models)
        labels = side_labels(n)
        if verdict not in verdicts(n):
            raise ValueError(f"verdict must be one of {verdicts(n)}, got {verdict!r}")
        winner = self.models[labels.index(verdict)] if verdict in labels else ""
        row: dict[str, Any] = {k: provenance.get(k) for k in PROVENANCE_FIELDS}
        row |= {
            "verdict": verdict.replace(" ", "_").lower(),
            "winner_model": winner,
            "picker_order": ",".join(str(i + 1) for i in self.picker_order),
            "mode": self.mode,
            "prompt": self.prompt,
            "system_prompt": self.system_prompt,
            **{k: getattr(self.sampling, k) for k in VOTE_SAMPLING_FIELDS},
            "max_tokens": self.max_tokens,
            "seed": self.seed,
        }
        for label, model, output, stats in zip(labels, self.models, self.outputs, self.stats, strict=True):
            suffix = label.lower()
            row[f"model_{suffix}"] = model
            row[f"output_{suffix}"] = output
            for name in VOTE_STAT_FIELDS:
                row[f"{name}_{suffix}"] = getattr(stats, name) if stats is not None else None
        return row


def append_vote(
    results_dir: Path, blind: BlindRound, verdict: str, provenance: Mapping[str, Any]
) -> tuple[Path, int]:
    """Append one vote; returns the file and its row count after the append."""
    n = len(blind.models)
    path = votes_path(results_dir, n)
    return path, append_rows(path, vote_fields(n), [blind.vote_row(verdict, provenance)])


def shown_in_order(items: Sequence[Any], order: Sequence[int]) -> list[Any]:
    """`items` (in picker order) rearranged into display order."""
    return [items[i] for i in order]


# ---- reading two-sided vote files -------------------------------------------
def read_votes(path: str | Path) -> pd.DataFrame:
    """A vote CSV (Compare tab or arena) as a DataFrame, checked for the columns and
    verdicts the statistics need; errors name the file, the column or the line."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path}: no such vote file")
    df = read_table(path, str_columns=("verdict",))
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: not a vote file of two sides: no column(s) {missing}")
    return check_votes(df, str(path))


def check_votes(df: pd.DataFrame, where: str = "votes") -> pd.DataFrame:
    """`df` with verdicts normalised; raises ValueError naming the first bad row."""
    df = df.copy()
    df["verdict"] = df["verdict"].fillna("").astype(str).str.strip().str.lower().str.replace(" ", "_")
    for column in ("model_a", "model_b"):
        df[column] = df[column].fillna("").astype(str)
    for i, row in enumerate(df.itertuples(index=False), start=2):  # line 1 is the header
        if row.verdict not in PAIR_VERDICTS:
            raise ValueError(
                f"{where}, line {i}: verdict {row.verdict!r} is not one of {list(PAIR_VERDICTS)}"
            )
        if not row.model_a or not row.model_b or row.model_a == row.model_b:
            raise ValueError(
                f"{where}, line {i}: a vote needs two different models, got {row.model_a!r} "
                f"and {row.model_b!r}"
            )
    return df


def models_in(votes: pd.DataFrame) -> list[str]:
    """Models in order of first appearance."""
    seen: dict[str, None] = {}
    for a, b in zip(votes["model_a"], votes["model_b"], strict=True):
        seen.setdefault(a)
        seen.setdefault(b)
    return list(seen)


def winner_of(model_a: str, model_b: str, verdict: str) -> str | None:
    """The model a verdict prefers, with the shown positions undone (None: no preference)."""
    return model_a if verdict == "a" else model_b if verdict == "b" else None
