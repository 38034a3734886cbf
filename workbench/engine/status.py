"""What the engine publishes for readers that must never wait for it (/health, /metrics,
/v1/models): a snapshot of its models and memory, built on the engine thread, and what it
is busy with (loading a model, a benchmark run). Plain data and a lock; no mlx here."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from workbench.engine.types import Chunk, MemoryInfo, ModelInfo

if TYPE_CHECKING:
    from workbench.engine.models.registry import ModelRegistry

# While generations run, the published memory figures are refreshed this often (at most).
MEMORY_REFRESH_S = 0.5


@dataclass(frozen=True)
class EngineStatus:
    """The engine's state as last published from its thread.

    `models` and `aliases` are current as of the last job that changed them (a load,
    an unload, a new registration); `memory` as of `memory_at` (time.time()), refreshed
    after every job and at least twice a second while generations run."""

    default_model: str
    models: tuple[ModelInfo, ...]
    aliases: Mapping[str, str]  # alias (the default alias included) -> registered id
    memory: MemoryInfo
    memory_at: float

    def find(self, name: str) -> ModelInfo | None:
        """The registered model `name` (an id or an alias) names, or None."""
        wanted = self.aliases.get(name, name)
        return next((m for m in self.models if m.id == wanted), None)


class StatusBoard:
    """The latest EngineStatus plus the labels of what the engine is doing now."""

    def __init__(self) -> None:
        self._status: EngineStatus | None = None
        self._busy: list[str] = []
        self._lock = threading.Lock()

    @property
    def status(self) -> EngineStatus | None:
        return self._status  # one reference read: atomic

    def publish(self, status: EngineStatus) -> None:
        self._status = status

    @contextmanager
    def busy(self, what: str) -> Iterator[None]:
        """Say `what` the engine is doing for the length of the block."""
        with self._lock:
            self._busy.append(what)
        try:
            yield
        finally:
            with self._lock:
                self._busy.remove(what)

    def activity(self) -> tuple[str, ...]:
        """What the engine is busy with, oldest first (empty: generations only, or idle)."""
        with self._lock:
            return tuple(self._busy)


class StatusPublisher:
    """Builds and publishes EngineStatus on the engine thread: after every job and round,
    but only when models or the number of running generations changed, else at most every
    MEMORY_REFRESH_S (the memory figures cost a few system calls)."""

    def __init__(self, board: StatusBoard) -> None:
        self._board = board
        self._changes = -1
        self._streams = -1
        self._memory_at = 0.0

    def publish(self, registry: ModelRegistry, streams: int, *, force: bool = False) -> None:
        now = time.monotonic()
        changed = registry.changes != self._changes
        fresh = streams == self._streams and now - self._memory_at < MEMORY_REFRESH_S
        if not (force or changed) and fresh:
            return
        from workbench.engine import memory

        old = self._board.status
        models = tuple(registry.infos()) if changed or old is None else old.models
        aliases = registry.aliases() if changed or old is None else old.aliases
        self._changes, self._streams, self._memory_at = registry.changes, streams, now
        self._board.publish(
            EngineStatus(
                default_model=registry.default_id(),
                models=models,
                aliases=aliases,
                memory=memory.snapshot(registry.budget_bytes, registry.loaded_bytes()),
                memory_at=time.time(),
            )
        )


class TokenCounts:
    """Tokens generated per model id, bumped on the engine thread as each chunk is made
    (a running generation's too) and read from any thread without waiting."""

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def add(self, model_id: str, chunk: Chunk | None, counted: int) -> int:
        """Count `chunk` of a generation that has `counted` tokens so far; returns the new
        count. The final chunk adds what no chunk showed (an end-of-sequence token), so a
        generation ends at its stats' generation_tokens."""
        if chunk is None or (chunk.token_id is None and chunk.stats is None):
            return counted
        n = 1 if chunk.stats is None else max(chunk.stats.generation_tokens - counted, 0)
        with self._lock:
            self._counts[model_id] = self._counts.get(model_id, 0) + n
        return counted + n

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)
