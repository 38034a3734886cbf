"""Where a result row came from (run id, time, git state, versions, platform, device, BLAS):
`capture(engine)` in-process, `capture_client(health)` for an HTTP client of any server.
Knows the Engine's reported runtime facts and our /health JSON, nothing of mlx itself."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import uuid
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from workbench import __version__
from workbench.engine import Engine

_REPO = Path(__file__).resolve().parents[2]


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=_REPO, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def new_run_id() -> str:
    """A fresh run id: 12 hex digits."""
    return uuid.uuid4().hex[:12]


def now_utc() -> str:
    """The time now, UTC, ISO 8601 to the second (row timestamps, sidecar times)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _common(
    python: str, mlx: str, mlx_lm: str, device: str, blas: str, ranks: Mapping[str, Any] | None
) -> dict[str, Any]:
    sha = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "run_id": new_run_id(),
        "timestamp": now_utc(),
        "git_sha": sha or "unknown",
        "git_dirty": bool(status) if status is not None else None,
        "python_version": python,
        "mlx_version": mlx,
        "mlx_lm_version": mlx_lm,
        "workbench_version": __version__,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "device": device,
        "blas": blas,
        **_ranks(ranks),
    }


def _ranks(ranks: Mapping[str, Any] | None) -> dict[str, Any]:
    """The ranks columns from a distributed engine's facts (Engine.distributed, /health's
    engine.distributed); one process when there are none."""
    if not ranks or int(ranks.get("ranks") or 1) < 2:
        hosts = (ranks or {}).get("hosts") or [platform.node()]
        return {"ranks": 1, "dist_backend": "none", "parallelism": "none", "hosts": ";".join(map(str, hosts))}
    return {
        "ranks": int(ranks["ranks"]),
        "dist_backend": str(ranks.get("backend") or "unknown"),
        "parallelism": str(ranks.get("parallelism") or "unknown"),
        "hosts": ";".join(str(h) for h in ranks.get("hosts") or []) or "unknown",
    }


def capture(engine: Engine) -> dict[str, Any]:
    """One provenance record for a run on `engine`: reports.schema.PROVENANCE_FIELDS, in order."""
    return _common(
        engine.versions.get("python", platform.python_version()),
        engine.versions.get("mlx", "unknown"),
        engine.versions.get("mlx_lm", "unknown"),
        engine.device,
        engine.blas,
        engine.distributed,
    )


def _installed(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def capture_client(health: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Provenance for an HTTP client run (reports.schema.PROVENANCE_FIELDS, in order).

    `health` is the server's /health JSON: ours reports its engine's versions, device and
    BLAS, and those win. A foreign server's facts are unknown, so mlx/mlx_lm versions are
    this client's installed ones (the same when both run from one environment) and
    device/BLAS say 'unknown'. Python, platform and CPU count are always this machine's.
    """
    engine = (health or {}).get("engine")
    engine = engine if isinstance(engine, Mapping) else {}
    versions = engine.get("versions") if isinstance(engine.get("versions"), Mapping) else {}
    return _common(
        platform.python_version(),
        str(versions.get("mlx") or _installed("mlx")),
        str(versions.get("mlx_lm") or _installed("mlx-lm")),
        str(engine.get("device") or "unknown"),
        str(engine.get("blas") or "unknown"),
        ranks if isinstance(ranks := engine.get("distributed"), Mapping) else {"hosts": ["unknown"]},
    )
