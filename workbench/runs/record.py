"""RunRecord: one run of a lab in its JSON sidecar: id, provenance, status, rows written, resume.
The benchmark runner, the quantization sweep and the arena all record runs through it;
it knows files and provenance, not what a lab measures or what its rows hold."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench.engine import Engine
from workbench.runs.provenance import capture, now_utc

# on_progress(done, total, what): steps done so far, of all steps in the run, and what runs now.
ProgressFn = Callable[[int, int, str], None]

RUNNING, COMPLETE, STOPPED, FAILED = "running", "complete", "stopped", "failed"
# A run's status in its sidecar means the same in every lab.
STATUSES: Mapping[str, str] = {
    RUNNING: "in progress, or its process was killed (SIGKILL, a crash) before it could say",
    COMPLETE: "every step ran and every row is written",
    STOPPED: "cancelled (the UI's Stop button, Ctrl-C or SIGTERM); the rows written are kept",
    FAILED: "an error ended it; the rows written are kept",
}


class SidecarError(ValueError):
    """A sidecar file that cannot be read back; the message says which and what to do."""


def sidecar_path(csv_path: Path) -> Path:
    """The JSON sidecar of a results file: <name>.csv -> <name>.json, beside it."""
    return Path(csv_path).with_suffix(".json")


@dataclass
class RunRecord:
    """One run's entry in a sidecar, `{"experiment": name, "runs": {run_id: entry}}`: the
    entry holds the run id, the lab's `details` (its spec ...), when it started, its status,
    when that was last written and how many rows the run has written."""

    sidecar: Path
    experiment: str
    provenance: dict[str, Any]
    details: dict[str, Any]
    rows: int = 0
    status: str = RUNNING

    @property
    def run_id(self) -> str:
        return str(self.provenance["run_id"])

    @classmethod
    def create(
        cls,
        engine: Engine,
        sidecar: Path,
        experiment: str,
        details: Mapping[str, Any],
        *,
        resume: str | None = None,
        rows: int = 0,
    ) -> RunRecord:
        """A run on `engine`, its provenance captured now; the sidecar is written from
        active() on. `resume` continues run `resume` under its id (its entry keeps its
        details and start); `rows` are the rows it has already."""
        provenance = capture(engine)
        if resume is not None:
            provenance["run_id"] = resume
        return cls(Path(sidecar), experiment, provenance, dict(details), rows)

    def save(self, status: str | None = None) -> None:
        """Write the run's status (`status`, else the current one) and rows to the sidecar."""
        if status is not None:
            if status not in STATUSES:
                raise ValueError(f"status must be one of {list(STATUSES)}, got {status!r}")
            self.status = status
        data = read_sidecar(self.sidecar)
        data["experiment"] = self.experiment
        first = {"run_id": self.run_id, **self.details, "started": now_utc()}
        entry = data.setdefault("runs", {}).setdefault(self.run_id, first)
        entry.update(status=self.status, updated=now_utc(), rows=self.rows)
        write_json_atomic(self.sidecar, data)

    @contextmanager
    def active(self) -> Iterator[RunRecord]:
        """The run's body, recorded as running: Ctrl-C or SIGTERM (the CLI raises
        KeyboardInterrupt for both) marks it stopped, any other exception failed, and the
        exception goes on. Once the sidecar says running, an interrupt is always recorded."""
        try:
            self.save(RUNNING)
            yield self
        except KeyboardInterrupt:
            self.save(STOPPED)
            raise
        except SidecarError:  # the sidecar itself cannot be read: nowhere to record a status
            raise
        except BaseException:
            self.save(FAILED)
            raise

    def finish(self, complete: bool) -> None:
        """The run ended without an exception: complete, or stopped by its cancel token."""
        self.save(COMPLETE if complete else STOPPED)


def read_sidecar(path: Path) -> dict[str, Any]:
    """A sidecar's JSON ({} when there is none yet)."""
    path = Path(path)
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SidecarError(f"{path}: unreadable sidecar ({exc}); move it away to start afresh") from None


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to `path` through a temporary file and a rename, so a reader (or a
    crash) sees the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a report is as readable as its CSV
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, sort_keys=False, default=str)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
