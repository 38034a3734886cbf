"""What an HTTP client loses: the same greedy generation seen by a streaming openai-SDK client of
a `workbench serve` subprocess and by an in-process Engine.stream consumer, in alternating trials."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from workbench.bench.overhead import consumer_figures, engine_run
from workbench.bench.prompts import exact_prompt
from workbench.config import Settings
from workbench.engine import Engine
from workbench.reports.schema import OVERHEAD_FIELDS
from workbench.runs import capture

SDK_PATH = "openai_sdk"
ENGINE_PATH = "engine"


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@contextmanager
def serve_subprocess(settings: Settings, timeout_s: float = 300.0) -> Iterator[str]:
    """`workbench serve` on a free loopback port with these settings; yields its /v1 URL."""
    port = _free_port("127.0.0.1")
    cmd = [sys.executable, "-m", "workbench", "serve", "--port", str(port), "--log-level", "WARNING"]
    cmd += ["--models-dir", str(settings.models_dir), "--blas", settings.blas]
    cmd += ["--default-model", settings.default_model]
    for path in settings.model_paths:
        cmd += ["--model-path", path]
    if settings.memory_budget_gb is not None:
        cmd += ["--memory-budget-gb", str(settings.memory_budget_gb)]
    if settings.allow_download:
        cmd += ["--allow-download"]
    env = {k: v for k, v in os.environ.items() if k != "WORKBENCH_API_KEY"}
    # The server's log goes to a file: an unread pipe would fill up and stall it.
    with tempfile.TemporaryFile(mode="w+") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + timeout_s
            while not _healthy(url):
                if proc.poll() is not None:
                    log.seek(0)
                    raise RuntimeError(f"workbench serve exited early:\n{log.read()}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"workbench serve did not answer on {url} within {timeout_s:.0f}s")
                time.sleep(0.2)
            yield f"{url}/v1"
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def _healthy(url: str) -> bool:
    import httpx

    try:
        return httpx.get(f"{url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def sdk_run(client: Any, model: str, ids: list[int], max_tokens: int) -> dict[str, Any]:
    """One greedy, EOS-ignored streamed completion through the openai SDK, timed here."""
    start = time.perf_counter()
    first = last = start
    timings: dict[str, Any] = {}
    stream = client.completions.create(
        model=model,
        prompt=ids,
        max_tokens=max_tokens,
        temperature=0,
        stream=True,
        extra_body={"ignore_eos": True},
    )
    for chunk in stream:
        now = time.perf_counter()
        choice = chunk.choices[0] if chunk.choices else None
        if choice is not None and choice.text:
            if first == start:
                first = now
            last = now
        if choice is not None and choice.finish_reason:
            timings = chunk.model_extra["timings"]
    count = int(timings["generation_tokens"])
    return consumer_figures(len(ids), count, start, first, last, timings["peak_memory_gb"])


def measure_client_overhead(
    engine: Engine, base_url: str, models: Sequence[str], prompt_tokens: int, gen_tokens: int, trials: int
) -> list[dict[str, Any]]:
    """Alternating paired trials of `engine` (in-process) and the server at `base_url`."""
    try:
        import openai
    except ImportError:
        raise ValueError("overhead --api needs the openai SDK: pip install openai") from None

    client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=600)
    base = capture(engine)
    rows: list[dict[str, Any]] = []
    for model in models:
        engine.load(model)
        ids = exact_prompt(engine, model, prompt_tokens)
        engine_run(engine, model, ids, gen_tokens)  # warm-ups, not recorded
        sdk_run(client, model, ids, gen_tokens)
        for trial in range(trials):
            order = (ENGINE_PATH, SDK_PATH) if trial % 2 == 0 else (SDK_PATH, ENGINE_PATH)
            for path in order:
                if path == ENGINE_PATH:
                    result = engine_run(engine, model, ids, gen_tokens)
                else:
                    result = sdk_run(client, model, ids, gen_tokens)
                rows.append({**base, "model": model, "path": path, "trial": trial, **result})
    return [{k: r[k] for k in OVERHEAD_FIELDS} for r in rows]
