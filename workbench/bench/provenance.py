"""Where a result row came from: run id, time, git state, versions, platform, device, BLAS.

Captured once per run and stamped on every row. Knows the Engine's reported
runtime facts, nothing of mlx itself.
"""

from __future__ import annotations

import os
import platform
import subprocess
import uuid
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
    return uuid.uuid4().hex[:12]


def capture(engine: Engine) -> dict[str, Any]:
    """One provenance record for a run on `engine`: reports.schema.PROVENANCE_FIELDS, in order."""
    sha = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "run_id": new_run_id(),
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git_sha": sha or "unknown",
        "git_dirty": bool(status) if status is not None else None,
        "python_version": engine.versions.get("python", platform.python_version()),
        "mlx_version": engine.versions.get("mlx", "unknown"),
        "mlx_lm_version": engine.versions.get("mlx_lm", "unknown"),
        "workbench_version": __version__,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "device": engine.device,
        "blas": engine.blas,
    }
