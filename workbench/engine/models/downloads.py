"""Downloads as an explicit user action (the Models tab, `workbench pull`): each one a child process
(models/fetch.py) whose report lines give its progress; cancel stops it, its partial files stay
and the next download of that repo resumes them. WORKBENCH_ALLOW_DOWNLOAD does not govern these."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from workbench.engine.models.hub import HUB_ID

log = logging.getLogger(__name__)
DownloadState = Literal["starting", "downloading", "done", "failed", "cancelled"]
RATE_WINDOW_S = 5.0  # the rate is measured over the last few seconds
KEPT = 20  # finished downloads listed


@dataclass(frozen=True)
class DownloadProgress:
    """Where one download stands. `done_bytes` counts files already in the cache and
    partial ones resumed; `rate_bps` is this run's rate (last seconds), `eta_s` None
    until bytes flow."""

    repo: str
    files: tuple[str, ...]
    state: DownloadState
    done_bytes: int = 0
    total_bytes: int = 0
    present_bytes: int = 0  # complete files in the cache when it started
    rate_bps: float = 0.0
    eta_s: float | None = None
    error: str | None = None
    folder: str | None = None
    started_at: float = 0.0  # time.time()

    @property
    def fraction(self) -> float:
        return min(self.done_bytes / self.total_bytes, 1.0) if self.total_bytes else 0.0

    @property
    def finished(self) -> bool:
        return self.state in ("done", "failed", "cancelled")

    def describe(self) -> str:
        """One line: state, MB done of total, rate, time left, or the error."""
        mb = (
            f"{self.done_bytes / 1e6:.1f} of {self.total_bytes / 1e6:.1f} MB"
            if self.total_bytes
            else "sizing"
        )
        if self.state == "done":
            return f"{self.repo}: done, {self.total_bytes / 1e6:.1f} MB in {self.folder}"
        if self.state == "failed":
            return f"{self.repo}: failed at {mb}: {self.error}"
        if self.state == "cancelled":
            return f"{self.repo}: cancelled at {mb} (download it again to resume)"
        left = f", {self.eta_s:.0f} s left" if self.eta_s is not None else ""
        return f"{self.repo}: {mb} ({self.fraction:.0%}), {self.rate_bps / 1e6:.2f} MB/s{left}"


class Download:
    """One running child; its progress from its report lines (read on a thread of its own)."""

    def __init__(
        self,
        repo: str,
        files: Sequence[str] = (),
        revision: str = "main",
        on_finished: Callable[[DownloadProgress], None] | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self._progress = DownloadProgress(repo, tuple(files), "starting", started_at=time.time())
        self._samples: deque[tuple[float, int]] = deque()
        self._cancelled = False
        self._log: deque[str] = deque(maxlen=5)
        self._on_finished = on_finished
        cmd = [sys.executable, "-m", "workbench.engine.models.fetch", repo, *files, "--revision", revision]
        self._proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL
        )
        self._reader = threading.Thread(target=self._read, name=f"download {repo}", daemon=True)
        self._reader.start()

    @property
    def repo(self) -> str:
        return self._progress.repo

    def progress(self) -> DownloadProgress:
        """Now: the rate counts the seconds since the last bytes too (a stalled download slows)."""
        with self._lock:
            p, samples = self._progress, list(self._samples)
        if p.state != "downloading" or len(samples) < 2:
            return p
        (t0, d0), now = samples[0], time.monotonic()
        rate = (p.done_bytes - d0) / (now - t0) if now > t0 else 0.0
        return replace(p, rate_bps=rate, eta_s=(p.total_bytes - p.done_bytes) / rate if rate > 0 else None)

    def cancel(self) -> None:
        """Stop the child (its partial files stay for a resume)."""
        self._cancelled = True
        if self._proc.poll() is None:
            self._proc.terminate()

    def wait(self, timeout_s: float | None = None) -> DownloadProgress:
        """The progress once the download has ended (or at `timeout_s`)."""
        self._reader.join(timeout_s)
        return self.progress()

    def _update(self, **fields: object) -> None:
        with self._lock:
            self._progress = replace(self._progress, **fields)  # type: ignore[arg-type]

    def _on_bytes(self, done: int) -> None:
        now = time.monotonic()
        with self._lock:
            self._samples.append((now, done))
            while len(self._samples) > 2 and now - self._samples[0][0] > RATE_WINDOW_S:
                self._samples.popleft()
            self._progress = replace(self._progress, state="downloading", done_bytes=done)

    def _read(self) -> None:
        assert self._proc.stdout is not None
        error = None
        for line in self._proc.stdout:
            try:
                report = json.loads(line)
            except ValueError:
                self._log.append(line.rstrip())  # huggingface_hub's warnings (retries)
                continue
            event = report.get("event")
            if event == "plan":
                self._update(
                    files=tuple(report["files"]), total_bytes=report["total"], present_bytes=report["present"]
                )
                self._on_bytes(report["present"])
            elif event == "progress":
                self._on_bytes(int(report["done"]))
            elif event == "done":
                self._update(folder=report.get("path"))
            elif event == "error":
                error = str(report.get("message"))
        code = self._proc.wait()
        if self._cancelled and code != 0:
            self._update(state="cancelled", rate_bps=0.0, eta_s=None)
        elif code == 0:
            self._update(state="done", rate_bps=0.0, eta_s=0.0)
        else:
            said = error or " / ".join(self._log) or f"the download process exited with status {code}"
            self._update(state="failed", error=said, rate_bps=0.0, eta_s=None)
        if self._on_finished is not None:
            try:
                self._on_finished(self.progress())
            except Exception:
                log.warning("download listener failed", exc_info=True)


class Downloads:
    """The process's downloads: at most one per repo at a time; finished ones kept a while
    for the UI. `on_finished(progress)` runs on the download's thread as each one ends."""

    def __init__(self, on_finished: Callable[[DownloadProgress], None] | None = None) -> None:
        self._lock = threading.Lock()
        self._all: dict[str, Download] = {}
        self.on_finished = on_finished

    def start(self, repo: str, files: Sequence[str] = (), revision: str = "main") -> Download:
        """Start fetching `repo` (ValueError for a malformed id); a download of it that is
        still running is returned as it is."""
        repo = repo.strip()
        if not HUB_ID.match(repo):
            raise ValueError(
                f"{repo!r} is not a hub id: give owner/name, e.g. mlx-community/SmolLM2-135M-Instruct"
            )
        with self._lock:
            running = self._all.get(repo)
            if running is not None and not running.progress().finished:
                return running
            self._all.pop(repo, None)
            self._all[repo] = Download(repo, files, revision, on_finished=self.on_finished)
            for old in [r for r, d in self._all.items() if d.progress().finished][:-KEPT]:
                del self._all[old]
            return self._all[repo]

    def get(self, repo: str) -> Download | None:
        with self._lock:
            return self._all.get(repo)

    def running(self, repo: str) -> bool:
        download = self.get(repo)
        return download is not None and not download.progress().finished

    def cancel(self, repo: str) -> bool:
        """Cancel `repo`'s running download; False when none runs."""
        download = self.get(repo)
        if download is None or download.progress().finished:
            return False
        download.cancel()
        return True

    def progress(self) -> list[DownloadProgress]:
        """Every listed download, the latest started first."""
        with self._lock:
            downloads = list(self._all.values())
        return sorted((d.progress() for d in downloads), key=lambda p: -p.started_at)

    def cancel_all(self) -> None:
        with self._lock:
            downloads = list(self._all.values())
        for download in downloads:
            download.cancel()
        for download in downloads:
            download.wait(10)
