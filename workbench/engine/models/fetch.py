"""The download child process: `python -m workbench.engine.models.fetch REPO [FILE ...]` fetches a
hub repo's model files into the Hugging Face cache, one JSON line per event on stdout. No mlx."""

from __future__ import annotations

import argparse
import errno
import hashlib
import json
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from workbench.engine.models.hub import cache_dir, endpoint, hub_api, plan_files, repo_folder

CHUNK_BYTES = 1 << 20
ATTEMPTS = 5  # tries per file (each resumes where the last stopped) before it is an error
PARTIAL = ".part"  # a blob being fetched: kept when stopped, resumed by the next download


def emit(event: str, **fields: Any) -> None:
    """One report line for the parent (downloads.py reads them)."""
    print(json.dumps({"event": event, **fields}), flush=True)


class _Counter:
    """Bytes of the whole plan so far (complete files and partial ones), reported with
    every piece (a piece is CHUNK_BYTES)."""

    def __init__(self, done: int) -> None:
        self.done = done

    def add(self, n: int) -> None:
        self.done += n
        emit("progress", done=self.done)


def _fetch_blob(url: str, blob: Path, size: int, etag: str, counter: _Counter) -> None:
    """GET `url` into `blob` through `blob`.part, resuming a partial file with a Range
    request (huggingface_hub 2.x starts every download from zero in a file of its own)."""
    from huggingface_hub.utils import build_hf_headers, get_session

    part = blob.with_name(blob.name + PARTIAL)
    part.parent.mkdir(parents=True, exist_ok=True)
    part.touch(exist_ok=True)
    have = part.stat().st_size
    counter.add(have)
    for attempt in range(ATTEMPTS):
        if have >= size:  # complete already (stopped before its rename)
            break
        headers = build_hf_headers(headers={"Range": f"bytes={have}-"} if have else None)
        try:
            with get_session().stream("GET", url, headers=headers, follow_redirects=True) as reply:
                reply.raise_for_status()
                if have and reply.status_code != 206:  # the server ignored the Range: start over
                    counter.add(-have)
                    have = 0
                with part.open("ab" if have else "wb") as out:
                    for chunk in reply.iter_bytes(CHUNK_BYTES):
                        out.write(chunk)
                        have += len(chunk)
                        counter.add(len(chunk))
            break
        except Exception as exc:
            if attempt == ATTEMPTS - 1 or not _transient(exc):
                raise
            time.sleep(0.5 * (attempt + 1))
            have = part.stat().st_size
    if have != size:
        raise OSError(f"{blob.name}: got {have} bytes, expected {size} (the partial file is kept)")
    if re.fullmatch(r"[0-9a-f]{64}", etag) and _sha256(part) != etag:
        part.unlink()
        raise OSError(f"{blob.name}: the content does not match its sha256 (the file was dropped)")
    part.rename(blob)


def _transient(exc: Exception) -> bool:
    """A dropped connection or a timeout (retried), not a refusal (4xx) or a full disk."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return False
    status = getattr(getattr(exc, "response", None), "status_code", None)
    return status is None or status >= 500


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(CHUNK_BYTES):
            digest.update(block)
    return digest.hexdigest()


def fetch(repo: str, files: list[str], revision: str) -> int:
    """Download the planned files; 0 when every one is in the cache, 1 after an error line."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url

    try:
        info = hub_api().model_info(repo, revision=revision, files_metadata=True)
        plan = plan_files(info, files)
        blobs = repo_folder(repo) / "blobs"
        metas = [
            get_hf_file_metadata(hf_hub_url(repo, name, revision=revision, endpoint=endpoint()))
            for name, _ in plan
        ]
        sizes = [int(m.size or size) for m, (_, size) in zip(metas, plan, strict=True)]
        total = sum(sizes)
        have = sum(n for m, n in zip(metas, sizes, strict=True) if (blobs / str(m.etag)).exists())
        emit("plan", files=[name for name, _ in plan], total=total, present=have, commit=info.sha)
        root = cache_dir()
        root.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(root).free
        if total - have > free:
            raise OSError(
                errno.ENOSPC,
                f"needs {(total - have) / 1e6:.1f} MB more but {free / 1e6:.1f} MB are free in {root}",
            )
        counter, path = _Counter(have), None
        for (name, _), meta, size in zip(plan, metas, sizes, strict=True):
            blob = blobs / str(meta.etag)
            if not blob.exists():
                _fetch_blob(str(meta.location), blob, size, str(meta.etag), counter)
            # The blob is in place: huggingface_hub links it into the snapshot (and refs).
            got = hf_hub_download(repo, name, revision=revision, cache_dir=root, endpoint=endpoint())
            path = str(got).removesuffix(name).rstrip("/")
        emit("progress", done=total)
        emit("done", path=path)
        return 0
    except Exception as exc:  # every failure is one line for the user
        emit("error", message=describe_error(exc))
        return 1


def describe_error(exc: BaseException) -> str:
    """One line saying what went wrong, disk full and missing repos in plain words."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"disk full: {exc.strerror or exc}"
    if getattr(getattr(exc, "response", None), "status_code", None) in (401, 404):
        return "no such repo or file on the hub (a private or gated repo needs HF_TOKEN)"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workbench.engine.models.fetch")
    parser.add_argument("repo")
    parser.add_argument("files", nargs="*", help="these files only (default: the model's files)")
    parser.add_argument("--revision", default="main")
    args = parser.parse_args(argv)
    return fetch(args.repo, args.files, args.revision)


if __name__ == "__main__":
    sys.exit(main())
