"""`workbench serve|bench --ranks N` / `--hostfile F`: one engine over several processes, started
through mlx.launch (rank 0 runs the command and the engine; the others follow it in lockstep);
signals reach rank 0 first, and no rank outlives the command."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType

BACKENDS = ("ring", "jaccl", "jaccl-ring", "mpi", "nccl")
RANK0_PIDFILE = "WORKBENCH_RANK0_PIDFILE"
STOP_GRACE_S = 10.0  # once rank 0 has ended (it stops the others first), how long they get


def add_flags(parser: argparse.ArgumentParser, verb: str) -> None:
    """--ranks, --hostfile, --backend and --pipeline on `verb`'s parser (serve, bench)."""
    parser.set_defaults(ranks_capable=True)
    what = "serves HTTP and the UI" if verb == "serve" else "runs the benchmark and writes its CSV"
    group = parser.add_argument_group("distributed (MLX's mx.distributed, started by mlx.launch)")
    where = group.add_mutually_exclusive_group()
    where.add_argument(
        "--ranks",
        type=int,
        default=0,
        metavar="N",
        help=f"shard the model over N processes on this host (ring backend over loopback); rank 0 {what}",
    )
    where.add_argument(
        "--hostfile",
        type=Path,
        help="shard the model over the hosts in this mlx.launch hostfile (one rank per host; "
        "see mlx.distributed_config and docs/distributed.md); rank 0 is its first host",
    )
    group.add_argument(
        "--backend",
        choices=BACKENDS,
        help="the mx.distributed backend mlx.launch starts (default: the hostfile's, else ring: "
        "TCP, any OS; jaccl: Thunderbolt RDMA on recent macOS)",
    )
    group.add_argument(
        "--pipeline",
        action="store_true",
        help="split the model's layers in stages (pipeline parallel) instead of every layer over "
        "every rank (tensor parallel, the default)",
    )


def wanted(args: argparse.Namespace) -> bool:
    """Several ranks asked for, and this process is not already one of them."""
    return bool(getattr(args, "ranks", 0) or getattr(args, "hostfile", None)) and rank() is None


def rank() -> int | None:
    """This process's rank when mlx.launch (MLX_RANK) or Open MPI started it, else None."""
    value = os.environ.get("MLX_RANK", os.environ.get("OMPI_COMM_WORLD_RANK"))
    return int(value) if value is not None and value.isdigit() else None


def _free_ports(count: int) -> int:
    """A base port with `count` free ports from it (mlx.launch's ring listens on base + rank)."""
    for _ in range(50):
        base = random.randint(20000, 60000 - count)
        try:
            for port in range(base, base + count):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError("no free ports for the ring backend")


LAUNCH_FLAGS = {"--ranks": True, "--hostfile": True, "--backend": True, "--pipeline": False}


def rank_argv(argv: list[str]) -> list[str]:
    """The command line each rank runs: this one without the flags that started the ranks."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in LAUNCH_FLAGS:
            skip = LAUNCH_FLAGS[name] and "=" not in arg
            continue
        out.append(arg)
    return out


def mark_rank0() -> None:
    """Rank 0 says where to send SIGTERM (the launching command forwards its signals there);
    on another host than the launching command's the folder is not there, and nothing is said."""
    if rank() == 0 and os.environ.get(RANK0_PIDFILE):
        with contextlib.suppress(OSError):
            Path(os.environ[RANK0_PIDFILE]).write_text(str(os.getpid()))


def rank0_exit(code: int) -> int:
    """Rank 0 records its exit status beside its pid (mlx.launch itself always exits 0)."""
    if rank() == 0 and os.environ.get(RANK0_PIDFILE):
        with contextlib.suppress(OSError):
            Path(os.environ[RANK0_PIDFILE]).with_suffix(".status").write_text(str(code))
    return code


def command(args: argparse.Namespace, env: dict[str, str], workdir: Path, argv: list[str]) -> list[str]:
    """The mlx.launch command line for these flags; each rank runs `workbench *argv`."""
    launcher = shutil.which("mlx.launch", path=str(Path(sys.executable).parent)) or "mlx.launch"
    backend = args.backend or "ring"
    cmd = [launcher]
    if args.hostfile is not None:
        hosts, backend = _hosts(args.hostfile), args.backend or _hostfile_backend(args.hostfile) or "ring"
        cmd += ["--hostfile", str(args.hostfile)]
        count = len(hosts)
    else:
        if args.ranks < 2:
            raise SystemExit("--ranks: give 2 or more (1 is a plain `workbench serve`)")
        cmd += ["-n", str(args.ranks)]
        count = args.ranks
    cmd += ["--backend", backend]
    if backend == "ring":
        cmd += ["--starting-port", str(_free_ports(count))]
    env = {
        **env,
        "WORKBENCH_PARALLEL": "pipeline" if args.pipeline else "tensor",
        "WORKBENCH_DIST_BACKEND": backend,
        RANK0_PIDFILE: str(workdir / "rank0.pid"),
        "WORKBENCH_LOG_LEVEL": args.log_level,  # the followers log at the level rank 0 does
        "WORKBENCH_RANK_PORT": str(_free_ports(1)),  # where rank 0 meets the others first
    }
    for key, value in env.items():
        cmd += ["--env", f"{key}={value}"]
    return [*cmd, "--", sys.executable, "-m", "workbench", *argv]


def _hosts(path: Path) -> list[object]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SystemExit(f"--hostfile {path}: {exc}") from None
    hosts = data.get("hosts") if isinstance(data, dict) else data
    if not isinstance(hosts, list) or len(hosts) < 2:
        raise SystemExit(f"--hostfile {path}: expected a list of 2 or more hosts (mlx.launch's format)")
    return hosts


def _hostfile_backend(path: Path) -> str | None:
    data = json.loads(path.read_text())
    return data.get("backend") or None if isinstance(data, dict) else None


def run_ranks(args: argparse.Namespace, settings_env: dict[str, str], argv: list[str]) -> int:
    """Run mlx.launch in a process group of its own until rank 0 ends; SIGTERM or Ctrl-C go to
    rank 0 (serve drains, a benchmark stops; then it stops the others); then every process left
    in the group is killed. Returns 0 when every rank ended with 0."""
    # Settings given as WORKBENCH_* variables reach ranks mlx.launch starts over SSH too.
    settings_env = {**{k: v for k, v in os.environ.items() if k.startswith("WORKBENCH_")}, **settings_env}
    workdir = Path(tempfile.mkdtemp(prefix="workbench-ranks-"))
    pidfile = workdir / "rank0.pid"
    stopping = {"at": 0.0}
    proc: subprocess.Popen[bytes] | None = None

    def forward(signum: int, frame: FrameType | None) -> None:
        first = not stopping["at"]
        stopping["at"] = stopping["at"] or time.monotonic()
        target = _rank0_pid(pidfile)
        if first and target is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(target, signal.SIGTERM)
        elif proc is not None:  # a second signal, or no rank 0 yet: stop everything now
            _kill_group(proc.pid, signal.SIGKILL)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    try:
        cmd = command(args, settings_env, workdir, argv)
        # TMPDIR: mlx.launch's own temporary files (a pid file, a hostfile per rank) go there too.
        env = {**os.environ, "TMPDIR": str(workdir)}
        # stdin: a pipe left open. mlx.launch forwards its stdin to the ranks; at end of file
        # (/dev/null, as under CI or a service manager) its loop spun a core (measured 95%).
        proc = subprocess.Popen(cmd, start_new_session=True, env=env, stdin=subprocess.PIPE)
        print(f"ranks started by mlx.launch, process group {proc.pid}", file=sys.stderr)
        calmed, gone_at = False, 0.0
        while proc.poll() is None:
            time.sleep(0.2)
            if not calmed and _rank0_pid(pidfile) is not None:
                calmed = _calm(proc.pid)  # the ranks are started by now
            if not gone_at and _rank0_gone(pidfile):
                gone_at = time.monotonic()  # the others follow it (a stalled one never does)
            now = time.monotonic()
            late = stopping["at"] and now - stopping["at"] > _grace(settings_env)
            if late or (gone_at and now - gone_at > STOP_GRACE_S):
                _kill_group(proc.pid, signal.SIGKILL)
        return _exit_status(pidfile, proc.returncode)
    finally:
        if proc is not None:
            _kill_group(proc.pid, signal.SIGKILL)
        shutil.rmtree(workdir, ignore_errors=True)


def _exit_status(pidfile: Path, launcher: int) -> int:
    """Rank 0's exit status when it ran here (it wrote its pid), else mlx.launch's."""
    try:
        return int(pidfile.with_suffix(".status").read_text())
    except (OSError, ValueError):
        return 1 if pidfile.exists() else launcher


def _calm(pid: int) -> bool:
    """Lower mlx.launch's own priority, every thread of it: its output-forwarding threads poll a
    rank's always-writable stdin without blocking (measured 95-116% of a core, taken from the
    ranks on a small machine); at nice 19 they get only what the ranks leave. Its ranks, started
    before, keep theirs."""
    tasks = Path(f"/proc/{pid}/task")
    ids = [int(t.name) for t in tasks.iterdir()] if tasks.is_dir() else [pid]
    for tid in ids:
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, tid, 19)
    return True


def _grace(settings_env: dict[str, str]) -> float:
    """How long rank 0 may take after a SIGTERM: its drain, then stopping the others."""
    return float(settings_env.get("WORKBENCH_DRAIN_S") or 30.0) + 2 * STOP_GRACE_S


def _rank0_pid(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None


def _rank0_gone(pidfile: Path) -> bool:
    pid = _rank0_pid(pidfile)
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _kill_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def follow() -> int:
    """A rank other than 0: run the engine's follower in a child process and wait for it. SIGTERM
    and Ctrl-C are ignored (rank 0 stops the group). This process exits 0 even when its child was
    killed: mlx.launch would otherwise stop rank 0 at once, before it could report the loss."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)
    child = subprocess.run([sys.executable, "-m", "workbench.cli.follower"], check=False)
    if child.returncode:
        print(f"rank {rank()}: its engine ended with status {child.returncode}", file=sys.stderr)
    return 0
