"""RankCalls, mixed into Engine: joining the rank group mlx.launch started, a follower's replay of
rank 0's work, what /health says of the ranks, and the calls a distributed engine refuses."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from workbench.engine.errors import DistributedUnsupportedError, EngineError, ModelLoadError

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from workbench.engine.distributed import RankGroup
    from workbench.engine.types import Chunk
    from workbench.engine.worker import EngineWorker


T = TypeVar("T")


class _NullSink:
    """A follower's generations compute in step with rank 0's; their chunks go nowhere."""

    def put(self, item: Any) -> None:
        pass

    def error(self, exc: BaseException) -> None:
        pass

    def close(self) -> None:
        pass


class RankCalls:
    """The distributed side of Engine (the Engine supplies _worker, settings, _load, registry,
    _generation)."""

    _worker: EngineWorker
    ranks: RankGroup | None = None

    def _join_ranks(self) -> RankGroup | None:
        """On the engine thread, after mlx: the group (None alone). A distributed engine runs its
        worker's loop in lockstep, never cuts prefill chunks by measured time (each rank would
        measure its own) and keeps no prompt cache on disk."""
        from workbench.engine import distributed
        from workbench.engine.lockstep import Lockstep

        settings = self.settings  # type: ignore[attr-defined]
        ranks = distributed.join(settings.parallel)
        if ranks is None:
            return None
        off = {"speculative": "off"} if settings.speculative.startswith("draft") else {}
        if off:
            log.warning("a distributed engine runs no draft model: WORKBENCH_SPECULATIVE is off")
        self.settings = settings.with_(prefill_share=0.0, prompt_cache_dir=None, **off)
        ranks.gather_hello({})
        self.ranks = ranks
        self._worker.rounds = Lockstep(ranks, self._replay, timeout_s=settings.rank_timeout_s)
        return ranks

    def _replay(self, op: tuple[Any, ...]) -> Any:
        """A follower's job for an op rank 0 named: ("gen", request), ("load", id), ("unload", id)."""
        from concurrent.futures import Future

        from workbench.engine.streams import CancelToken, StreamState
        from workbench.engine.worker_jobs import _Job

        kind, arg = op
        if kind == "gen":
            state = StreamState(cancel=CancelToken(), queued_at=time.perf_counter())
            factory = partial(self._generation, arg)  # type: ignore[attr-defined]
            return _Job(owner=None, factory=factory, sink=_NullSink(), state=state, mirror=op)
        registry = self.registry  # type: ignore[attr-defined]
        calls = {
            "load": lambda: self._load(arg),  # type: ignore[attr-defined]
            "unload": lambda: registry.unload(arg),
            "refresh": registry.refresh,
        }
        return _Job(owner=None, fn=calls[kind], future=Future(), mirror=op)

    @property
    def distributed(self) -> dict[str, Any] | None:
        """Ranks, backend, parallelism, hosts and members (rank, host, pid) of a distributed
        engine, with `lost` (why it can no longer compute) once a rank is gone; None alone."""
        if self.ranks is None:
            return None
        rounds = self._worker.rounds
        lost = rounds.lost if rounds is not None else None
        return {**self.ranks.describe(), "lost": str(lost) if lost is not None else None}

    def _with_rank_peaks(self, chunk: Chunk) -> Chunk:
        """A generation's last chunk with every rank's peak memory in its stats. Each rank calls
        it as that generation ends, which is the same step on every rank."""
        from workbench.engine import memory

        if self.ranks is None or chunk.stats is None:
            return chunk
        peaks = tuple(round(row[0], 4) for row in self.ranks.gather([memory.peak_bytes() / 1e9]))
        return replace(chunk, stats=replace(chunk.stats, rank_peak_memory_gb=peaks))

    def _agreed(self, fn: Callable[[], T], what: str) -> T:
        """fn() on every rank, and the same outcome everywhere: where it failed on another rank
        only (a model that host lacks), it fails here too instead of leaving this rank to compute
        alone. Alone, or outside a round every rank runs, just fn()."""
        rounds = self._worker.rounds
        if self.ranks is None or rounds is None or not rounds.replaying:
            return fn()
        value: T | None = None
        error: EngineError | None = None
        try:
            value = fn()
        except EngineError as exc:
            error = exc
        failed = self.ranks.failed(error is not None)
        if error is not None:
            raise error
        if failed:
            raise ModelLoadError(f"{what}: rank {failed[0]} could not find or load it (is it on every host?)")
        return value  # type: ignore[return-value]

    def _no_draft(self, request: Any) -> None:
        """A distributed engine refuses draft-model speculation (every rank alike)."""
        spec = getattr(request, "speculative", None)
        if self.ranks is not None and spec is not None and spec.mode == "draft":
            raise DistributedUnsupportedError(
                "speculative: a distributed engine runs no draft model (prompt_lookup works)"
            )

    def _alone(self, what: str) -> None:
        """Refuse a call that would run the model on rank 0 only (the others would never join
        its collectives, so it would hang): anything but the engine thread in a round every
        rank runs."""
        rounds = self._worker.rounds
        every_rank = self._worker.on_thread() and rounds is not None and rounds.replaying
        if self.ranks is not None and not every_rank:
            raise DistributedUnsupportedError(
                f"{what} is not available on a distributed engine ({self.ranks.size} ranks); "
                "run it on a single-process server"
            )

    def follow(self) -> None:
        """A follower rank: block until rank 0 stops the group (or is lost), then stop."""
        thread = self._worker._thread
        if thread is not None:
            thread.join()
        self.stop()  # type: ignore[attr-defined]
