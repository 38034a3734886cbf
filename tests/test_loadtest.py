"""The load tool and the multi-turn benchmark as clients of a real server: a uvicorn on
127.0.0.1 serving the shared engine (the embedded model), the official openai SDK; the
CLI as a subprocess. Small token counts, bounded runs."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from api.app import create_app
from tests.helpers import LiveServer, free_port
from workbench.config import Settings
from workbench.engine import Engine
from workbench.loadgen.loadtest import run_load
from workbench.reports.schema import LOAD_COLUMNS, LOAD_FIELDS, MULTITURN_COLUMNS
from workbench.reports.store import append_rows, read_results
from workbench.runs import capture_client


@pytest.fixture(scope="module")
def base_url(settings: Settings, engine: Engine) -> Iterator[str]:
    with LiveServer(create_app(settings, engine, with_ui=False)) as live:
        yield f"{live.url}/v1"


def cli(*args: str, timeout_s: float = 180) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "workbench", "loadtest", "--no-progress", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def test_load_run_streams_every_request_and_its_row_reads_back(
    base_url: str, engine: Engine, tmp_path: Path
) -> None:
    result = run_load(base_url, "default", concurrency=2, requests=4, prompt_tokens=32, max_tokens=8)
    row = result.row(capture_client({"engine": {"device": engine.device, "blas": engine.blas}}), "workbench")
    assert row["completed"] == 4 and row["errors"] == 0 and row["first_error"] is None
    # ignore_eos is honoured by our server: every request generates exactly max_tokens.
    assert row["completion_tokens"] == 4 * 8
    assert row["aggregate_tps"] > 0 and row["requests_per_s"] > 0 and row["wall_s"] > 0
    assert 0 < row["ttft_p50_s"] <= row["ttft_p95_s"] < row["wall_s"]
    assert 0 < row["itl_p50_s"] <= row["itl_p95_s"]
    # One word of the fixed list is one token of this tokenizer.
    assert abs(row["prompt_tokens_reported"] - 32) <= 2
    # Prompts share no prefix, so a prompt cache (when the server has one) serves next to nothing.
    assert row["cached_tokens_reported"] is None or row["cached_tokens_reported"] < 8
    # A chunk may carry more than one token (a detokenizer holding back a partial character).
    assert all(t.ttft_s is not None and 1 <= len(t.gaps_s) <= 7 for t in result.timings)
    csv_path = tmp_path / "loadtest.csv"
    append_rows(csv_path, LOAD_FIELDS, [row])
    df = read_results(csv_path, LOAD_COLUMNS)
    assert len(df) == 1 and df["completed"].iloc[0] == 4 and df["device"].iloc[0] == engine.device
    assert bool(df["ignore_eos"].iloc[0]) is True


def test_overall_timeout_sends_nothing_late(base_url: str) -> None:
    result = run_load(
        base_url, "default", 2, 3, prompt_tokens=8, max_tokens=4, overall_timeout_s=1e-6, warmup=0
    )
    figures = result.figures()
    assert figures["errors"] == 3 and figures["completed"] == 0 and figures["aggregate_tps"] == 0
    assert "overall timeout" in figures["first_error"] and figures["ttft_p50_s"] is None


def test_cli_appends_one_row_per_concurrency_and_prints_the_table(base_url: str, tmp_path: Path) -> None:
    out = tmp_path / "load.csv"
    args = ["--base-url", base_url, "--model", "default", "--requests", "2", "--prompt-tokens", "16"]
    done = cli(*args, "--max-tokens", "4", "--concurrency", "1", "2", "--label", "ours", "--out", str(out))
    assert done.returncode == 0, done.stderr
    header, *lines = done.stdout.strip().splitlines()
    assert "aggregate_tps" in header and "ttft_p95_s" in header and len(lines) == 2
    df = read_results(out, LOAD_COLUMNS)
    assert df["concurrency"].tolist() == [1, 2] and set(df["server_label"]) == {"ours"}
    assert (df["completed"] == 2).all() and (df["errors"] == 0).all() and df["run_id"].nunique() == 2
    # Provenance comes from our server's /health.
    assert set(df["device"]) == {"cpu"} or set(df["device"]) == {"gpu"}
    assert (df["blas"] != "unknown").all()


def test_a_dead_server_is_counted_not_fatal_and_the_client_loads_no_engine(tmp_path: Path) -> None:
    out = tmp_path / "dead.csv"
    url = f"http://127.0.0.1:{free_port()}/v1"
    code = (
        "import sys; from workbench.cli import main; "
        f"rc = main(['loadtest', '--base-url', {url!r}, '--model', 'm', '--concurrency', '2', "
        f"'--requests', '5', '--out', {str(out)!r}, '--no-progress', '--timeout-s', '10']); "
        "print('mlx imported:', any(m.split('.')[0] in ('mlx', 'mlx_lm') for m in sys.modules)); "
        "sys.exit(rc)"
    )
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert time.monotonic() - start < 60
    assert done.returncode == 1, done.stderr
    assert "mlx imported: False" in done.stdout and "APIConnectionError" in done.stderr
    df = read_results(out, LOAD_COLUMNS)
    row = df.iloc[0]
    assert row["errors"] == row["requests"] == 5 and row["completed"] == 0 and row["aggregate_tps"] == 0
    assert (
        row["server_label"] == "server" and row["device"] == "unknown" and "Connection" in row["first_error"]
    )


def test_multi_turn_records_a_ttft_per_turn_on_a_growing_history(base_url: str, tmp_path: Path) -> None:
    out = tmp_path / "turns.csv"
    done = cli(
        "--multi-turn",
        *("--base-url", base_url, "--model", "default", "--label", "cache-default"),
        *("--history-tokens", "48", "--turns", "3", "--conversations", "1", "--max-tokens", "4"),
        *("--out", str(out)),
    )
    assert done.returncode == 0, done.stderr
    assert "last-turn TTFT" in done.stderr
    df = read_results(out, MULTITURN_COLUMNS)
    assert df["turn"].tolist() == [1, 2, 3] and (df["conversation"] == 0).all()
    assert (df["ttft_s"] > 0).all() and (df["total_s"] >= df["ttft_s"]).all()
    assert (df["error"] == "").all() and (df["completion_tokens"] >= 1).all()
    # The history grows: 24 words a long turn, the replies, then the short question.
    prompts = df["prompt_tokens_reported"].tolist()
    assert prompts[0] > 24 and prompts[0] < prompts[1] < prompts[2]


def test_multi_turn_same_text_repeats_the_conversation_run_after_run(base_url: str, tmp_path: Path) -> None:
    """--same-text: the second run's turn 1 is the first run's, so the server's cache has it all."""
    out = tmp_path / "same.csv"
    flags = ("--base-url", base_url, "--model", "default", "--history-tokens", "40", "--turns", "2")
    for label in ("first", "second"):
        done = cli(
            "--multi-turn", "--same-text", *flags, "--conversations", "1", "--label", label, "--out", str(out)
        )
        assert done.returncode == 0, done.stderr
    df = read_results(out, MULTITURN_COLUMNS).set_index(["server_label", "turn"])
    first, second = df.loc[("first", 1)], df.loc[("second", 1)]
    assert first["prompt_tokens_reported"] == second["prompt_tokens_reported"]
    assert second["cached_tokens_reported"] == second["prompt_tokens_reported"] - 1
    assert first["cached_tokens_reported"] < first["prompt_tokens_reported"] // 2


@pytest.mark.slow
def test_a_long_prompt_arriving_is_processed_in_chunks_while_the_streams_keep_decoding(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    """With a fixed prefill step of 128 tokens (prefill_share 0: chunks never cut), a ~1024-token
    prompt takes about 8 engine steps, each giving every running stream a token; with one step for
    the whole prompt they would get about one. Counted in tokens, not timed. The CLI writes the row
    (the same code path). (The cut chunks of prefill_share: test_prefill_budget.py, and measured
    with the load tool, docs/lab.md.)"""
    from workbench.loadgen.long_arrival import run_long_arrival
    from workbench.reports.schema import ARRIVAL_COLUMNS

    chunked = replace(settings, prefill_step=128, prefill_share=0.0)
    with Engine(chunked) as own, LiveServer(create_app(chunked, own, with_ui=False)) as live:
        result = run_long_arrival(f"{live.url}/v1", "default", 2, 1024, 64)
        figures = result.figures()
        out = tmp_path / "long_arrival.csv"
        done = cli(
            "--base-url",
            f"{live.url}/v1",
            "--model",
            "default",
            "--long-arrival",
            "--streams",
            "2",
            "--long-prompt-tokens",
            "512",
            "--max-tokens",
            "48",
            "--out",
            str(out),
        )
    assert figures["errors"] == 0 and abs(figures["long_prompt_tokens_reported"] - 1024) <= 4
    # Each stream got a token per prompt chunk while the long prompt was processed, and went on after.
    assert figures["during_gaps"] >= 2 * 5 and figures["after_gaps"] > 0, figures
    assert figures["freeze_ratio"] is not None and figures["long_ttft_s"] > 0
    assert done.returncode == 0, done.stderr[-2000:]
    df = read_results(out, ARRIVAL_COLUMNS)
    assert len(df) == 1 and df["during_gaps"].iloc[0] >= 2 * 2 and "freeze_ratio" in done.stdout
