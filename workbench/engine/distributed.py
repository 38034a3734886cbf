"""The rank group of a distributed engine (MLX's own `mx.distributed`, started by mlx.launch):
what it is (ranks, backend, parallelism, hosts), sharing objects from rank 0, sharded loading."""

from __future__ import annotations

import json
import logging
import os
import pickle
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import mlx.core as mx

from workbench.engine.errors import EngineError, ModelLoadError

log = logging.getLogger(__name__)
T = TypeVar("T")

PARALLELISMS = ("tensor", "pipeline")
_HELLO_BYTES = 512  # each rank's {"host", "pid"} line, padded


def env_rank() -> int:
    """This process's rank as its launcher set it (mlx.launch: MLX_RANK; Open MPI's own)."""
    value = os.environ.get("MLX_RANK", os.environ.get("OMPI_COMM_WORLD_RANK", "0"))
    return int(value) if value.isdigit() else 0


def launched() -> bool:
    """This process was started as a rank by mlx.launch (or an MPI launcher)."""
    return "MLX_RANK" in os.environ or "OMPI_COMM_WORLD_SIZE" in os.environ


def backend_name() -> str:
    """The backend mlx.launch chose, from the variables it sets."""
    if os.environ.get("WORKBENCH_DIST_BACKEND"):
        return os.environ["WORKBENCH_DIST_BACKEND"]
    if "MLX_JACCL_COORDINATOR" in os.environ or "MLX_IBV_DEVICES" in os.environ:
        return "jaccl"
    if "NCCL_HOST_IP" in os.environ:
        return "nccl"
    if "OMPI_COMM_WORLD_SIZE" in os.environ:
        return "mpi"
    return "ring"


def leader_ip() -> str:
    """Rank 0's address as the other ranks reach it (the ring hostfile's first entry)."""
    hostfile = os.environ.get("MLX_HOSTFILE")
    if hostfile and Path(hostfile).is_file():
        try:
            hosts = json.loads(Path(hostfile).read_text())
            return str(hosts[0][0]).rsplit(":", 1)[0]
        except (ValueError, IndexError, KeyError, TypeError):
            pass
    return os.environ.get("MLX_JACCL_COORDINATOR", os.environ.get("NCCL_HOST_IP", "127.0.0.1")).split(":")[0]


@dataclass
class RankGroup:
    """The ranks of one engine. Rank 0 serves; the others follow it round by round."""

    group: Any
    parallelism: str = "tensor"
    backend: str = "ring"
    members: list[dict[str, Any]] = field(default_factory=list)  # each rank's host and pid
    line: socket.socket | None = None  # rank 0's listening socket, or this rank's line to it

    @property
    def rank(self) -> int:
        return int(self.group.rank())

    @property
    def size(self) -> int:
        return int(self.group.size())

    @property
    def leader(self) -> bool:
        return self.rank == 0

    def describe(self) -> dict[str, Any]:
        """What /health and every CSV row say of the group."""
        hosts = sorted({str(m.get("host")) for m in self.members}) or [socket.gethostname()]
        return {
            "ranks": self.size,
            "backend": self.backend,
            "parallelism": self.parallelism,
            "hosts": hosts,
            "members": list(self.members),
        }

    def barrier(self) -> None:
        _settle()
        mx.eval(mx.distributed.all_sum(mx.array(1.0), group=self.group, stream=mx.cpu))

    def share(self, obj: Any = None) -> Any:
        """Rank 0's `obj` on every rank (the others pass None): a size, then the pickled bytes,
        each one all_sum (mlx_lm.server's way). Raises RuntimeError when a peer is gone."""
        g, cpu = self.group, mx.cpu
        # Work still queued (mlx-lm evaluates a batch's next step asynchronously, on a stream of its
        # own, collectives included) ends first: otherwise the ranks' collectives would interleave.
        _settle()
        if self.leader:
            if obj is None:
                mx.eval(mx.distributed.all_sum(mx.array(0), group=g, stream=cpu))
                return None
            data = mx.array(memoryview(pickle.dumps(obj)), dtype=mx.uint8)
            mx.eval(mx.distributed.all_sum(mx.array(data.size), group=g, stream=cpu))
            mx.eval(mx.distributed.all_sum(data, group=g, stream=cpu))
            return obj
        size = mx.distributed.all_sum(mx.array(0), group=g, stream=cpu).item()
        if size == 0:
            return None
        data = mx.distributed.all_sum(mx.zeros(size, dtype=mx.uint8), group=g, stream=cpu)
        return pickle.loads(bytes(memoryview(data)))

    def gather(self, values: list[float]) -> list[list[float]]:
        """Every rank's `values` (the same length on each), rank 0 first, on every rank."""
        _settle()
        rows = mx.zeros((self.size, len(values)), dtype=mx.float32)
        rows[self.rank] = mx.array(values, dtype=mx.float32)
        return mx.distributed.all_sum(rows, group=self.group, stream=mx.cpu).tolist()

    def failed(self, here: bool) -> list[int]:
        """The ranks where something failed (`here`: on this one), on every rank."""
        return [i for i, row in enumerate(self.gather([1.0 if here else 0.0])) if row[0]]

    def gather_hello(self, extra: dict[str, Any]) -> None:
        """Every rank's host, pid and `extra`, on every rank (`members`)."""
        line = json.dumps({"rank": self.rank, "host": socket.gethostname(), "pid": os.getpid(), **extra})
        raw = line.encode()[:_HELLO_BYTES].ljust(_HELLO_BYTES, b" ")
        rows = mx.zeros((self.size, _HELLO_BYTES), dtype=mx.uint8)
        rows[self.rank] = mx.array(memoryview(raw), dtype=mx.uint8)
        gathered = mx.distributed.all_sum(rows, group=self.group, stream=mx.cpu)
        self.members = [json.loads(bytes(memoryview(r)).decode().strip()) for r in gathered]


def _settle() -> None:
    """Wait for the default stream and mlx-lm's generation stream (its batches' next step)."""
    from mlx_lm.generate import generation_stream

    mx.synchronize(generation_stream)
    mx.synchronize()


def join(parallelism: str) -> RankGroup | None:
    """The group this process is a rank of (None when it runs alone). Seeds every rank's
    random draws alike, so sampled replies agree across ranks."""
    if not launched():
        return None
    if parallelism not in PARALLELISMS:
        raise ValueError(f"parallelism must be one of {PARALLELISMS}, not {parallelism!r}")
    line = _meet()
    group = mx.distributed.init(strict=True)
    if group.size() < 2:
        return None
    ranks = RankGroup(group, parallelism, backend_name(), line=line)
    seed = ranks.share(int.from_bytes(os.urandom(4), "little") if ranks.leader else None)
    mx.random.seed(int(seed))
    return ranks


def _meet(wait_s: float = 600.0) -> socket.socket | None:
    """Before the backend's own connect (which gives up after seconds): rank 0 listens on
    WORKBENCH_RANK_PORT (set by `workbench serve --ranks`); the others wait until it does, so a
    rank 0 slow to start (the HTTP app imports first) still meets them."""
    port = os.environ.get("WORKBENCH_RANK_PORT")
    if not port:
        return None
    if env_rank() == 0:
        return socket.create_server((leader_ip(), int(port)), backlog=256)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return socket.create_connection((leader_ip(), int(port)), timeout=5)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def check_shardable(config: dict[str, Any], ranks: int, parallelism: str) -> None:
    """A clear ModelLoadError when the model cannot be split `ranks` ways (each rank must get
    a whole number of attention heads, KV heads and MLP columns; pipeline: of layers)."""
    text = config.get("text_config", config)
    if parallelism == "pipeline":
        layers = int(text.get("num_hidden_layers", 0) or 0)
        if layers and layers < ranks:
            raise ModelLoadError(f"a {layers}-layer model cannot be pipelined over {ranks} ranks")
        return
    sizes = {
        "attention heads": text.get("num_attention_heads"),
        "KV heads": text.get("num_key_value_heads", text.get("num_attention_heads")),
        "MLP width": text.get("intermediate_size"),
    }
    bad = [f"{n} {name}" for name, n in sizes.items() if isinstance(n, int) and n % ranks]
    if bad:
        raise ModelLoadError(
            f"this model cannot be split over {ranks} ranks (tensor parallel): its {', '.join(bad)} "
            f"do not divide by {ranks}; choose a rank count that divides them"
        )


def in_turns(ranks: RankGroup, prepare: Callable[[], T], what: str) -> T:
    """prepare() on each rank, one rank after another (a GGUF converts once per host; the others
    find it done); when it fails on any rank it fails on all of them, so none goes on alone."""
    value: T | None = None
    error: Exception | None = None
    for turn in range(ranks.size):
        if turn == ranks.rank:
            try:
                value = prepare()
            except Exception as exc:  # every rank still takes its turn, then all fail
                error = exc
        ranks.barrier()
    failed = ranks.failed(error is not None)
    if isinstance(error, EngineError):
        raise error
    if failed:
        raise ModelLoadError(f"{what}: rank {failed[0]} failed" + (f": {error}" if error else ""))
    return value  # type: ignore[return-value]


def load_sharded(folder: Path, ranks: RankGroup) -> tuple[Any, Any, dict[str, Any]]:
    """mlx-lm's sharded_load of a local folder (tensor parallel through `model.shard`, or
    pipeline parallel), checked first. Every rank calls it."""
    from mlx_lm.utils import sharded_load

    config = json.loads((folder / "config.json").read_text())
    check_shardable(config, ranks.size, ranks.parallelism)
    pipeline = ranks.parallelism == "pipeline"
    try:
        model, tokenizer, config = sharded_load(
            str(folder),
            pipeline_group=ranks.group if pipeline else None,
            tensor_group=None if pipeline else ranks.group,
            return_config=True,
            tokenizer_config={"trust_remote_code": False},
            trust_remote_code=False,
        )
    except (ValueError, FileNotFoundError) as exc:  # no shard() / pipeline(), or no weight index
        raise ModelLoadError(f"this model cannot be loaded {ranks.parallelism}-parallel: {exc}") from exc
    return model, tokenizer, config


def is_peer_failure(exc: BaseException) -> bool:
    """An error from a collective whose peer is gone (e.g. '[ring] connection to a peer was lost')."""
    text = str(exc).lower()
    marks = ("[ring]", "[jaccl]", "[mpi]", "[nccl]", "peer")
    return isinstance(exc, RuntimeError) and any(k in text for k in marks)
