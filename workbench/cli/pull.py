"""`workbench pull owner/name [FILE ...]`: download a hub model into the local cache with a progress
bar (engine/models/downloads.py, as the Models tab does); a stopped pull resumes, a repeated one
fetches nothing."""

from __future__ import annotations

import argparse
import sys
import time

from workbench.cli._common import INTERRUPTED, run_cancellable
from workbench.engine import CancelToken, DownloadProgress
from workbench.engine.models.downloads import Download
from workbench.runs import ProgressFn

POLL_S = 0.2


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    pull = sub.add_parser(
        "pull",
        parents=[common],
        help="download a hub model into the local cache",
        description="Download a Hugging Face hub model (an MLX repo's weights, tokenizer and config; or "
        "the named files, e.g. one .gguf of a GGUF repo) into the local hub cache, where `serve`, "
        "`chat` and the Models tab find it. An explicit action: WORKBENCH_ALLOW_DOWNLOAD (request-time "
        "downloads) does not govern it. HF_ENDPOINT and HF_HOME / HF_HUB_CACHE are honoured. Ctrl-C "
        "stops it, keeping the partial file: the same command resumes. A pull of what is already "
        "cached fetches nothing.",
    )
    pull.add_argument("repo", help="hub id, owner/name (e.g. mlx-community/SmolLM2-135M-Instruct-8bit)")
    pull.add_argument("files", nargs="*", help="only these files of the repo (default: the model's files)")
    pull.add_argument("--revision", default="main", help="branch, tag or commit (default: main)")
    pull.add_argument("--no-progress", action="store_true", help="no progress bar")
    pull.set_defaults(handler=cmd_pull, needs_engine=False)


def _follow(download: Download, cancel: CancelToken, progress: ProgressFn) -> DownloadProgress:
    try:
        while not (p := download.progress()).finished:
            if p.total_bytes:
                progress(p.done_bytes, p.total_bytes, download.repo)
            time.sleep(POLL_S)
        if p.state == "done":
            progress(p.total_bytes, p.total_bytes, download.repo)
        return p
    except KeyboardInterrupt:
        download.cancel()
        download.wait(30)
        raise


def cmd_pull(args: argparse.Namespace) -> int:
    from workbench.engine.models.downloads import Downloads

    download = Downloads().start(args.repo, args.files, args.revision)
    done = run_cancellable(
        lambda cancel, progress: _follow(download, cancel, progress),
        desc="pull",
        unit="B",
        no_progress=args.no_progress,
        interrupted=f"{args.repo}: the partial download is kept; run the same command to resume",
        scale=True,
    )
    if done is None:
        return INTERRUPTED
    if done.state != "done":
        print(f"error: {done.describe()}", file=sys.stderr)
        return 1
    if done.present_bytes >= done.total_bytes:
        print(
            f"{args.repo}: already in the cache, nothing to fetch ({done.total_bytes / 1e6:.1f} MB)",
            file=sys.stderr,
        )
    else:
        fetched = (done.total_bytes - done.present_bytes) / 1e6
        print(f"{args.repo}: fetched {fetched:.1f} MB of {done.total_bytes / 1e6:.1f} MB", file=sys.stderr)
    print(done.folder)
    return 0
