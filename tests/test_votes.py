"""Blind rounds and the vote CSV (workbench.arena.votes, workbench.reports.store):
shuffles are permutations, a vote row names the hidden models at their labels, and
a file never mixes two schemas."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import pytest

from workbench.arena.votes import (
    BlindRound,
    append_vote,
    blind_order,
    side_labels,
    verdicts,
    votes_path,
)
from workbench.engine import Engine, GenerationStats, SamplingParams
from workbench.reports.schema import PROVENANCE_FIELDS, vote_fields
from workbench.reports.store import append_rows, count_rows
from workbench.runs import capture

PROVENANCE = {"run_id": "r1", "git_sha": "abc", "device": "cpu", "blas": "openblas"}


def _stats(model: str, tps: float) -> GenerationStats:
    return GenerationStats(
        model=model,
        prompt_tokens=10,
        generation_tokens=5,
        ttft_s=0.1,
        prompt_tps=100.0,
        generation_tps=tps,
        peak_memory_gb=0.5,
        finish_reason="stop",
        total_s=0.6,
        seed=7,
    )


def _round(models: tuple[str, ...], order: tuple[int, ...]) -> BlindRound:
    return BlindRound(
        prompt="Say hi",
        system_prompt="",
        models=models,
        picker_order=order,
        outputs=tuple(f"reply of {m}" for m in models),
        stats=tuple(_stats(m, 10.0 + i) for i, m in enumerate(models)),
        sampling=SamplingParams(temperature=0.7, seed=7),
        max_tokens=32,
        seed=7,
        mode="fair",
    )


def test_labels_and_verdicts() -> None:
    assert side_labels(2) == ["A", "B"]
    assert verdicts(2) == ["A", "B", "tie", "both bad"]
    assert verdicts(3) == ["A", "B", "C", "tie", "all bad"]
    with pytest.raises(ValueError):
        side_labels(1)


def test_blind_order_is_a_permutation_and_does_shuffle() -> None:
    rng = random.Random(0)
    orders = {tuple(blind_order(3, rng)) for _ in range(200)}
    assert all(sorted(o) == [0, 1, 2] for o in orders)
    assert len(orders) == 6  # every arrangement shows up


def test_vote_row_names_the_hidden_models_at_their_labels() -> None:
    row = _round(("q4", "f32"), (1, 0)).vote_row("B", PROVENANCE)
    assert set(row) == set(vote_fields(2))
    assert row["verdict"] == "b" and row["winner_model"] == "f32"
    assert (row["model_a"], row["model_b"]) == ("q4", "f32")
    assert row["output_b"] == "reply of f32" and row["generation_tps_b"] == 11.0
    assert row["picker_order"] == "2,1" and row["seed"] == 7 and row["temperature"] == 0.7
    assert row["git_sha"] == "abc" and row["timestamp"] is None  # absent provenance stays empty
    tie = _round(("q4", "f32"), (0, 1)).vote_row("both bad", PROVENANCE)
    assert tie["verdict"] == "both_bad" and tie["winner_model"] == ""
    with pytest.raises(ValueError, match="verdict"):
        _round(("q4", "f32"), (0, 1)).vote_row("C", PROVENANCE)


def test_votes_append_one_row_each_with_one_header(tmp_path: Path) -> None:
    blind = _round(("q4", "f32"), (0, 1))
    path, rows = append_vote(tmp_path, blind, "A", PROVENANCE)
    assert path == votes_path(tmp_path, 2) == tmp_path / "votes.csv" and rows == 1
    _, rows = append_vote(tmp_path, blind, "tie", PROVENANCE)
    assert rows == 2
    read = list(csv.DictReader(path.open()))
    assert [r["verdict"] for r in read] == ["a", "tie"]
    assert tuple(read[0]) == vote_fields(2)
    # A three-way comparison has other columns, so it goes to its own file.
    three, _ = append_vote(tmp_path, _round(("x", "y", "z"), (2, 0, 1)), "C", PROVENANCE)
    assert three.name == "votes_3way.csv" and count_rows(path) == 2


def test_a_file_never_mixes_two_schemas(tmp_path: Path) -> None:
    path = tmp_path / "report.csv"
    append_rows(path, ["a", "b"], [{"a": 1, "b": 2}])
    with pytest.raises(ValueError, match="other columns"):
        append_rows(path, ["a", "c"], [{"a": 1, "c": 2}])
    with pytest.raises(ValueError, match="outside the schema"):
        append_rows(path, ["a", "b"], [{"a": 1, "z": 2}])
    assert path.read_text().splitlines() == ["a,b", "1,2"]


def test_a_file_from_before_the_rank_columns_is_widened_when_appended_to(tmp_path: Path) -> None:
    """A vote file written before ranks / dist_backend / parallelism / hosts existed takes a new
    row: its header gains them and its old rows their defaults (one process); nothing is lost."""
    path = tmp_path / "votes.csv"
    new_fields = vote_fields(2)
    old_fields = [f for f in new_fields if f not in ("ranks", "dist_backend", "parallelism", "hosts")]
    old_row = {f: "x" for f in old_fields}
    append_rows(path, old_fields, [old_row])
    new_row = {f: "y" for f in new_fields} | {"ranks": 2, "dist_backend": "ring"}
    assert append_rows(path, new_fields, [new_row]) == 2
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == list(new_fields)
    assert (rows[0]["ranks"], rows[0]["dist_backend"], rows[0]["hosts"], rows[0]["verdict"]) == (
        "1",
        "none",
        "unknown",
        "x",
    )
    assert (rows[1]["ranks"], rows[1]["dist_backend"]) == ("2", "ring")


def test_provenance_fields_are_what_capture_records(engine: Engine) -> None:
    assert tuple(capture(engine)) == PROVENANCE_FIELDS
