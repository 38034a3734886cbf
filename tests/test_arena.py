"""The A/B arena: statistics checked against independent references on fixed data
(scipy's Wilson interval and binomial test, a direct maximum-likelihood fit, a synthetic
tournament with known strengths), and battles run on the real embedded model through
the CLI, their shown positions recorded and undone, judged, and summarised."""

from __future__ import annotations

import csv
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize
from scipy.stats import binomtest

from workbench.arena import stats
from workbench.arena.battles import (
    ArenaError,
    ArenaPrompt,
    ArenaSpec,
    judge_state,
    read_battles,
    read_prompt_set,
    record_vote,
    run_battles,
)
from workbench.arena.votes import BlindRound, append_vote
from workbench.config import Settings
from workbench.engine import Engine, GenerationRequest, GenerationStats, Message, SamplingParams
from workbench.engine.models.embedded import EMBEDDED_IDS
from workbench.reports import plots
from workbench.reports.schema import ARENA_VOTE_COLUMNS, ARENA_VOTE_FIELDS, BATTLE_COLUMNS
from workbench.reports.store import read_results

F32, Q4 = EMBEDDED_IDS["f32"], EMBEDDED_IDS["4bit"]
TRUE_STRENGTHS = np.array([-0.9, -0.3, 0.3, 0.9])  # log-strengths, mean 0
MODELS = [f"m{i}" for i in range(len(TRUE_STRENGTHS))]


def tournament(seed: int, per_pair: int) -> pd.DataFrame:
    """Votes drawn from a Bradley-Terry model with TRUE_STRENGTHS, positions random."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(len(MODELS)):
        for j in range(i + 1, len(MODELS)):
            p_i = 1 / (1 + math.exp(TRUE_STRENGTHS[j] - TRUE_STRENGTHS[i]))
            for _ in range(per_pair):
                winner = i if rng.random() < p_i else j
                a, b = (j, i) if rng.random() < 0.5 else (i, j)
                rows.append(
                    {"model_a": MODELS[a], "model_b": MODELS[b], "verdict": "a" if winner == a else "b"}
                )
    return pd.DataFrame(rows)


# ---- one proportion -----------------------------------------------------------
def test_wilson_interval_and_sign_test_match_scipy() -> None:
    for n in range(1, 61):
        for k in range(n + 1):
            ref = binomtest(k, n, 0.5)
            low, high = ref.proportion_ci(0.95, method="wilson")
            assert stats.wilson_interval(k, n) == pytest.approx((low, high), abs=1e-12), (k, n)
            assert stats.binomial_test(k, n) == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-15), (k, n)
    for k, n in ((3, 200), (120, 200), (0, 500)):  # larger n, 99% intervals, p != 0.5
        ref = binomtest(k, n, 0.3)
        assert stats.binomial_test(k, n, 0.3) == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-15)
        low, high = binomtest(k, n).proportion_ci(0.99, method="wilson")
        assert stats.wilson_interval(k, n, 0.99) == pytest.approx((low, high), abs=1e-12)
    assert all(math.isnan(x) for x in stats.wilson_interval(0, 0))
    assert stats.binomial_test(0, 0) == 1.0


def test_pair_table_counts_ties_as_stated_and_hints_when_decided() -> None:
    # x wins 16 of 20 decisive votes, 4 ties; shown positions alternate.
    outcomes = (
        ["x"] * 4 + ["y"] + ["tie"] * 2 + ["x"] * 6 + ["y", "x", "both_bad", "tie"] + ["x"] * 5 + ["y", "y"]
    )
    rows = []
    for i, o in enumerate(outcomes):
        a, b = ("x", "y") if i % 2 else ("y", "x")
        verdict = o if o in ("tie", "both_bad") else ("a" if o == a else "b")
        rows.append({"model_a": a, "model_b": b, "verdict": verdict})
    votes = pd.DataFrame(rows)
    table = stats.pair_table(votes)
    assert len(table) == 1
    row = table.iloc[0]
    assert (row.model_x, row.x_wins, row.y_wins, row.ties, row.both_bad, row.votes) == ("y", 4, 16, 3, 1, 24)
    # Ties excluded: the win rate and the interval are of the 20 decisive votes.
    ref = binomtest(4, 20)
    assert row.win_rate_x == pytest.approx(0.2)
    assert (row.ci_low, row.ci_high) == pytest.approx(ref.proportion_ci(0.95, method="wilson"))
    assert row.p_value == pytest.approx(ref.pvalue)
    # The decision point, by brute force over prefixes with scipy's interval: the first
    # vote after which the interval excludes 50% at every later vote.
    excluded = []
    for n in range(1, len(outcomes) + 1):
        k = outcomes[:n].count("x")
        m = k + outcomes[:n].count("y")
        ci = binomtest(k, m).proportion_ci(0.95, method="wilson") if m else (0, 1)
        excluded.append(ci.low > 0.5 if m else False)
    first_for_good = next(n for n in range(1, len(excluded) + 1) if all(excluded[n - 1 :]))
    assert row.decided_after == first_for_good
    assert row.hint.startswith(
        f"x preferred: the 95% interval excludes 50% since vote {first_for_good} (of 24)"
    )
    # Split ties: half a win each side, over all 24 votes.
    split = stats.pair_table(votes, ties="split").iloc[0]
    assert split.win_rate_x == pytest.approx((4 + 2) / 24)
    assert (split.ci_low, split.ci_high) == pytest.approx(stats.wilson_interval(6, 24))
    # Undecided: the hint says how many more votes the current rate would need.
    few = stats.pair_table(votes.iloc[:3]).iloc[0]
    assert few.decided_after is None and "more votes would make" in few.hint
    need = stats.votes_needed(0.75)
    assert stats.excludes_half(*stats.wilson_interval(0.75 * need, need))
    assert not stats.excludes_half(*stats.wilson_interval(0.75 * (need - 1), need - 1))


# ---- Bradley-Terry ------------------------------------------------------------
def test_bradley_terry_equals_a_direct_maximum_likelihood_fit() -> None:
    votes = tournament(seed=3, per_pair=30)
    votes.loc[votes.index % 7 == 0, "verdict"] = "tie"
    wins = np.zeros((4, 4))
    for r in votes.itertuples():
        a, b = MODELS.index(r.model_a), MODELS.index(r.model_b)
        if r.verdict == "tie":
            wins[a, b] += 0.5
            wins[b, a] += 0.5
        else:
            w, lo = (a, b) if r.verdict == "a" else (b, a)
            wins[w, lo] += 1
    prior = 1.0
    data = wins + (prior / 2) * (1 - np.eye(4))  # the same virtual ties, for every compared pair

    def nll(theta: np.ndarray) -> float:
        diff = theta[:, None] - theta[None, :]
        return float(np.sum(data * np.logaddexp(0, -diff)))

    theirs = minimize(nll, np.zeros(4), method="BFGS", options={"gtol": 1e-10}).x
    theirs -= theirs.mean()
    ours = stats.fit_bradley_terry(wins, prior=prior)
    assert ours == pytest.approx(theirs, abs=1e-5)
    table = stats.bradley_terry(votes, bootstrap=0).set_index("model").loc[MODELS]
    assert table["strength"].to_numpy() == pytest.approx(theirs, abs=1e-5)
    assert table["rating"].to_numpy() == pytest.approx(1000 + 400 * theirs / math.log(10), abs=1e-3)


def test_bradley_terry_recovers_known_strengths_and_its_intervals_cover_them() -> None:
    # One fixed tournament. (Four 95% intervals all cover the truth in ~81% of draws; their
    # calibration is what the replications below check.)
    table = stats.bradley_terry(tournament(seed=2, per_pair=150), bootstrap=1000, seed=0)
    assert list(table["model"]) == ["m3", "m2", "m1", "m0"]  # best first: the true order
    truth = dict(zip(MODELS, stats.to_elo(TRUE_STRENGTHS), strict=True))
    for r in table.itertuples():
        assert r.rating_low <= truth[r.model] <= r.rating_high, (r.model, truth[r.model], r)
        assert r.rating_low < r.rating < r.rating_high
    # Over many tournaments, the 95% intervals cover the truth about 95% of the time.
    covered = []
    for rep in range(30):
        t = stats.bradley_terry(tournament(seed=100 + rep, per_pair=60), bootstrap=300, seed=rep)
        t = t.set_index("model").loc[MODELS]
        covered += [
            lo <= truth[m] <= hi for m, lo, hi in zip(MODELS, t.rating_low, t.rating_high, strict=True)
        ]
    assert 0.85 <= np.mean(covered) <= 1.0, np.mean(covered)


def test_an_unbeaten_model_gets_a_finite_top_rating_and_disconnected_models_none() -> None:
    votes = pd.DataFrame([{"model_a": "x", "model_b": "y", "verdict": "a"}] * 5)
    table = stats.bradley_terry(votes, bootstrap=200)
    assert list(table["model"]) == ["x", "y"] and np.isfinite(table["rating"]).all()
    apart = pd.DataFrame(
        [{"model_a": "x", "model_b": "y", "verdict": "a"}, {"model_a": "u", "model_b": "v", "verdict": "b"}]
    )
    assert stats.bradley_terry(apart)["rating"].isna().all()
    assert len(stats.pair_table(apart)) == 2


def test_vote_files_are_checked_line_by_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("model_a,model_b,verdict\nx,y,a\nx,y,maybe\n")
    with pytest.raises(ValueError, match=r"bad.csv, line 3: verdict 'maybe'"):
        stats.read_votes(bad)
    bad.write_text("model_a,verdict\nx,a\n")
    with pytest.raises(ValueError, match=r"no column\(s\) \['model_b'\]"):
        stats.read_votes(bad)
    bad.write_text("model_a,model_b,verdict\nx,x,a\n")
    with pytest.raises(ValueError, match="two different models"):
        stats.read_votes(bad)
    with pytest.raises(ValueError, match="no such vote file"):
        stats.read_votes(tmp_path / "none.csv")


def test_compare_tab_votes_feed_the_same_statistics(tmp_path: Path) -> None:
    def stats_of(model: str, tps: float) -> GenerationStats:
        return GenerationStats(
            model=model, prompt_tokens=5, generation_tokens=8, ttft_s=0.1, prompt_tps=50.0,
            generation_tps=tps, peak_memory_gb=0.5 if model == "big" else 0.1, finish_reason="stop",
            total_s=1.0,
        )  # fmt: skip

    for i, verdict in enumerate(["A", "A", "B", "tie", "both bad"]):
        order = (0, 1) if i % 2 else (1, 0)
        models = tuple(["big", "small"][j] for j in order)
        blind = BlindRound(
            prompt=f"p{i}", system_prompt="", models=models, picker_order=order,
            outputs=tuple(f"{m} reply {i}" for m in models),
            stats=tuple(stats_of(m, 10.0 + i if m == "big" else 20.0 + i) for m in models),
            sampling=SamplingParams(), max_tokens=8, seed=i, mode="fair",
        )  # fmt: skip
        path, _ = append_vote(tmp_path, blind, verdict, {})
    result = stats.arena_stats(stats.read_votes(path), bootstrap=100)
    assert result.votes == 5
    pair = result.pairs.iloc[0]
    assert pair.votes == 5 and pair.ties == 1 and pair.both_bad == 1 and pair.x_wins + pair.y_wins == 3
    speed = result.models.set_index("model")
    assert speed.loc["big", "median_tps"] == pytest.approx(12.0) and speed.loc["small", "median_tps"] == 22.0
    assert speed.loc["big", "median_peak_memory_gb"] == 0.5 and speed.loc["big", "replies"] == 5


# ---- prompt sets and specs ----------------------------------------------------
def test_prompt_sets_and_specs_reject_bad_input_clearly(tmp_path: Path) -> None:
    txt = tmp_path / "set.txt"
    txt.write_text("# a comment\nFirst prompt\n\n  Second prompt  \n")
    assert [p.prompt for p in read_prompt_set(txt)] == ["First prompt", "Second prompt"]
    jsonl = tmp_path / "set.jsonl"
    jsonl.write_text('"plain"\n{"prompt": "with system", "system": "Be brief.", "id": "q7"}\n')
    assert read_prompt_set(tmp_path / "set.jsonl")[1] == ArenaPrompt("with system", "Be brief.", "q7")
    for text, message in (
        ('{"prompt": "x"}\n{nope\n', "line 2: not JSON"),
        ('{"prompt": "x", "temp": 1}\n', r"line 1: unknown keys \['temp'\]"),
        ('{"system": "x"}\n', "line 1: expected a string"),
        ("\n\n", "no prompts"),
    ):
        jsonl.write_text(text)
        with pytest.raises(ArenaError, match=message):
            read_prompt_set(jsonl)
    with pytest.raises(ArenaError, match="no such prompt set"):
        read_prompt_set(tmp_path / "missing")
    with pytest.raises(ArenaError, match="at least 2 models"):
        ArenaSpec(name="x", models=(F32,))
    with pytest.raises(ArenaError, match="name"):
        ArenaSpec(name="../x", models=(F32, Q4))
    assert read_prompt_set(Path(__file__).parents[1] / "experiments" / "arena_prompts")[0].prompt


# ---- battles on the real model ------------------------------------------------
def test_arena_run_records_positions_and_votes_undo_them(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    engine.load(F32)  # converted once, in the shared models dir
    prompts = tmp_path / "tiny.txt"
    prompts.write_text("Say hello.\nName a fruit.\nWhat is 2+2?\nName a colour.\n")
    env = {
        **os.environ,
        "WORKBENCH_MODELS_DIR": str(settings.models_dir),
        "WORKBENCH_RESULTS_DIR": str(tmp_path),
    }
    cmd = [sys.executable, "-m", "workbench", "arena", "run", str(prompts), "-m", F32, "-m", Q4]
    opts = ["--max-tokens", "6", "--temperature", "0", "--seed", "5", "--no-progress"]
    out = subprocess.run([*cmd, *opts], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    path = tmp_path / "tiny.battles.csv"
    assert out.stdout.strip() == str(path) and "4 battles" in out.stderr
    battles = read_battles(path)
    assert [b["prompt"] for b in battles] == ["Say hello.", "Name a fruit.", "What is 2+2?", "Name a colour."]
    # Positions: recorded per battle, and what they record is what is shown.
    for b in battles:
        assert b["picker_order"] in ("1,2", "2,1")
        assert (b["model_a"], b["model_b"]) == ((F32, Q4) if b["picker_order"] == "1,2" else (Q4, F32))
        assert b["seed"] == str(5 + int(b["prompt_index"])) and b["git_sha"] and b["run_id"]
        assert float(b["generation_tps_a"]) > 0 and float(b["peak_memory_gb_b"]) > 0
    # Each shown reply is the reply its model gives alone with the same prompt and seed.
    b = battles[1]
    for side in "ab":
        alone = engine.generate(
            GenerationRequest(
                messages=(Message("user", b["prompt"]),),
                model=b[f"model_{side}"],
                sampling=SamplingParams(temperature=0.0, seed=6),
                max_tokens=6,
            )
        )
        assert alone.text == b[f"output_{side}"]
    # The float32 model's peak memory is its own (the others were unloaded): far above 4-bit's.
    # (Both sides: the random draw may show one model at A in every battle.)
    peaks = {b[f"model_{s}"]: float(b[f"peak_memory_gb_{s}"]) for b in battles for s in "ab"}
    assert peaks[F32] > 2 * peaks[Q4]
    # An existing battle set is never overwritten.
    again = subprocess.run([*cmd, *opts], env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and "exists" in again.stderr
    assert len(read_battles(path)) == 4

    # Judge: verdicts are about shown positions; the winner is the model behind them.
    state = judge_state(path)
    assert state.progress() == "0 / 4 judged" and state.battle == battles[0]
    for verdict, battle in zip(["a", "b", "tie", "a"], battles, strict=True):
        row, state = record_vote(path, battle["battle_id"], verdict)
        expected = {"a": battle["model_a"], "b": battle["model_b"], "tie": ""}[verdict]
        assert row["winner_model"] == expected
    assert state.progress() == "4 / 4 judged" and state.battle is None
    with pytest.raises(ArenaError, match="already judged"):
        record_vote(path, battles[0]["battle_id"], "b")
    with pytest.raises(ArenaError, match="verdict must be one of"):
        record_vote(path, battles[0]["battle_id"], "left")
    with open(tmp_path / "tiny.votes.csv", newline="") as f:
        votes = list(csv.DictReader(f))
    assert len(votes) == 4 and tuple(votes[0]) == ARENA_VOTE_FIELDS
    # Both files hold what their contracts in reports.schema declare, type by type.
    assert len(read_results(path, BATTLE_COLUMNS)) == 4
    assert list(read_results(tmp_path / "tiny.votes.csv", ARENA_VOTE_COLUMNS)["verdict"]) == [
        "a",
        "b",
        "tie",
        "a",
    ]
    # The statistics count wins by model, whatever side each was shown on.
    winners = [v["winner_model"] for v in votes if v["winner_model"]]
    result = stats.arena_stats(stats.read_votes(tmp_path / "tiny.votes.csv"), bootstrap=200)
    pair = result.pairs.iloc[0]
    wins = {pair.model_x: pair.x_wins, pair.model_y: pair.y_wins}
    assert wins == {F32: winners.count(F32), Q4: winners.count(Q4)} and pair.ties == 1

    report = subprocess.run(
        [
            sys.executable,
            "-m",
            "workbench",
            "arena",
            "stats",
            str(tmp_path / "tiny.votes.csv"),
            "--bootstrap",
            "200",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert report.returncode == 0, report.stderr
    assert "Bradley-Terry" in report.stdout and F32 in report.stdout and "median_tps" in report.stdout
    assert (tmp_path / "tiny.votes.png").read_bytes().startswith(b"\x89PNG")
    bad = subprocess.run(
        [sys.executable, "-m", "workbench", "arena", "stats", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "verdict" in bad.stderr and "Traceback" not in bad.stderr


def test_a_cancelled_run_writes_no_battles(engine: Engine, tmp_path: Path) -> None:
    from workbench.engine import CancelToken

    cancel = CancelToken()
    cancel.cancel()
    spec = ArenaSpec(name="cut", models=(F32, Q4), max_tokens=4)
    run = run_battles(engine, spec, [ArenaPrompt("Hi")], tmp_path, cancel=cancel)
    assert not run.complete and not run.battles_path.exists()


def test_a_unanimous_preference_has_an_interval_holding_it_and_plots() -> None:
    # 10 of 10 once rounded to an upper bound of 0.9999999999999999, below the win rate
    # itself, and the Arena tab's plot then failed on a negative error bar.
    for n in range(1, 201):
        for k in (0, n // 3, n // 2, n):
            low, high = stats.wilson_interval(k, n)
            assert low <= k / n <= high, (k, n)
    for verdict in ("a", "b"):
        votes = pd.DataFrame([{"model_a": "x", "model_b": "y", "verdict": verdict}] * 10)
        result = stats.arena_stats(votes)
        assert result.pairs["ci_high"].iloc[0] >= result.pairs["win_rate_x"].iloc[0]
        assert plots.arena_plot(result.models, result.pairs, result.caption()).axes
