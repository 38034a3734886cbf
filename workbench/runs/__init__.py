"""Run bookkeeping shared by every lab: a run's id, status, provenance, sidecar and resume."""
