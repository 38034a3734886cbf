"""Lockstep: a distributed engine's worker loop. Rank 0 shares each round (the new work it runs,
the streams cancelled) before running it; the other ranks run the same round; a lost rank ends it."""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from workbench.engine.distributed import RankGroup, is_peer_failure, leader_ip
from workbench.engine.errors import EngineStoppedError, RankLostError
from workbench.engine.streams import CancelToken

if TYPE_CHECKING:
    from workbench.engine.worker import EngineWorker
    from workbench.engine.worker_jobs import _Job

log = logging.getLogger(__name__)


@dataclass
class Round:
    """What every rank does next, in order: cancel these streams, then run these ops."""

    ops: list[tuple[Any, ...]] = field(default_factory=list)
    cancels: list[int] = field(default_factory=list)
    stop: bool = False
    park: bool = False  # rank 0 has nothing to do: the others wait on the wake socket


class Lockstep:
    """Runs EngineWorker's loop for one rank. `replay(op)` makes a follower's job for an op
    rank 0 named (a generation, a load, an unload)."""

    def __init__(
        self,
        ranks: RankGroup,
        replay: Callable[[tuple[Any, ...]], _Job],
        *,
        heartbeat_s: float = 1.0,
        timeout_s: float = 10.0,
    ) -> None:
        self.ranks = ranks
        self.replay = replay
        self.heartbeat_s = heartbeat_s
        self.timeout_s = timeout_s
        self.lost: RankLostError | None = None
        self._deferred: list[_Job] = []
        self._replaying = False
        self._streams: dict[int, tuple[_Job, CancelToken, CancelToken]] = {}  # id: job, theirs, ours
        self._next_id = 0
        self._wake = _WakeChannel(ranks)

    # ---- the worker's hooks -------------------------------------------------
    def check(self) -> None:
        if self.lost is not None:
            raise self.lost

    def defer(self, job: _Job) -> bool:
        """Rank 0: hold a mirrored job until the round that names it is shared."""
        if self._replaying or job.mirror is None:
            return False
        self._deferred.append(job)
        return True

    @property
    def replaying(self) -> bool:
        """The engine thread is running work every rank runs (a model may load, compute)."""
        return self._replaying

    def run(self, worker: EngineWorker) -> None:
        """The worker's loop on this rank. Any failure of the group's machinery (a peer gone, a
        round that cannot be shared) ends it as a lost rank, never as a loop on one rank alone."""
        try:
            self._wake.connect()
            if self.ranks.leader:
                lose = lambda why: self._lose(worker, why, on_thread=False)  # noqa: E731
                watch = lambda: self._wake.watch(self.timeout_s, lose)  # noqa: E731
                threading.Thread(target=watch, name="rank-watchdog", daemon=True).start()
                self._lead(worker)
            else:
                self._follow(worker)
        except Exception as exc:
            log.debug("rank loop ended", exc_info=True)
            self._lose(worker, str(exc) or type(exc).__name__)
        finally:
            self._wake.close()
            if self.lost is not None:
                self._end_streams(worker)

    # ---- rank 0 ---------------------------------------------------------------
    def _lead(self, worker: EngineWorker) -> None:
        parked = False
        while True:
            self.check()  # the watchdog gave up on the group: stop here, not in a collective
            jobs: list[_Job | None] = []
            if not worker._active and not self._deferred:
                with contextlib.suppress(queue.Empty):
                    jobs.append(worker._inbox.get(timeout=self.heartbeat_s))
            while True:
                try:
                    jobs.append(worker._inbox.get_nowait())
                except queue.Empty:
                    break
            stop = None in jobs
            for job in jobs[: jobs.index(None)] if stop else jobs:
                worker._dispatch(job)
            work, self._deferred = self._deferred, []
            idle = not work and not worker._active and not stop
            round_ = Round([j.mirror or () for j in work], self._cancels(worker), stop, park=idle)
            if stop:
                self._wake.closing()  # the others leave now: their lines closing is no loss
            try:
                if parked:  # wake the others for this round (when idle, a heartbeat round)
                    self._wake.wake()
                self._share(round_)
            except Exception as exc:
                for job in work:
                    worker._fail(job, self.lost or RankLostError(f"a rank of this engine was lost ({exc})"))
                raise
            parked = idle
            if stop:  # what arrived with the stop never runs: its callers hear so
                for job in work:
                    worker._fail(job, EngineStoppedError("the engine stopped before this work ran"))
                return
            self._apply(worker, round_, work)
            worker._maybe_grant()
            worker._tick()

    def _cancels(self, worker: EngineWorker) -> list[int]:
        """Rank 0: the running streams whose callers cancelled them since the last round."""
        self._prune(worker)
        streams = self._streams.items()
        return [sid for sid, (_, theirs, ours) in streams if theirs.cancelled and not ours.cancelled]

    def _prune(self, worker: EngineWorker) -> None:
        running = {id(s.job) for s in worker._active}
        for sid in [sid for sid, (job, _, _) in self._streams.items() if id(job) not in running]:
            del self._streams[sid]

    def _share(self, round_: Round) -> Round:
        shared = self.ranks.share(round_ if self.ranks.leader else None)
        self.check()  # the watchdog may have given up on the group meanwhile
        return shared

    # ---- every rank -------------------------------------------------------------
    def _apply(self, worker: EngineWorker, round_: Round, work: list[_Job]) -> None:
        for sid in round_.cancels:
            if sid in self._streams:
                self._streams[sid][2].cancel()
        self._replaying = True
        try:
            for job in work:
                if job.state is not None:  # a generation: the ranks cancel it together, by id
                    theirs, ours = job.state.cancel, CancelToken()
                    job.state.cancel = ours
                    self._streams[self._next_id] = (job, theirs, ours)
                    self._next_id += 1
                    factory = job.factory
                    assert factory is not None
                    job.factory = lambda state, f=factory: _peer_errors(f(state))
                worker._execute(job)
            worker._step_all()
        finally:
            self._replaying = False

    def _follow(self, worker: EngineWorker) -> None:
        while True:
            round_ = self._share(Round())
            if round_.stop:
                return
            self._apply(worker, round_, [self.replay(op) for op in round_.ops])
            self._prune(worker)
            worker._tick()
            if round_.park:
                self._wake.wait()

    def _lose(self, worker: EngineWorker, why: str, *, on_thread: bool = True) -> None:
        """The group is gone: every stream in flight ends with RankLostError, and so does work
        waiting for the thread. From the watchdog (on_thread False) only the sinks and queues
        are touched: the engine thread may be held in a collective for good."""
        if self.lost is None:
            size = self.ranks.size
            self.lost = RankLostError(f"a rank of this {size}-rank engine was lost ({why}); restart it")
            log.error("%s", self.lost)
        for stream in list(worker._active):
            if stream.job.sink is not None:
                stream.job.sink.error(self.lost)
        queued, stop = worker.take_queued()
        if stop and not on_thread:
            worker._inbox.put(None)  # a stop: the engine thread still needs to see it
        for job in [*self._deferred, *worker._gate.deferred, *queued]:
            worker._fail(job, self.lost)
        for _, future in list(worker._gate.waiters):
            if not future.done():
                future.set_exception(self.lost)

    def _end_streams(self, worker: EngineWorker) -> None:
        """On the engine thread, once lost: close every stream's generation (its models are no
        longer busy, its batch forgets it) without stepping it again."""
        for stream in list(worker._active):
            with contextlib.suppress(Exception):
                close = getattr(stream.iterator, "close", None)
                if close is not None:
                    close()
            if stream.job.sink is not None:
                stream.job.sink.error(self.lost or RankLostError("a rank was lost"))
        worker._active.clear()


def _peer_errors(chunks: Iterator[Any]) -> Iterator[Any]:
    """A generation whose collective lost its peer ends with RankLostError, not the backend's text."""
    try:
        yield from chunks
    except RuntimeError as exc:
        if is_peer_failure(exc):
            why = f"a rank of this engine was lost mid-generation ({exc}); restart the server"
            raise RankLostError(why) from exc
        raise


class _WakeChannel:
    """A TCP line from each rank to rank 0, beside the collectives. While rank 0 idles the others
    block on it (a collective's wait spins a core: measured 2.2 s of CPU in 4 s of waiting) until
    rank 0 writes a byte; each of them sends a heartbeat every HEARTBEAT_S from a thread of its
    own, so rank 0 sees a rank that died (the line closes) or stalled (no heartbeat)."""

    HEARTBEAT_S = 0.5
    ORPHAN_S = 30.0

    def __init__(self, ranks: RankGroup) -> None:
        self.ranks = ranks
        self._peers: dict[int, socket.socket] = {}
        self._sock: socket.socket | None = None
        self._closed = threading.Event()

    def connect(self) -> None:
        """Rank 0 accepts a line from each other rank (on the port `distributed.join` opened, else
        on one it shares); each of them says its rank first."""
        line = self.ranks.line
        if self.ranks.leader:
            server = line or socket.create_server((leader_ip(), 0))
            if line is None:
                self.ranks.share(server.getsockname()[1])
            server.settimeout(120)
            while len(self._peers) < self.ranks.size - 1:
                peer = server.accept()[0]
                peer.settimeout(120)
                try:
                    rank = int(peer.recv(8).split(b"\n")[0])
                except (OSError, ValueError):  # not one of the ranks
                    peer.close()
                    continue
                peer.settimeout(None)
                self._peers[rank] = peer
            server.close()
            return
        if line is None:
            line = socket.create_connection((leader_ip(), int(self.ranks.share(None))), timeout=120)
        self._sock = line
        line.settimeout(None)
        line.sendall(f"{self.ranks.rank}\n".encode().ljust(8, b" "))
        threading.Thread(target=self._beat, name="rank-heartbeat", daemon=True).start()

    def _beat(self) -> None:
        """A follower's heartbeat. Its line broken (rank 0 gone) and no orderly stop within
        ORPHAN_S, the process leaves: it would otherwise wait in a collective for good."""
        assert self._sock is not None
        while not self._closed.wait(self.HEARTBEAT_S):
            try:
                self._sock.sendall(b"h")
            except OSError:
                if not self._closed.wait(self.ORPHAN_S):
                    log.error("rank %d: the line to rank 0 is gone; leaving", self.ranks.rank)
                    os._exit(3)
                return

    def watch(self, timeout_s: float, lose: Callable[[str], None]) -> None:
        """Rank 0's watchdog (its own thread): `lose(why)` once a rank closes its line or sends
        no heartbeat for timeout_s."""
        seen = {rank: time.monotonic() for rank in self._peers}
        by_sock = {sock: rank for rank, sock in self._peers.items()}
        while not self._closed.is_set():
            try:
                ready, _, _ = select.select(list(by_sock), [], [], self.HEARTBEAT_S)
            except (OSError, ValueError):
                return
            for sock in ready:
                try:
                    data = sock.recv(4096)
                except OSError:
                    data = b""
                if not data:
                    if not self._closed.is_set():  # not the group's own stop
                        lose(f"rank {by_sock[sock]} exited")
                    return
                seen[by_sock[sock]] = time.monotonic()
            late = [r for r, t in seen.items() if time.monotonic() - t > timeout_s]
            if late and not self._closed.is_set():
                lose(f"rank {late[0]} sent no heartbeat for {timeout_s:.0f} s (stalled)")
                return

    def closing(self) -> None:
        self._closed.set()

    def wake(self) -> None:
        for peer in self._peers.values():
            peer.sendall(b"w")

    def wait(self) -> None:
        assert self._sock is not None
        if not self._sock.recv(1):
            raise RankLostError("rank 0 is gone")

    def close(self) -> None:
        self._closed.set()
        for s in [*self._peers.values(), *([self._sock] if self._sock else [])]:
            s.close()
