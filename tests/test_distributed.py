"""Scale-out on loopback: `workbench serve --ranks N` (mlx.launch, ring backend, tensor parallel)
answers as one process does; a follower killed or stalled mid-stream is reported and the server
then stops; no rank outlives it. Real servers on 127.0.0.1, real ranks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.helpers import free_port, wait_until
from workbench.config import Settings
from workbench.engine import Engine
from workbench.engine.models.embedded import EMBEDDED_IDS

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"

ASK = [{"role": "user", "content": "Name three rivers of Europe."}]
PROMPTS = ["One, two,", "The sea is", "Paris is the", "def add(a, b):"]


@pytest.fixture(scope="module")
def tiny_qwen2(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = Path(engine.load(EMBEDDED_IDS["f32"]).path or "")
    folder = tmp_path_factory.mktemp("tiny") / "tiny-qwen2"
    # qwen2-shaped (heads divisible by 2), random float32 weights, the embedded tokenizer; in a
    # child process (this one keeps MLX on the engine's thread).
    write = [sys.executable, str(SCRIPTS / "write_random_model.py"), str(folder), "--shape", "tiny"]
    subprocess.run([*write, "--tokenizer", str(source)], check=True)
    return folder


@contextmanager
def served(settings: Settings, *flags: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """`workbench serve *flags` on a free port until healthy; at the end SIGTERM, and the
    command must exit 0 with none of its ranks left."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKBENCH_")}
    env.update(WORKBENCH_MODELS_DIR=str(settings.models_dir), PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "workbench", "serve", "--port", str(port), *flags]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log: list[str] = []
    threading.Thread(target=lambda: log.extend(proc.stdout or []), daemon=True).start()
    url = f"http://127.0.0.1:{port}"
    pids: list[int] = []
    try:
        up = wait_until(lambda: _status(url) == 200 or proc.poll() is not None, 600, 0.5)
        assert up, "".join(log)[-3000:]
        assert proc.poll() is None, "".join(log)[-3000:]
        pids = [m["pid"] for m in httpx.get(f"{url}/health").json()["engine"]["distributed"]["members"]]
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=180)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
    assert code == 0, "".join(log)[-3000:]
    assert not [p for p in pids if _alive(p)], f"ranks left behind: {pids}"


def _status(url: str) -> int:
    try:
        return httpx.get(f"{url}/health", timeout=5).status_code
    except httpx.HTTPError:
        return 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its parent) counts as gone.
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(") ")[-1].startswith("Z"))


def replies(url: str, model: str) -> dict[str, Any]:
    """Greedy chat, completion and a batch of 4 concurrent streams, forced to their lengths."""
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0, timeout=600)
    forced = {"ignore_eos": True}
    chat = client.chat.completions.create(
        model=model,
        messages=ASK,
        max_tokens=24,
        temperature=0,
        extra_body=forced,  # type: ignore[arg-type]
    )
    text = client.completions.create(model=model, prompt="Once upon a time", max_tokens=24, temperature=0)
    batch: dict[int, str] = {}

    def one(i: int) -> None:
        stream = client.completions.create(
            model=model, prompt=PROMPTS[i], max_tokens=16, temperature=0, stream=True, extra_body=forced
        )
        batch[i] = "".join(c.choices[0].text for c in stream if c.choices)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"chat": chat.choices[0].message.content, "completion": text.choices[0].text, "batch": batch}


def test_two_ranks_tensor_parallel_answer_as_one_process(settings: Settings, tiny_qwen2: Path) -> None:
    model = ["--model-path", str(tiny_qwen2), "--default-model", "tiny-qwen2"]
    with served(settings, *model) as (url, _):
        alone = replies(url, "tiny-qwen2")
    with served(settings, *model, "--ranks", "2") as (url, _):
        ranks = httpx.get(f"{url}/health").json()["engine"]["distributed"]
        assert (ranks["ranks"], ranks["backend"], ranks["parallelism"]) == (2, "ring", "tensor")
        together = replies(url, "tiny-qwen2")
    assert together == alone
    assert len(alone["batch"]) == 4 and all(alone["batch"].values())


def test_three_ranks_of_the_embedded_model_answer_as_one_process(settings: Settings, engine: Engine) -> None:
    engine.load()  # converted once, in the shared models dir the servers reuse
    with served(settings) as (url, _):
        alone = replies(url, "default")
    with served(settings, "--ranks", "3") as (url, _):
        assert httpx.get(f"{url}/health").json()["engine"]["distributed"]["ranks"] == 3
        together = replies(url, "default")
    assert together == alone


# SIGKILL: the follower's line closes at once. SIGSTOP: it stalls; rank 0 notices when no
# heartbeat came for rank_timeout_s (5 s), however fast or slow the machine.
@pytest.mark.parametrize(("how", "within_s"), [(signal.SIGKILL, 10.0), (signal.SIGSTOP, 5.0 + 10.0)])
def test_a_lost_follower_ends_the_stream_then_the_server_stops(
    settings: Settings, tiny_qwen2: Path, how: signal.Signals, within_s: float
) -> None:
    model = ["--model-path", str(tiny_qwen2), "--default-model", "tiny-qwen2"]
    with served(settings, *model, "--ranks", "2") as (url, _):
        follower = httpx.get(f"{url}/health").json()["engine"]["distributed"]["members"][1]["pid"]
        body = {"model": "tiny-qwen2", "prompt": "a", "max_tokens": 1900, "ignore_eos": True, "stream": True}
        events: list[str] = []
        with httpx.stream("POST", f"{url}/v1/completions", json=body, timeout=600) as r:
            lines = r.iter_lines()
            events.append(next(line for line in lines if line.startswith("data:")))  # it runs
            os.kill(follower, how)
            killed = time.monotonic()
            events.extend(line for line in lines if line.startswith("data:"))
        ended = time.monotonic() - killed
        errors = [json.loads(e[5:]) for e in events if '"error"' in e]
        assert errors and errors[0]["error"]["code"] == "rank_lost", events[-3:]
        assert ended < within_s, ended
        health = httpx.get(f"{url}/health")
        assert health.status_code == 503 and health.json()["status"] == "rank_lost", health.text
        small = {"model": "tiny-qwen2", "prompt": "a", "max_tokens": 2}
        refused = httpx.post(f"{url}/v1/completions", json=small)
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "rank_lost", refused.text


def test_a_model_that_cannot_split_says_why() -> None:
    from workbench.engine.distributed import check_shardable
    from workbench.engine.errors import ModelLoadError

    smollm2 = {"num_attention_heads": 9, "num_key_value_heads": 3, "intermediate_size": 1536}
    with pytest.raises(ModelLoadError, match="9 attention heads, 3 KV heads do not divide by 2"):
        check_shardable(smollm2, 2, "tensor")
    check_shardable(smollm2, 3, "tensor")
