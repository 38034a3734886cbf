"""The `workbench` CLI as a user runs it: a real process on the embedded model."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest

from tests.helpers import free_port, wait_until
from workbench.config import Settings, SettingSpec
from workbench.engine import Engine
from workbench.engine.models.embedded import EMBEDDED_IDS
from workbench.reports.schema import OVERHEAD_COLUMNS
from workbench.reports.store import count_rows, read_results


@pytest.fixture(scope="module")
def env(settings: Settings, engine: Engine) -> dict[str, str]:
    engine.load(EMBEDDED_IDS["f32"])  # converted once in the shared models dir
    return {**os.environ, "WORKBENCH_MODELS_DIR": str(settings.models_dir), "PYTHONUNBUFFERED": "1"}


def run(env: dict[str, str], *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workbench", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_models_lists_embedded_variants(env: dict[str, str]) -> None:
    out = run(env, "models")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["ID", "SOURCE", "VARIANT", "BITS", "SIZE", "CONTEXT", "LOADED"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows[EMBEDDED_IDS["4bit"]][1:4] == ["embedded", "4bit", "4"]
    assert "(default)" in rows[EMBEDDED_IDS["f32"]]
    assert all(r[-1] == "no" for r in rows.values())
    as_json = json.loads(run(env, "models", "--json").stdout)
    assert {m["id"] for m in as_json} >= {EMBEDDED_IDS["4bit"], EMBEDDED_IDS["f32"]}  # the CPU backend
    # The context shows once a GGUF variant is converted ('-' before: the GGUF is not read).
    contexts = {m["id"]: m["context_length"] for m in as_json}
    assert {contexts[EMBEDDED_IDS["4bit"]], contexts[EMBEDDED_IDS["f32"]]} <= {8192, None}


def test_one_shot_chat_streams_answer_and_stats(env: dict[str, str]) -> None:
    out = run(env, "chat", "What is the capital of France?")
    assert out.returncode == 0, out.stderr
    assert "Paris" in out.stdout
    assert "TTFT" in out.stderr and "tok/s" in out.stderr and "peak" in out.stderr


def test_interactive_chat_keeps_history_and_resets(env: dict[str, str]) -> None:
    out = run(
        env,
        "chat",
        "--max-tokens",
        "12",
        "--no-stats",
        stdin="My name is Ada.\n/reset\nWhat is the capital of France?\n",
    )
    assert out.returncode == 0, out.stderr
    assert "[history cleared]" in out.stderr
    assert "Paris" in out.stdout


def test_bad_flags_give_clear_errors(env: dict[str, str]) -> None:
    out = run(env, "chat", "--temperature", "-1", "hi")
    assert out.returncode == 2
    assert "temperature" in out.stderr and "Traceback" not in out.stderr
    out = run(env, "chat", "--model", "no-such-model", "hi")
    assert out.returncode == 2 and "unknown model 'no-such-model'" in out.stderr


def test_help_texts(env: dict[str, str]) -> None:
    out = run(env, "--help")
    assert out.returncode == 0 and "chat" in out.stdout and "models" in out.stdout
    assert "stats line" in run(env, "chat", "--help").stdout
    assert "--port" in run(env, "serve", "--help").stdout


def test_serve_answers_openai_clients_and_stops_cleanly(env: dict[str, str]) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "workbench", "serve", "--port", str(port), "--api-key", "k"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            # 503 "loading" until the default model is in; then 200 with it loaded.
            r = httpx.get(f"{url}/health", timeout=2)
            return r.status_code == 200 and r.json()["loaded_models"] != []
        except httpx.HTTPError:
            return proc.poll() is not None

    try:
        assert wait_until(healthy, timeout_s=120, interval_s=0.2) and proc.poll() is None
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="k", max_retries=0, timeout=60)
        reply = client.chat.completions.create(
            model="default",
            messages=[{"role": "user", "content": "What is the capital of France?"}],
            max_tokens=16,
            temperature=0,
        )
        assert "Paris" in reply.choices[0].message.content
        assert reply.model == EMBEDDED_IDS["f32"]
        assert_event_loop_sleeps_when_idle(proc.pid)
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert f"http://127.0.0.1:{port}/v1" in err and "Application shutdown complete" in err


def _wakeups(pid: int) -> int:
    # The main thread's (the event loop's) voluntary context switches: one per wait it wakes from.
    status = Path(f"/proc/{pid}/task/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("voluntary_ctxt")))


def assert_event_loop_sleeps_when_idle(pid: int) -> None:
    """An idle server's event loop wakes a few dozen times a second, not ~1000 (gradio's queue
    polls every 1 ms unless told otherwise: ~6% of a core taken from generation). Counts, not
    times, so a slower or faster machine reads the same."""
    if not Path(f"/proc/{pid}/task").exists():
        return  # Linux only
    before, seconds = _wakeups(pid), 2.0
    time.sleep(seconds)
    per_s = (_wakeups(pid) - before) / seconds
    assert per_s < 150, f"the idle event loop woke {per_s:.0f} times a second"


def test_overhead_appends_paired_rows_that_read_back_through_their_schema(
    env: dict[str, str], tmp_path: Path
) -> None:
    out_csv = tmp_path / "overhead.csv"
    args = ["overhead", "-m", EMBEDDED_IDS["f32"], "--prompt-tokens", "8", "--gen-tokens", "4"]
    out = run(env, *args, "--trials", "2", "--out", str(out_csv))
    assert out.returncode == 0, out.stderr
    df = read_results(out_csv, OVERHEAD_COLUMNS)
    assert sorted(zip(df["trial"], df["path"], strict=True)) == [
        (0, "engine"),
        (0, "raw"),
        (1, "engine"),
        (1, "raw"),
    ]
    assert (df["prompt_tokens"] == 8).all() and (df["generation_tokens"] == 4).all()
    assert f"{EMBEDDED_IDS['f32']}: prefill raw" in out.stdout and "paired trials" in out.stdout


# Ctrl-C as a terminal delivers it: a shell that starts the suite in the background may
# have SIGINT ignored, and a child would inherit that; this one takes it as Python does.
CTRL_C_ABLE = (
    "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "from workbench.cli import main; sys.exit(main(sys.argv[1:]))"
)


def _status(sidecar: Path) -> str | None:
    """The status of the one run in `sidecar` (None until it is written)."""
    try:
        runs = json.loads(sidecar.read_text())["runs"]
    except (OSError, ValueError, KeyError):
        return None
    return next(iter(runs.values()))["status"] if len(runs) == 1 else None


@pytest.mark.parametrize("lab", ["sweep", "arena"])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_or_sigterm_stops_a_sweep_or_an_arena_run_as_it_stops_a_bench_run(
    env: dict[str, str], tmp_path: Path, lab: str, sig: signal.Signals
) -> None:
    """Interrupted mid-run (far more work than any machine finishes before the signal), a
    quantization sweep and an arena run exit 130 with an 'interrupted:' notice and their
    sidecar says stopped, not failed; finished rows stay, nothing is half-written."""
    env = {**env, "WORKBENCH_RESULTS_DIR": str(tmp_path)}
    if lab == "sweep":
        spec = tmp_path / "longsweep.toml"
        spec.write_text(
            f'model = "{EMBEDDED_IDS["f32"]}"\nrecipes = ["q8"]\neval_tokens = 32\nwindow = 32\n'
            "divergence_prompts = 1\ndivergence_tokens = 4\nprompt_tokens = 8\ngeneration_tokens = 64\n"
            "trials = 1000\nwarmup = 0\n"
        )
        args = ["quantize", "--sweep", str(spec), "--out", str(tmp_path / "longsweep.csv")]
        sidecar, trials = tmp_path / "longsweep.json", tmp_path / "longsweep.bench.csv"
        notice = "interrupted: the finished variants are in"
    else:
        prompts = tmp_path / "long.txt"
        prompts.write_text("".join(f"Tell me a long story about the number {i}.\n" for i in range(500)))
        args = ["arena", "run", str(prompts), "-m", EMBEDDED_IDS["f32"], "-m", EMBEDDED_IDS["4bit"]]
        args += ["--max-tokens", "512", "--temperature", "0"]
        sidecar, trials = tmp_path / "long.battles.json", None
        notice = "interrupted: no battles written"
    cmd = [sys.executable, "-c", CTRL_C_ABLE, *args, "--no-progress"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # Running: the sidecar says so and, for the sweep, its speed trials have begun.
        assert wait_until(
            lambda: (
                proc.poll() is not None
                or (_status(sidecar) == "running" and (trials is None or count_rows(trials) >= 1))
            ),
            timeout_s=180,
        )
        assert proc.poll() is None, proc.communicate()[1]
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert notice in err and "Traceback" not in err, err
    assert _status(sidecar) == "stopped"
    if lab == "sweep":
        assert len(read_results(trials)) >= 1  # the trials written stay, whole
        assert count_rows(tmp_path / "longsweep.csv") == 0  # no variant finished
    else:
        assert not (tmp_path / "long.battles.csv").exists()


def test_settings_reject_bad_environment(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="WORKBENCH_MEMORY_BUDGET_GB"):
        Settings.from_env({"WORKBENCH_MEMORY_BUDGET_GB": "lots"})
    with pytest.raises(ValueError, match="WORKBENCH_ALLOW_DOWNLOAD"):
        Settings.from_env({"WORKBENCH_ALLOW_DOWNLOAD": "maybe"})
    s = Settings.from_env(
        {"WORKBENCH_ALLOW_DOWNLOAD": "1", "HF_HUB_OFFLINE": "1", "WORKBENCH_MODELS_DIR": str(tmp_path)}
    )
    assert s.allow_download is False and s.models_dir == tmp_path
    assert Settings.from_env({"WORKBENCH_MEMORY_BUDGET_GB": "auto"}).memory_budget_gb is None


def _bad_values(spec: SettingSpec) -> list[str]:
    """Values the setting's parser refuses, from a list that covers every kind of setting."""
    refused = []
    for raw in ("auto", "nonsense", "-1", "0", "1e999", "nan", "2.5"):
        try:
            spec.parse(raw)
        except ValueError:
            refused.append(raw)
    return refused


def test_every_setting_refuses_a_bad_value_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each setting with a bad value, as a variable and as a flag: `workbench serve` exits 2
    with one line naming the variable (or flag) and what it accepts, before any engine or
    server starts. Free-text settings (paths, hosts, ids) accept anything here."""
    from workbench.cli import main

    checked = []
    for name, spec in Settings.specs().items():
        for raw in _bad_values(spec):
            for how, argv in (("env", ["serve"]), ("flag", ["serve", f"{spec.flag}={raw}"])):
                if how == "flag" and (spec.scope == "none" or spec.is_flag):
                    continue
                with monkeypatch.context() as m:
                    if how == "env":
                        m.setenv(spec.env, raw)
                    assert main(argv) == 2, (name, how, raw)
                err = capsys.readouterr().err.strip()
                source = spec.env if how == "env" else spec.flag
                assert err.count("\n") == 0 and err.startswith(f"error: {source}={raw!r}: expected"), err
                checked.append((name, how, raw))
    names = {name for name, _, _ in checked}
    # The two that crashed with a TypeError before, and every setting that is not free text.
    assert ("prompt_cache_gb", "env", "auto") in checked and ("max_body_mb", "env", "auto") in checked
    assert names == {n for n, spec in Settings.specs().items() if _bad_values(spec)}
    assert len(names) >= 11, names
