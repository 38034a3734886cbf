"""Small helpers shared by tests (no fixtures here)."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(predicate: Callable[[], bool], timeout_s: float = 5.0, interval_s: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return predicate()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    """A real uvicorn serving `app` on 127.0.0.1 from a background thread. A port taken
    between free_port() and the bind (another xdist worker) is retried on a fresh one."""

    def __init__(self, app: object, *, wait_ready: bool = True) -> None:
        self.app = app
        self.wait_ready = wait_ready
        self._new_server()

    def _new_server(self) -> None:
        import threading

        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(
            uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning")  # type: ignore[arg-type]
        )
        self.thread = threading.Thread(target=self.server.run, name=f"uvicorn-{self.port}", daemon=True)

    def __enter__(self) -> LiveServer:
        for attempt in range(3):
            self.thread.start()
            if not wait_until(lambda: self.server.started or not self.thread.is_alive(), timeout_s=120):
                raise TimeoutError("uvicorn did not start")
            if self.server.started:
                break
            if attempt == 2:
                raise RuntimeError("uvicorn failed to start (see the log above)")
            self._new_server()
        if self.wait_ready and not wait_until(self._ready, timeout_s=300, interval_s=0.05):
            raise TimeoutError("the app stayed 'loading' (its default model) for 5 minutes")
        return self

    def _ready(self) -> bool:
        """The default model has loaded (or failed to): /health no longer says 'loading'."""
        import httpx

        try:
            return httpx.get(f"{self.url}/health", timeout=10).json().get("status") != "loading"
        except (httpx.HTTPError, ValueError):
            return False

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


class FinishedGenerations:
    """The stats of every generation the engine finishes while the block runs (an engine
    stats listener), so a test can wait for an outcome instead of timing one."""

    def __init__(self, engine: object) -> None:
        self.engine = engine
        self.seen: list = []

    def __enter__(self) -> FinishedGenerations:
        self.engine.add_stats_listener(self.seen.append)  # type: ignore[attr-defined]
        return self

    def __exit__(self, *exc: object) -> None:
        self.engine.remove_stats_listener(self.seen.append)  # type: ignore[attr-defined]

    def wait(self, count: int = 1, timeout_s: float = 300) -> list:
        """The first `count` finished generations' stats (waits for them; an uncancelled
        4000-token generation would take minutes here, so a cancel shows as one that ended
        early with finish_reason 'cancelled')."""
        assert wait_until(lambda: len(self.seen) >= count, timeout_s=timeout_s, interval_s=0.01), self.seen
        return self.seen[:count]

    def cancelled(self, max_tokens: int, timeout_s: float = 300) -> object:
        """Waits for the one generation to end and checks it was cancelled well short of
        `max_tokens` (its length was forced with ignore_eos): the cancel reached the engine."""
        (stats,) = self.wait(1, timeout_s)
        assert stats.finish_reason == "cancelled", stats
        assert stats.generation_tokens < max_tokens // 2, stats
        return stats


# A Qwen3 / DeepSeek-R1 style template: the generation prompt opens a thinking section
# unless enable_thinking is false, which renders it closed and empty.
THINKING_TEMPLATE = (
    "{%- for message in messages %}<|im_start|>{{ message.role }}\n{{ message.content }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n"
    "{% else %}<think>\n{% endif %}{% endif %}"
)


def write_thinking_model(source: object, folder: object) -> object:
    """The embedded float32 weights (linked) under a tokenizer whose two unused special
    tokens (ids 15, 16) are `<think>` / `</think>` (plain text when decoded, as Qwen3's) and
    THINKING_TEMPLATE: a model with a thinking section, as mlx-lm detects one."""
    import json
    from pathlib import Path

    source, folder = Path(str(source)), Path(str(folder))
    folder.mkdir(parents=True, exist_ok=True)
    for item in source.iterdir():
        if item.name not in ("tokenizer.json", "tokenizer_config.json", "workbench_source.json"):
            (folder / item.name).symlink_to(item)
    tok = json.loads((source / "tokenizer.json").read_text())
    names = {15: "<think>", 16: "</think>"}
    for added in tok["added_tokens"]:
        if added["id"] in names:
            old = added["content"]
            added["content"], added["special"] = names[added["id"]], False
            tok["model"]["vocab"][names[added["id"]]] = tok["model"]["vocab"].pop(old)
    (folder / "tokenizer.json").write_text(json.dumps(tok))
    config = json.loads((source / "tokenizer_config.json").read_text())
    config["chat_template"] = THINKING_TEMPLATE
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder


# A Hermes / Qwen2.5 style template that renders `tools` itself and asks for calls as
# <tool_call>{"name": ..., "arguments": ...}</tool_call> (mlx-lm reads it as json_tools).
HERMES_TEMPLATE = (
    "{%- if tools %}<|im_start|>system\nYou may call functions. Signatures:\n<tools>\n"
    "{%- for tool in tools %}{{ tool | tojson }}\n{%- endfor %}</tools>\n"
    'Answer a call as <tool_call>\n{"name": <name>, "arguments": <args>}\n</tool_call><|im_end|>\n'
    "{%- endif %}{%- for message in messages %}<|im_start|>{{ message.role }}\n"
    "{%- if message.tool_calls %}{%- for tool_call in message.tool_calls %}<tool_call>\n"
    '{"name": "{{ tool_call.name }}"}\n</tool_call>{%- endfor %}{%- else %}{{ message.content }}'
    "{%- endif %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def write_template_model(source: object, folder: object, template: str) -> object:
    """The embedded float32 weights (linked) and tokenizer under another chat template."""
    import json
    from pathlib import Path

    source, folder = Path(str(source)), Path(str(folder))
    folder.mkdir(parents=True, exist_ok=True)
    for item in source.iterdir():
        if item.name not in ("tokenizer_config.json", "workbench_source.json"):
            (folder / item.name).symlink_to(item)
    config = json.loads((source / "tokenizer_config.json").read_text())
    config["chat_template"] = template
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder
