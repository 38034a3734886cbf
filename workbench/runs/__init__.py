"""Run bookkeeping shared by every lab: a run's id, status, provenance, sidecar and resume."""

from workbench.runs.provenance import capture, capture_client, new_run_id, now_utc
from workbench.runs.record import STATUSES, ProgressFn, RunRecord, SidecarError, sidecar_path

__all__ = [
    "STATUSES",
    "ProgressFn",
    "RunRecord",
    "SidecarError",
    "capture",
    "capture_client",
    "new_run_id",
    "now_utc",
    "sidecar_path",
]
