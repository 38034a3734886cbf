"""What the tabs share: the engine queue, model pickers, sampling controls, the stats line, readable
errors, Stop tokens per browser session, streaming from the engine. No HTTP formats, no mlx."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import gradio as gr

from workbench.engine import (
    CancelToken,
    Engine,
    EngineError,
    GenerationRequest,
    GenerationStats,
    MemoryInfo,
    Message,
    ModelInfo,
    SamplingParams,
)

log = logging.getLogger(__name__)

# Every event that runs engine work (generation, load, unload, import) waits in this
# one Gradio queue, one at a time: the UI shows a queue position instead of silently
# sharing the engine thread, and the tok/s it shows were measured alone. (The HTTP
# API is not in this queue; a reply that shared the engine says so in its stats.)
ENGINE_QUEUE = "engine"
ENGINE_CONCURRENCY = 1


def engine_event(**kwargs: Any) -> dict[str, Any]:
    """Keyword arguments for an engine-bound event listener."""
    return {"concurrency_id": ENGINE_QUEUE, "concurrency_limit": ENGINE_CONCURRENCY, **kwargs}


# ---- errors -----------------------------------------------------------------
@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn engine and validation errors into a readable message in the page (never a
    stack trace); unexpected errors are logged with their traceback on the server."""
    try:
        yield
    except gr.Error:
        raise
    except (EngineError, ValueError) as exc:
        raise gr.Error(str(exc), print_exception=False) from exc
    except Exception as exc:
        log.exception("UI handler failed")
        raise gr.Error(f"internal error ({type(exc).__name__}): {exc}", print_exception=False) from exc


# ---- models -----------------------------------------------------------------
def _size(info: ModelInfo) -> str:
    return f"{info.size_bytes / 1e6:,.1f} MB" if info.size_bytes else "size unknown"


def model_choices(models: Sequence[ModelInfo]) -> list[tuple[str, str]]:
    """(label, id) picker choices for `models` (engine.models(): every registered id)."""
    return [(f"{m.id} · {m.variant} · {_size(m)}{' · loaded' if m.loaded else ''}", m.id) for m in models]


def model_picker(label: str, **kwargs: Any) -> gr.Dropdown:
    """A model dropdown, filled when the page loads (the engine starts after the UI is
    built). A typed id is accepted too: a hub id, or a path to a folder or GGUF file."""
    return gr.Dropdown(
        choices=[], value=None, label=label, allow_custom_value=True, filterable=True, **kwargs
    )


def picked(value: str | None) -> str | None:
    """A picker's value as a model id (None = the engine's default model)."""
    return value.strip() if isinstance(value, str) and value.strip() else None


def memory_markdown(mem: MemoryInfo) -> str:
    return (
        f"**MLX** active {mem.active_gb:.3f} GB · peak {mem.peak_gb:.3f} GB · cache {mem.cache_gb:.3f} GB  \n"
        f"**Process** RSS {mem.process_rss_gb:.2f} GB · **System** available "
        f"{mem.system_available_gb:.1f} of {mem.system_total_gb:.1f} GB  \n"
        f"**Models** loaded {mem.loaded_models_gb:.2f} GB of a {mem.budget_gb:.1f} GB budget"
    )


# ---- sampling ---------------------------------------------------------------
@dataclass(frozen=True)
class SamplingControls:
    """The sampling widgets; `inputs` is their order in an event's inputs."""

    temperature: gr.Slider
    top_p: gr.Slider
    top_k: gr.Number
    min_p: gr.Slider
    repetition_penalty: gr.Slider
    max_tokens: gr.Number
    seed: gr.Number

    @property
    def inputs(self) -> list[gr.components.Component]:
        return [
            self.temperature,
            self.top_p,
            self.top_k,
            self.min_p,
            self.repetition_penalty,
            self.max_tokens,
            self.seed,
        ]


def sampling_controls(prefix: str, *, max_tokens: int = 512, open: bool = False) -> SamplingControls:
    """Sampling widgets in an accordion; element ids start with `prefix`."""
    with gr.Accordion("Sampling", open=open, elem_id=f"{prefix}-sampling"):
        with gr.Row():
            temperature = gr.Slider(
                0, 2, value=0.7, step=0.05, label="Temperature (0 = greedy)", elem_id=f"{prefix}-temperature"
            )
            top_p = gr.Slider(0.01, 1, value=1.0, step=0.01, label="Top-p")
            min_p = gr.Slider(0, 1, value=0.0, step=0.01, label="Min-p")
            repetition_penalty = gr.Slider(0.5, 2, value=1.0, step=0.01, label="Repetition penalty")
        with gr.Row():
            top_k = gr.Number(0, precision=0, minimum=0, label="Top-k (0 = off)")
            max_tokens_box = gr.Number(
                max_tokens, precision=0, minimum=1, label="Max tokens", elem_id=f"{prefix}-max-tokens"
            )
            seed = gr.Number(
                -1,
                precision=0,
                label="Seed (-1 = random; the one used is shown)",
                elem_id=f"{prefix}-seed",
            )
    return SamplingControls(temperature, top_p, top_k, min_p, repetition_penalty, max_tokens_box, seed)


def read_sampling(values: Sequence[Any]) -> tuple[SamplingParams, int, int]:
    """(SamplingParams, max_tokens, seed) from SamplingControls.inputs values. A seed of -1
    (or empty) draws one here, so every side of a comparison shares it and it is shown."""
    temperature, top_p, top_k, min_p, repetition_penalty, max_tokens, seed = values
    if max_tokens is None or int(max_tokens) < 1:
        raise gr.Error("Max tokens must be a whole number of at least 1.")
    seed = secrets.randbits(31) if seed is None or int(seed) < 0 else int(seed)
    params = SamplingParams(
        temperature=float(temperature),
        top_p=float(top_p),
        top_k=int(top_k or 0),
        min_p=float(min_p),
        repetition_penalty=float(repetition_penalty),
        seed=seed,
    )
    return params, int(max_tokens), seed


def sampling_dict(params: SamplingParams, max_tokens: int) -> dict[str, Any]:
    keys = ("temperature", "top_p", "top_k", "min_p", "repetition_penalty", "seed")
    return {k: getattr(params, k) for k in keys} | {"max_tokens": max_tokens}


def chat_messages(system_prompt: str | None, turns: Sequence[dict[str, Any]]) -> tuple[Message, ...]:
    """Engine messages from an optional system prompt and {"role", "content"} turns."""
    system = [Message("system", system_prompt.strip())] if system_prompt and system_prompt.strip() else []
    return (*system, *(Message(t["role"], t["content"]) for t in turns))


# ---- stats ------------------------------------------------------------------
def stats_line(stats: GenerationStats) -> str:
    """The one-line stats shown under a reply (TTFT, tok/s, tokens, peak memory, seed)."""
    seed = f" | seed {stats.seed}" if stats.seed is not None else ""
    return f"{stats.model} | {stats.summary()}{seed}"


def stats_html(text: str) -> str:
    return f'<span class="wb-stats">{text}</span>'


# ---- cancellation and streaming ---------------------------------------------
class SessionCancels:
    """Cancel tokens of the generations each browser session is running, so Stop
    reaches the engine even when Gradio's own cancel arrives late. Leaving `track`
    by any path (an error, a closed page) cancels what still runs. Tickets (`ticket`,
    handed out when a message is posted) let Stop also reach a reply still waiting in
    Gradio's queue: `cancel(session, upto)` makes every ticket up to `upto` start cancelled."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[str, set[CancelToken]] = {}
        self._tickets = itertools.count(1)
        self._stopped_upto: dict[str, int] = {}

    def ticket(self) -> int:
        """A number for a reply about to be queued, larger than every earlier one."""
        with self._lock:
            return next(self._tickets)

    @contextlib.contextmanager
    def track(
        self, session: str | None, count: int = 1, ticket: int | None = None
    ) -> Iterator[list[CancelToken]]:
        """`count` fresh tokens (one per generation: a finished stream cancels its own
        token, so generations never share one) registered under `session`; already
        cancelled when Stop came for `ticket` before the reply started."""
        tokens = [CancelToken() for _ in range(count)]
        key = session or ""
        with self._lock:
            self._tokens.setdefault(key, set()).update(tokens)
            if ticket is not None and ticket <= self._stopped_upto.get(key, 0):
                for token in tokens:
                    token.cancel()
        try:
            yield tokens
        finally:
            for token in tokens:
                token.cancel()
            with self._lock:
                self._tokens.get(key, set()).difference_update(tokens)
                if not self._tokens.get(key):
                    self._tokens.pop(key, None)

    def cancel(self, session: str | None, upto: int | None = None) -> int:
        """Cancel every generation of `session`, and the replies of tickets up to `upto`
        not started yet; returns how many were running."""
        key = session or ""
        with self._lock:
            tokens = list(self._tokens.get(key, ()))
            if upto is not None:
                self._stopped_upto[key] = max(upto, self._stopped_upto.get(key, 0))
        for token in tokens:
            token.cancel()
        return len(tokens)


async def stream_text(
    engine: Engine, request: GenerationRequest, cancel: CancelToken
) -> AsyncIterator[tuple[str, GenerationStats | None]]:
    """(text so far, stats on the last step) as the engine generates. Close it with
    contextlib.aclosing: leaving early then stops the engine at once, not at GC time."""
    text = ""
    async with contextlib.aclosing(engine.astream(request, cancel)) as chunks:
        async for chunk in chunks:
            text += chunk.text
            yield text, chunk.stats


async def one_after_another(
    streams: Sequence[AsyncIterator[Any]],
) -> AsyncIterator[tuple[int, Any]]:
    """(index, item) from each stream in turn; a stream starts when the one before ends."""
    for i, stream in enumerate(streams):
        async with contextlib.aclosing(stream) as items:  # type: ignore[type-var]
            async for item in items:
                yield i, item


async def interleave(
    streams: Sequence[AsyncIterator[Any]],
) -> AsyncIterator[tuple[int, Any]]:
    """(index, item) from several async iterators as items arrive. The first error
    cancels the others and is raised; leaving early cancels them all."""
    queue: asyncio.Queue[tuple[int, Any, BaseException | None, bool]] = asyncio.Queue()

    async def pump(i: int, stream: AsyncIterator[Any]) -> None:
        try:
            async for item in stream:
                await queue.put((i, item, None, False))
        except Exception as exc:
            await queue.put((i, None, exc, True))
        else:
            await queue.put((i, None, None, True))

    tasks = [asyncio.create_task(pump(i, s)) for i, s in enumerate(streams)]
    try:
        running = len(tasks)
        while running:
            i, item, error, done = await queue.get()
            if error is not None:
                raise error
            if done:
                running -= 1
            else:
                yield i, item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
