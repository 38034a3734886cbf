"""EngineWorker scheduling logic with plain Python work (the MLX side is tested in
test_engine.py): one thread, round-robin streams, errors, exclusive leases, stop."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest

from tests.helpers import wait_until
from workbench.engine.errors import EngineStoppedError
from workbench.engine.streams import CancelToken, QueueSink, StreamState
from workbench.engine.worker import EngineWorker


@pytest.fixture
def worker() -> Iterator[EngineWorker]:
    w = EngineWorker(name="test-worker")
    w.start()
    yield w
    w.stop()


def counting(n: int, log: list[tuple[str, int]], name: str, delay_s: float = 0.0):
    def factory(state: StreamState) -> Iterator[int]:
        for i in range(n):
            if state.cancel.cancelled:
                return
            log.append((name, i))
            if delay_s:
                time.sleep(delay_s)
            yield i

    return factory


def test_calls_run_on_the_worker_thread(worker: EngineWorker) -> None:
    names = worker.call(lambda: threading.current_thread().name)
    assert names == "test-worker"
    assert worker.call(lambda: worker.on_thread()) is True
    assert worker.on_thread() is False


def test_call_propagates_exceptions(worker: EngineWorker) -> None:
    def boom() -> None:
        raise ValueError("nope")

    with pytest.raises(ValueError, match="nope"):
        worker.call(boom)


def test_streams_are_interleaved_round_robin(worker: EngineWorker) -> None:
    log: list[tuple[str, int]] = []
    gate = threading.Event()
    worker.submit(gate.wait)  # hold the thread so both streams are admitted together
    sinks: dict[str, QueueSink[int]] = {"a": QueueSink(), "b": QueueSink()}
    for name, sink in sinks.items():
        worker.open_stream(counting(5, log, name), CancelToken(), sink)
    gate.set()
    assert {name: list(sink) for name, sink in sinks.items()} == {"a": [0, 1, 2, 3, 4], "b": [0, 1, 2, 3, 4]}
    names = [n for n, _ in log]
    # Alternating, not one stream after the other.
    assert names[:4] == ["a", "b", "a", "b"]


def test_stream_error_reaches_consumer_and_others_continue(worker: EngineWorker) -> None:
    def failing(state: StreamState) -> Iterator[int]:
        yield 1
        raise RuntimeError("mid-stream failure")

    with pytest.raises(RuntimeError, match="mid-stream failure"):
        list(worker.stream(failing, CancelToken()))
    log: list[tuple[str, int]] = []
    assert list(worker.stream(counting(3, log, "ok"), CancelToken())) == [0, 1, 2]


def test_leaving_a_stream_early_cancels_it(worker: EngineWorker) -> None:
    log: list[tuple[str, int]] = []
    token = CancelToken()
    stream = worker.stream(counting(1000, log, "long", delay_s=0.005), token)
    for i in stream:
        if i == 3:
            break
    stream.close()
    assert token.cancelled
    assert wait_until(lambda: worker.active_streams == 0, 30)
    assert len(log) < 200  # of 1000: it stopped soon after the consumer left


def test_async_bridge_and_task_cancellation(worker: EngineWorker) -> None:
    log: list[tuple[str, int]] = []

    async def main() -> tuple[list[int], CancelToken]:
        items = [i async for i in worker.astream(counting(4, log, "x"), CancelToken())]
        token = CancelToken()

        async def endless() -> None:
            async for _ in worker.astream(counting(10_000, log, "y", delay_s=0.005), token):
                pass

        task = asyncio.create_task(endless())
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return items, token

    items, token = asyncio.run(main())
    assert items == [0, 1, 2, 3]
    assert token.cancelled
    assert wait_until(lambda: worker.active_streams == 0, 30)


def test_exclusive_holds_back_other_work_until_released(worker: EngineWorker) -> None:
    done = threading.Event()
    order: list[str] = []
    with worker.exclusive():
        t = threading.Thread(target=lambda: (worker.call(lambda: order.append("other")), done.set()))
        t.start()
        time.sleep(0.3)
        assert not done.is_set(), "another context ran during the exclusive block"
        worker.call(lambda: order.append("owner"))
        with worker.exclusive():  # re-entrant
            worker.call(lambda: order.append("owner-nested"))
    assert done.wait(5)
    t.join()
    assert order == ["owner", "owner-nested", "other"]


def test_a_lease_on_one_worker_is_not_a_lease_on_another(worker: EngineWorker) -> None:
    """Each worker grants its own lease: holding one engine's does not make exclusive() on a
    second engine a no-op (the second still holds back other contexts' work)."""
    other = EngineWorker(name="other")
    other.start()
    try:
        done = threading.Event()
        with worker.exclusive(), other.exclusive():
            assert worker.holds_lease() and other.holds_lease()
            t = threading.Thread(target=lambda: (other.call(lambda: None), done.set()))
            t.start()
            # Deferred by the second worker's lease: the job waits in its gate, not on a timer.
            assert wait_until(lambda: len(other._gate.deferred) == 1, timeout_s=30)
            assert not done.is_set()
        assert done.wait(30)
        t.join(30)
        assert not worker.holds_lease() and not other.holds_lease()
    finally:
        other.stop()


def test_exclusive_waits_for_running_streams(worker: EngineWorker) -> None:
    log: list[tuple[str, int]] = []
    consumer = threading.Thread(
        target=lambda: list(worker.stream(counting(20, log, "s", delay_s=0.01), CancelToken()))
    )
    consumer.start()
    assert wait_until(lambda: len(log) > 0)
    with worker.exclusive():
        # Every step of the stream that started first has run before the lease began.
        assert len(log) == 20
    consumer.join(5)


def test_stop_fails_queued_work_and_rejects_new(worker: EngineWorker) -> None:
    gate = threading.Event()
    worker.submit(gate.wait)
    pending = worker.submit(lambda: "never")
    stopper = threading.Thread(target=worker.stop)
    stopper.start()
    # The stop must be under way before the gate opens, or the queued job may still run.
    assert wait_until(lambda: worker._stopping, timeout_s=30)
    gate.set()
    stopper.join(5)
    with pytest.raises(EngineStoppedError):
        pending.result(5)
    with pytest.raises(EngineStoppedError):
        worker.call(lambda: 1)


def test_start_error_is_raised_to_the_caller() -> None:
    def bad_start() -> None:
        raise RuntimeError("no backend")

    w = EngineWorker(on_start=bad_start)
    with pytest.raises(RuntimeError, match="no backend"):
        w.start()
    assert not w.running
