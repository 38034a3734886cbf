"""Polls /health, /metrics and /v1/models of a server from its own process, as an orchestrator
does, until /health says 200 (or STOP_FILE exists) or the time is up; one JSON line per answer
(path, status, seconds, body). `python -m tests.route_poller URL S [STOP_FILE]`: in a child
process, the timings do not share the test process's interpreter lock."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import httpx

PATHS = ("/health", "/metrics", "/v1/models")


def main(url: str, timeout_s: float, stop_file: str | None = None) -> int:
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=30) as client:
        while time.monotonic() < deadline:
            healthy = False
            for path in PATHS:
                started = time.monotonic()
                r = client.get(url + path)
                took = time.monotonic() - started
                body = r.text if path == "/metrics" else r.json()
                print(json.dumps({"path": path, "status": r.status_code, "took_s": took, "body": body}))
                healthy = healthy or (path == "/health" and r.status_code == 200)
            sys.stdout.flush()
            if Path(stop_file).exists() if stop_file else healthy:
                return 0
            time.sleep(0.02)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], float(sys.argv[2]), *sys.argv[3:4]))
