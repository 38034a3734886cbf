"""Stream plumbing shared by the engine thread and its consumers: cancel tokens, per-stream state,
sync/asyncio sinks, and folding chunks into a Completion. Knows nothing of models or mlx."""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from workbench.engine.errors import EngineStoppedError, QueueFullError
from workbench.engine.types import Chunk, Completion, TokenLogprob

T = TypeVar("T")


class CancelToken:
    """Set once to stop a stream; the generation checks it between tokens.

    A stream cancels its own token when it ends, so one token serves one stream. A
    job of many streams (a benchmark run) gives each a `child()`: cancelling the
    parent stops whichever child is running; a child ending leaves the parent alone.
    A token made with `timeout_s` also counts as cancelled once that time has passed
    (`timed_out`), waiting in the queue included; so do its children.
    """

    def __init__(self, parent: CancelToken | None = None, *, timeout_s: float | None = None) -> None:
        self._event = threading.Event()
        self._parent = parent
        self.timeout_s = timeout_s
        self._deadline = time.monotonic() + timeout_s if timeout_s else None

    def cancel(self) -> None:
        self._event.set()

    @property
    def remaining_s(self) -> float | None:
        """Seconds to the nearest deadline (this token's or a parent's); None: no deadline."""
        own = self._deadline - time.monotonic() if self._deadline is not None else None
        parent = self._parent.remaining_s if self._parent is not None else None
        left = [s for s in (own, parent) if s is not None]
        return min(left) if left else None

    @property
    def timed_out(self) -> bool:
        """The deadline (this token's or a parent's) has passed."""
        left = self.remaining_s
        return left is not None and left <= 0

    @property
    def cancelled(self) -> bool:
        return self._event.is_set() or self.timed_out or (self._parent is not None and self._parent.cancelled)

    def child(self) -> CancelToken:
        return CancelToken(parent=self)


@dataclass
class StreamState:
    """What the worker tells a running stream about its situation."""

    cancel: CancelToken
    queued_at: float
    started_at: float = 0.0
    # Most streams that were active at once while this one ran (itself included).
    max_concurrency: int = 1
    # True when the engine was idle as this stream started (per-request peaks are clean).
    started_idle: bool = True


class Sink(Generic[T]):
    """Where a stream's items go; implementations bridge to sync or async consumers."""

    def put(self, item: T) -> None:
        raise NotImplementedError

    def error(self, exc: BaseException) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


_DONE = object()


def _unpack(kind: str, value: Any) -> Any:
    """An item's value, or _DONE at the end; an error message is raised here."""
    if kind == "error":
        raise value
    return value if kind == "item" else _DONE


class QueueSink(Sink[T]):
    """Sync bridge: a consumer thread blocks on a queue."""

    def __init__(self) -> None:
        self.queue: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()

    def put(self, item: T) -> None:
        self.queue.put(("item", item))

    def error(self, exc: BaseException) -> None:
        self.queue.put(("error", exc))

    def close(self) -> None:
        self.queue.put(("done", _DONE))

    def __iter__(self) -> Iterator[T]:
        while (value := _unpack(*self.queue.get())) is not _DONE:
            yield value


class LoopSink(Sink[T]):
    """Async bridge: items are handed to an event loop thread-safely."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

    def _send(self, kind: str, value: Any) -> None:
        # A closed loop means the consumer is gone: there is nothing to deliver.
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self.queue.put_nowait, (kind, value))

    def put(self, item: T) -> None:
        self._send("item", item)

    def error(self, exc: BaseException) -> None:
        self._send("error", exc)

    def close(self) -> None:
        self._send("done", _DONE)

    async def __aiter__(self) -> AsyncIterator[T]:
        while (value := _unpack(*await self.queue.get())) is not _DONE:
            yield value


def collect(chunks: Iterator[Chunk]) -> Completion:
    """Fold a chunk stream into a Completion. Reads the stream to its end, so the
    generation has left the engine thread when this returns (the next one, e.g. a
    benchmark's next trial, then starts on an idle engine)."""
    texts: list[str] = []
    reasoning: list[str] = []
    events: list[tuple[Any, ...]] = []
    ids: list[int] = []
    logprobs: list[TokenLogprob] = []
    stats = None
    for chunk in chunks:
        texts.append(chunk.text)
        reasoning.append(chunk.reasoning)
        events.extend(chunk.calls)
        if chunk.token_id is not None:
            ids.append(chunk.token_id)
        if chunk.logprob is not None:
            logprobs.append(chunk.logprob)
        stats = chunk.stats or stats
    if stats is None:
        raise EngineStoppedError("the stream ended without stats (engine stopped?)")
    return Completion(
        "".join(texts), tuple(ids), stats, tuple(logprobs), "".join(reasoning), calls_of(events)
    )


def calls_of(events: list[tuple[Any, ...]]) -> tuple[Any, ...]:
    """The ToolCalls a stream's call events ("call", i, name) / ("args", i, json) add up to."""
    from workbench.engine.structured.tools import ToolCall

    names = {e[1]: e[2] for e in events if e[0] == "call"}
    args: dict[int, str] = {}
    for e in events:
        if e[0] == "args":
            args[e[1]] = args.get(e[1], "") + e[2]
    return tuple(ToolCall(names[i], args.get(i, "{}")) for i in sorted(names))


class Admission:
    """Generations admitted and not yet finished (running, or waiting on the thread or in a
    batch), at most max_batch + max_queue: `enter` beyond that raises QueueFullError (429)."""

    def __init__(self, max_batch: int, max_queue: int) -> None:
        self.max_batch, self.max_queue = max_batch, max_queue
        self.count = 0
        self._lock = threading.Lock()

    def enter(self) -> None:
        with self._lock:
            if self.count >= self.max_batch + self.max_queue:
                raise QueueFullError(
                    f"the engine is full: {self.count} generations are running or waiting "
                    f"(max_batch {self.max_batch} + max_queue {self.max_queue}); retry in a moment"
                )
            self.count += 1

    def leave(self) -> None:
        with self._lock:
            self.count -= 1
