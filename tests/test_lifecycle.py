"""A request's and a server's life at the edges: which models a request may name (and
that a refused one touches no file or network), the per-request timeout, and SIGTERM's
graceful drain on a real `workbench serve` process. All on 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from api.app import create_app
from tests.helpers import LiveServer, free_port, wait_until
from workbench.config import Settings
from workbench.engine import Engine, ModelNotFoundError

# Names a request must not get loaded by default: paths (relative, absolute, one that
# exists and holds a real model) and hub ids that are not registered (or not ids at all).
HUB_ID = "mlx-community/Not-Registered-4bit"
REFUSED = ("../../etc/passwd", "/etc/passwd", HUB_ID, "owner/..", "a/../../b", "x/.git")


@pytest.fixture(scope="module")
def server(settings: Settings, engine: Engine) -> Iterator[LiveServer]:
    with LiveServer(create_app(settings.with_(request_timeout_s=3), engine, with_ui=False)) as live:
        yield live


def test_requests_name_registered_models_only(server: LiveServer, engine: Engine) -> None:
    folder = engine.model_info().path  # a real MLX model folder on this machine
    assert (Path(folder) / "config.json").exists()
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0)
    for name in (*REFUSED, folder):
        with pytest.raises(openai.NotFoundError) as caught:
            client.chat.completions.create(model=name, messages=[{"role": "user", "content": "hi"}])
        error = caught.value.body
        assert isinstance(error, dict) and error["code"] == "model_not_found", name
        assert "registered models only" in error["message"] and "--api-models hub" in error["message"]
    hi = [{"role": "user", "content": "hi"}]
    r = httpx.post(f"{server.url}/v1/messages", json={"model": REFUSED[0], "max_tokens": 4, "messages": hi})
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error", r.text
    # Registered ids and aliases still work.
    reply = client.chat.completions.create(
        model=engine.default_model, messages=[{"role": "user", "content": "hi"}], max_tokens=2
    )
    assert reply.model == engine.default_model


def test_a_refused_name_touches_no_file_or_network(engine: Engine) -> None:
    """Audit events (open, listdir, scandir, socket use) on any thread while the engine
    resolves refused names in the API's default scope: there must be none."""
    seen: list[tuple[str, str]] = []
    watching = threading.Event()
    watched = ("open", "os.listdir", "os.scandir", "socket.", "shutil.", "os.mkdir")

    def own_stats(args: tuple[Any, ...]) -> bool:
        # The engine's status publisher reads this process's memory figures (psutil):
        # /proc and /sys, never a model file, whatever name is asked for.
        return bool(args) and str(args[0]).startswith(("/proc/", "/sys/"))

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if watching.is_set() and event.startswith(watched) and not own_stats(args):
            seen.append((event, repr(args)[:120]))

    sys.addaudithook(hook)  # cannot be removed; idle outside `watching`
    folder = engine.model_info().path
    watching.set()
    try:
        for name in (*REFUSED, folder):
            with pytest.raises(ModelNotFoundError):
                engine.model_info(name, scope="registered")
            if name != HUB_ID:  # paths and non-ids stay refused when hub ids are allowed
                with pytest.raises(ModelNotFoundError):
                    engine.model_info(name, scope="hub")
    finally:
        watching.clear()
    assert seen == []
    # The wider scopes, for servers that ask for them.
    assert engine.model_info(HUB_ID, scope="hub").source == "hub"
    assert engine.model_info(folder, scope="any").path == folder
    with pytest.raises(ValueError, match=r"api_models=.all.: expected one of registered, hub, any"):
        Settings(api_models="all")  # type: ignore[arg-type]


def test_the_request_timeout_stops_the_generation(server: LiveServer, engine: Engine) -> None:
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0)
    # ignore_eos and 4000 tokens: far past the 3 s limit on any machine (seconds even on a GPU).
    long = {"model": "default", "prompt": "1, 2, 3, 4, 5,", "max_tokens": 4000, "temperature": 0}
    started = time.monotonic()
    with pytest.raises(openai.InternalServerError) as caught:
        client.completions.create(**long, extra_body={"ignore_eos": True})
    took = time.monotonic() - started
    assert caught.value.status_code == 504 and 3 <= took < 12, took
    body = caught.value.body
    assert isinstance(body, dict) and body["code"] == "request_timeout"
    assert "WORKBENCH_REQUEST_TIMEOUT_S" in body["message"]
    assert wait_until(lambda: engine.active_streams == 0 and engine.queued_generations == 0, 60)
    # A stream sends what it made, then the error as its last event.
    text, error = "", None
    streamed = {**long, "stream": True, "ignore_eos": True}
    with httpx.stream("POST", f"{server.url}/v1/completions", json=streamed) as r:
        for line in r.iter_lines():
            if line.startswith("data: {"):
                event = json.loads(line[6:])
                if "error" in event:
                    error = event["error"]
                else:
                    text += event["choices"][0]["text"]
    assert text and error is not None and error["code"] == "request_timeout", (text, error)
    # Anthropic's shape and type for the same limit.
    count = [{"role": "user", "content": "Count to 500."}]
    body = {"model": "default", "max_tokens": 4000, "messages": count, "temperature": 0, "ignore_eos": True}
    r = httpx.post(f"{server.url}/v1/messages", json=body, timeout=30)
    assert r.status_code == 504 and r.json()["error"]["type"] == "timeout_error", r.text
    assert wait_until(lambda: engine.active_streams == 0 and engine.queued_generations == 0, 60)
    # The clock runs while the engine thread is held elsewhere (here by a benchmark's
    # exclusive use): the 504 comes on time, not when the engine is free again.
    with engine.exclusive():
        for stream in (False, True):
            started = time.monotonic()
            chat = {"model": "default", "messages": count, "max_tokens": 4, "stream": stream}
            r = httpx.post(f"{server.url}/v1/chat/completions", json=chat, timeout=30)
            took = time.monotonic() - started
            assert r.status_code == 504 and r.json()["error"]["code"] == "request_timeout", r.text
            assert "waiting for the engine" in r.json()["error"]["message"] and took < 8, took
    assert wait_until(lambda: engine.active_streams == 0 and engine.queued_generations == 0, 60)


def test_sigterm_lets_a_stream_finish_and_refuses_new_requests(settings: Settings, engine: Engine) -> None:
    engine.load()  # converted once, in the shared models dir the server reuses
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKBENCH_")}
    env.update(WORKBENCH_MODELS_DIR=str(settings.models_dir), PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "workbench", "serve", "--port", str(port), "--drain-s", "120"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:

        def healthy() -> bool:
            try:
                return httpx.get(f"{url}/health", timeout=5).status_code == 200
            except httpx.HTTPError:
                return False

        assert wait_until(healthy, timeout_s=180, interval_s=0.2), "the server did not become healthy"
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
        stream = client.chat.completions.create(
            model="default",
            messages=[{"role": "user", "content": "Count from one to forty in words."}],
            # Forced to 150 tokens: seconds of work even 3x faster than this machine (the
            # checks below take milliseconds), well inside the 120 s drain 3x slower.
            max_tokens=150,
            temperature=0,
            stream=True,
            extra_body={"ignore_eos": True},
        )
        chunks = iter(stream)
        first = next(chunks)  # the generation is running
        proc.send_signal(signal.SIGTERM)
        assert wait_until(lambda: httpx.get(f"{url}/health").status_code == 503, 10)
        health = httpx.get(f"{url}/health").json()
        assert health["status"] == "draining", health
        refused = httpx.post(f"{url}/v1/chat/completions", json={"model": "default", "messages": []})
        assert refused.status_code == 503 and refused.headers["retry-after"] == "5"
        assert refused.json()["error"]["code"] == "shutting_down"
        rest = list(chunks)  # the stream in flight runs to its end
        finish = [c.choices[0].finish_reason for c in [first, *rest] if c.choices]
        assert finish[-1] == "length", finish
        assert proc.wait(timeout=60) == 0  # then the process exits, cleanly
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = proc.stdout.read() if proc.stdout else ""
    assert "SIGTERM: draining" in log and "drained (nothing in flight)" in log, log[-2000:]


def test_code_shipped_with_a_model_never_runs(engine: Engine, tmp_path: Path) -> None:
    """A model folder whose tokenizer and config point at a Python file (auto_map, as
    trust_remote_code models do): loading it must not import that file."""
    source = Path(engine.load("smollm2-135m-instruct-4bit").path)  # its converted MLX folder
    folder = tmp_path / "remote-code-model"
    folder.mkdir()
    for item in source.iterdir():  # weights linked, small files copied (and edited below)
        if item.suffix == ".safetensors":
            (folder / item.name).symlink_to(item)
        else:
            (folder / item.name).write_bytes(item.read_bytes())
    marker = tmp_path / "code-ran"
    (folder / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\nclass Evil: pass\n")
    for name, key in (("tokenizer_config.json", "AutoTokenizer"), ("config.json", "AutoConfig")):
        data = json.loads((folder / name).read_text())
        data["auto_map"] = {key: ["evil.Evil", None] if key == "AutoTokenizer" else "evil.Evil"}
        (folder / name).write_text(json.dumps(data))
    try:
        engine.load(str(folder))  # may load (the code ignored) or refuse; either way no code runs
    except Exception as exc:  # the outcome that matters is the marker
        print("refused:", exc)
    finally:
        with contextlib.suppress(Exception):
            engine.unload(str(folder))
    assert not marker.exists()
