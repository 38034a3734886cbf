"""The engine thread's units of work: `_Job` (a call, a stream, or an exclusive lease's acquire or
release), a running `_Stream`, and the lease's `_Gate`. Plain data; no mlx."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from workbench.engine.streams import Sink, StreamState


@dataclass(eq=False)
class _Job:
    owner: object | None
    fn: Callable[[], Any] | None = None
    future: Future[Any] | None = None
    # Stream jobs:
    factory: Callable[[StreamState], Iterator[Any]] | None = None
    sink: Sink[Any] | None = None
    state: StreamState | None = None
    # Control jobs (lease acquire / release) bypass the exclusive gate:
    control: str | None = None
    # What the other ranks of a distributed engine do for this job (lockstep.Lockstep).
    mirror: tuple[Any, ...] | None = None


@dataclass(eq=False)
class _Stream:
    job: _Job
    iterator: Iterator[Any]


@dataclass
class _Gate:
    """The exclusive lease: who holds it, who waits, what is deferred meanwhile."""

    owner: object | None = None
    granted: bool = False
    pending_future: Future[None] | None = None
    waiters: deque[tuple[object, Future[None]]] = field(default_factory=deque)
    deferred: deque[_Job] = field(default_factory=deque)
