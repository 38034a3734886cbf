"""EngineWorker: the one thread that runs every MLX call (jobs, and streams stepped round-robin),
exclusive() leases, and the sync/async bridges to it. Knows nothing of models or mlx."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any, TypeVar

from workbench.engine.errors import EngineStoppedError
from workbench.engine.streams import CancelToken, LoopSink, QueueSink, Sink, StreamState
from workbench.engine.worker_jobs import _Gate, _Job, _Stream

log = logging.getLogger(__name__)

T = TypeVar("T")


class EngineWorker:
    """A single daemon thread that owns MLX. Start it once; stop it once."""

    def __init__(
        self,
        name: str = "mlx-engine",
        on_start: Callable[[], None] | None = None,
        on_stop: Callable[[], None] | None = None,
        on_tick: Callable[[], None] | None = None,
    ) -> None:
        self._name = name
        self._on_start = on_start
        self._on_stop = on_stop
        self._on_tick = on_tick
        # The exclusive lease this worker granted to the current context (thread or asyncio
        # task), if any. Per worker: a lease on one engine says nothing about another.
        self._lease: contextvars.ContextVar[object | None] = contextvars.ContextVar(
            f"{name}-lease-{id(self):x}", default=None
        )
        self._inbox: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._active: list[_Stream] = []
        self._gate = _Gate()
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._start_error: BaseException | None = None
        self._stopping = False
        self._lock = threading.Lock()
        # A distributed engine's rounds (lockstep.Lockstep, set by on_start): they run the loop.
        self.rounds: Any = None

    # ---- lifecycle -------------------------------------------------------
    def start(self, timeout: float | None = None) -> None:
        """Start the thread and wait for `on_start` (run on it) to finish."""
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()
        self._started.wait(timeout)
        if self._start_error is not None:
            raise self._start_error

    def stop(self, timeout: float = 30.0) -> None:
        """Cancel running streams, fail queued work, and join the thread."""
        with self._lock:
            thread = self._thread
            if thread is None or self._stopping:
                return
            self._stopping = True
        self._inbox.put(None)
        lost = self.rounds is not None and self.rounds.lost is not None
        thread.join(1.0 if lost else timeout)  # a lost rank may hold the thread in a collective

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stopping

    def holds_lease(self) -> bool:
        """The calling context holds this worker's exclusive lease."""
        return self._lease.get() is not None

    def on_thread(self) -> bool:
        return threading.current_thread() is self._thread

    @property
    def active_streams(self) -> int:
        return len(self._active)

    @property
    def exclusive_held(self) -> bool:
        """Someone holds (or is being granted) the exclusive lease; a hint, read unlocked."""
        return self._gate.owner is not None

    # ---- submitting work -------------------------------------------------
    def _put(self, job: _Job) -> None:
        if self.rounds is not None:
            self.rounds.check()  # RankLostError once a rank is gone
        if not self.running:
            raise EngineStoppedError("the engine thread is not running")
        if job.sink is not None and self.on_thread():
            # The engine thread would wait on itself for the stream's items.
            raise RuntimeError("a stream cannot be opened from the engine thread itself")
        self._inbox.put(job)

    def submit(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Future[T]:
        """Run fn(*args, **kwargs) on the engine thread; returns a Future."""
        future: Future[T] = Future()
        self._put(_Job(owner=self._lease.get(), fn=lambda: fn(*args, **kwargs), future=future))
        return future

    def submit_mirrored(self, mirror: tuple[Any, ...], fn: Callable[[], T]) -> Future[T]:
        """submit(fn); on a distributed engine every other rank runs `mirror` in the same round."""
        future: Future[T] = Future()
        self._put(_Job(owner=self._lease.get(), fn=fn, future=future, mirror=mirror))
        return future

    def call_mirrored(self, mirror: tuple[Any, ...], fn: Callable[[], T]) -> T:
        """call(fn), mirrored as submit_mirrored is (inline if already on the thread)."""
        return fn() if self.on_thread() else self.submit_mirrored(mirror, fn).result()

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run fn on the engine thread and wait for its result (inline if already there)."""
        if self.on_thread():
            return fn(*args, **kwargs)
        return self.submit(fn, *args, **kwargs).result()

    def open_stream(
        self,
        factory: Callable[[StreamState], Iterator[T]],
        cancel: CancelToken,
        sink: Sink[T],
        mirror: tuple[Any, ...] | None = None,
    ) -> None:
        """Start `factory(state)` on the engine thread and step it, item by item, into `sink`
        (`mirror`: what the other ranks of a distributed engine run alongside)."""
        state = StreamState(cancel=cancel, queued_at=time.perf_counter())
        self._put(_Job(owner=self._lease.get(), factory=factory, sink=sink, state=state, mirror=mirror))

    def stream(
        self,
        factory: Callable[[StreamState], Iterator[T]],
        cancel: CancelToken,
        mirror: tuple[Any, ...] | None = None,
    ) -> Iterator[T]:
        """Sync bridge: iterate a stream from any thread. Leaving early cancels it."""
        sink: QueueSink[T] = QueueSink()
        self.open_stream(factory, cancel, sink, mirror)
        try:
            yield from sink
        finally:
            cancel.cancel()

    async def astream(
        self,
        factory: Callable[[StreamState], Iterator[T]],
        cancel: CancelToken,
        mirror: tuple[Any, ...] | None = None,
    ) -> AsyncIterator[T]:
        """Async bridge: iterate a stream from an event loop. Leaving early (or task
        cancellation, e.g. a dropped client) cancels it."""
        sink: LoopSink[T] = LoopSink(asyncio.get_running_loop())
        self.open_stream(factory, cancel, sink, mirror)
        try:
            async for item in sink:
                yield item
        finally:
            cancel.cancel()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Sole use of the engine thread for this context (thread or task).

        Waits for running streams to finish; work from other contexts is held
        back (queued, not failed) until the block exits. Re-entrant.
        """
        if self._lease.get() is not None:
            yield
            return
        token = object()
        acquired: Future[None] = Future()
        self._put(_Job(owner=token, control="acquire", future=acquired))
        acquired.result()
        reset = self._lease.set(token)
        try:
            yield
        finally:
            self._lease.reset(reset)
            released: Future[None] = Future()
            self._put(_Job(owner=token, control="release", future=released))
            released.result()

    # ---- the thread ------------------------------------------------------
    def _run(self) -> None:
        try:
            if self._on_start is not None:
                self._on_start()
        except BaseException as exc:  # reported to start()'s caller
            self._start_error = exc
            self._thread = None
            self._started.set()
            return
        self._started.set()
        try:
            self._loop() if self.rounds is None else self.rounds.run(self)
        finally:
            self._shutdown()
            if self._on_stop is not None:
                try:
                    self._on_stop()
                except Exception:
                    log.warning("engine on_stop hook failed", exc_info=True)

    def _loop(self) -> None:
        waiting = False
        while True:
            # Block only when there is nothing to step; else take what has arrived (after a round
            # where every stream waited, a moment's wait: spinning keeps the GIL from the loop).
            jobs: list[_Job | None] = []
            if not self._active:
                jobs.append(self._inbox.get())
            elif waiting:
                with contextlib.suppress(queue.Empty):
                    jobs.append(self._inbox.get(timeout=0.001))
            while True:
                try:
                    jobs.append(self._inbox.get_nowait())
                except queue.Empty:
                    break
            for job in jobs:
                if job is None:
                    return
                self._dispatch(job)
            waiting = not self._step_all()
            self._maybe_grant()
            self._tick()

    def _tick(self) -> None:
        try:
            self._on_tick() if self._on_tick is not None else None
        except Exception:
            log.warning("engine on_tick hook failed", exc_info=True)

    def _dispatch(self, job: _Job) -> None:
        if self._stopping:
            self._fail(job, EngineStoppedError("the engine stopped before this work ran"))
            return
        gate = self._gate
        if job.control == "acquire":
            assert job.future is not None
            if gate.owner is None:
                gate.owner, gate.pending_future = job.owner, job.future
            else:
                gate.waiters.append((job.owner, job.future))
            return
        if job.control == "release":
            self._release(job)
            return
        if gate.owner is not None and job.owner is not gate.owner:
            gate.deferred.append(job)
            return
        self._execute(job)

    def _execute(self, job: _Job) -> None:
        if self.rounds is not None and self.rounds.defer(job):
            return  # it runs once the round that names it is shared
        if job.fn is not None:
            assert job.future is not None
            if not job.future.set_running_or_notify_cancel():
                return
            try:
                result = job.fn()
            except BaseException as exc:
                self._tick()
                job.future.set_exception(exc)
                return
            # Published state reflects the job before its caller sees the result.
            self._tick()
            job.future.set_result(result)
            return
        assert job.factory is not None and job.sink is not None and job.state is not None
        state = job.state
        state.started_at = time.perf_counter()
        state.started_idle = not self._active
        try:
            iterator = job.factory(state)
        except Exception as exc:
            job.sink.error(exc)
            return
        self._active.append(_Stream(job=job, iterator=iterator))
        count = len(self._active)
        for stream in self._active:
            assert stream.job.state is not None
            stream.job.state.max_concurrency = max(stream.job.state.max_concurrency, count)

    def _step_all(self) -> bool:
        """One item from every stream; False when none had one (all waited, none ended)."""
        moved, streams = False, list(self._active)
        for stream in streams:
            sink = stream.job.sink
            assert sink is not None
            try:
                item = next(stream.iterator)
            except StopIteration:
                self._active.remove(stream)
                sink.close()
                continue
            except Exception as exc:
                log.debug("stream failed", exc_info=True)
                self._active.remove(stream)
                sink.error(exc)
                continue
            if item is None:  # "nothing yet" (a batched stream waiting for its turn)
                continue
            sink.put(item)
            moved = True
            # The GIL to the consumer now, not after the next step's graph (5 ms switch interval).
            time.sleep(0)
        return moved or len(self._active) < len(streams)

    def _maybe_grant(self) -> None:
        gate = self._gate
        if gate.owner is None or gate.granted:
            return
        # The lease starts once streams begun before it have drained.
        if any(s.job.owner is not gate.owner for s in self._active):
            return
        gate.granted = True
        assert gate.pending_future is not None
        gate.pending_future.set_result(None)

    def _release(self, job: _Job) -> None:
        gate = self._gate
        assert job.future is not None
        if gate.owner is job.owner:
            gate.owner, gate.granted, gate.pending_future = None, False, None
            deferred, gate.deferred = gate.deferred, deque()
            if gate.waiters:
                gate.owner, gate.pending_future = gate.waiters.popleft()
            for held in deferred:
                self._dispatch(held)
        job.future.set_result(None)

    def _shutdown(self) -> None:
        for stream in self._active:
            assert stream.job.state is not None and stream.job.sink is not None
            stream.job.state.cancel.cancel()
            # Let each stream see its cancel token and end cleanly (bounded).
            try:
                for _ in range(4):
                    stream.job.sink.put(next(stream.iterator))
            except StopIteration:
                pass
            except Exception as exc:
                stream.job.sink.error(exc)
                continue
            finally:
                close = getattr(stream.iterator, "close", None)
                if close is not None:
                    close()
            stream.job.sink.close()
        self._active.clear()
        pending = [*self._gate.deferred, *self.take_queued()[0]]
        stopped = EngineStoppedError("the engine stopped before this work ran")
        if self.rounds is not None and self.rounds.lost is not None:
            stopped = self.rounds.lost
        for _, fut in self._gate.waiters:
            fut.set_exception(stopped)
        for job in pending:
            self._fail(job, stopped)
        if self._gate.pending_future is not None and not self._gate.pending_future.done():
            self._gate.pending_future.set_exception(stopped)

    def take_queued(self) -> tuple[list[_Job], bool]:
        """Empty the queue: the jobs in it, and whether a stop was among them."""
        jobs: list[_Job] = []
        stop = False
        while True:
            try:
                job = self._inbox.get_nowait()
            except queue.Empty:
                return jobs, stop
            if job is None:
                stop = True
            else:
                jobs.append(job)

    @staticmethod
    def _fail(job: _Job, exc: BaseException) -> None:
        if job.future is not None and not job.future.done():
            job.future.set_exception(exc)
        if job.sink is not None:
            job.sink.error(exc)
