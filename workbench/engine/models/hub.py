"""Hugging Face hub ids: what looks like one, the local cache (its folders, the models in it,
deleting one), a repo's model files, and loading from the cache (fetching only when allowed)."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench.engine.errors import ModelNotFoundError

# owner/name as the hub allows them: letters, digits, '_', '-', '.'; no '..' or '--',
# neither part starting or ending with '.' or '-' (so no id can climb out of a folder).
_PART = r"[A-Za-z0-9_](?:[\w.-]{0,94}[A-Za-z0-9_])?"
HUB_ID = re.compile(rf"^(?!.*(?:\.\.|--)){_PART}/{_PART}$")
MODEL_FILES = ["*.json", "*.safetensors", "*.py", "tokenizer.model", "*.tiktoken", "*.txt", "*.jinja"]


def cache_dir() -> Path:
    """The hub cache folder, as huggingface_hub finds it (HF_HUB_CACHE, HF_HOME,
    XDG_CACHE_HOME), read now: its own constants are fixed when it is first imported."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "huggingface"
    )
    return Path(home).expanduser() / "hub"


def endpoint() -> str | None:
    """HF_ENDPOINT as set now (None: the hub's default)."""
    return os.environ.get("HF_ENDPOINT") or None


def hub_api() -> Any:
    """An HfApi on the endpoint set now."""
    from huggingface_hub import HfApi

    return HfApi(endpoint=endpoint())


def repo_folder(repo: str) -> Path:
    """The cache folder of `repo` (which may not exist); ValueError for a malformed id."""
    if not HUB_ID.match(repo):
        raise ValueError(f"{repo!r} is not a hub id (owner/name)")
    return cache_dir() / f"models--{repo.replace('/', '--')}"


def plan_files(info: Any, wanted: list[str]) -> list[tuple[str, int]]:
    """(file, bytes) to fetch from a ModelInfo with file metadata: `wanted` (each must
    exist), else the files an MLX model folder needs (a GGUF repo: name its file)."""
    sizes = {s.rfilename: int(s.size or 0) for s in info.siblings or ()}
    if wanted:
        missing = [f for f in wanted if f not in sizes]
        if missing:
            raise FileNotFoundError(f"{info.id} has no file {', '.join(missing)}")
        return [(f, sizes[f]) for f in wanted]
    plan = [(f, n) for f, n in sizes.items() if any(fnmatch.fnmatch(f, p) for p in MODEL_FILES)]
    if not any(f.endswith(".safetensors") for f, _ in plan):
        ggufs = sorted(f for f in sizes if f.endswith(".gguf"))
        hint = f": name one of its GGUF files ({', '.join(ggufs[:4])})" if ggufs else ""
        raise FileNotFoundError(f"{info.id} has no MLX weights (*.safetensors){hint}")
    return sorted(plan)


@dataclass(frozen=True)
class CachedModel:
    """A model repo in the hub cache: its snapshot folder, bytes on disk (partial files
    included), whether a download of it was left unfinished, and its GGUF files."""

    repo: str
    folder: Path | None
    size_bytes: int
    partial_bytes: int
    mlx: bool  # config.json and safetensors weights: loads as an MLX folder
    gguf_files: tuple[str, ...]

    @property
    def complete(self) -> bool:
        return self.partial_bytes == 0


def cached_models() -> list[CachedModel]:
    """Every model repo in the hub cache, by id (a folder it cannot read is skipped)."""
    root = cache_dir()
    found = []
    for repo_dir in sorted(root.glob("models--*")) if root.is_dir() else ():
        repo = repo_dir.name.removeprefix("models--").replace("--", "/", 1)
        try:
            found.append(_cached(repo, repo_dir))
        except OSError:
            continue
    return found


def _cached(repo: str, repo_dir: Path) -> CachedModel:
    blobs = [p for p in (repo_dir / "blobs").glob("*") if p.is_file()]
    partial = sum(p.stat().st_size for p in blobs if p.name.endswith((".part", ".incomplete")))
    ref = repo_dir / "refs" / "main"
    snapshots = repo_dir / "snapshots"
    folder = snapshots / ref.read_text().strip() if ref.is_file() else None
    if folder is None or not folder.is_dir():
        folders = sorted(snapshots.glob("*"), key=lambda p: p.stat().st_mtime) if snapshots.is_dir() else []
        folder = folders[-1] if folders else None
    names = [p.relative_to(folder).as_posix() for p in folder.rglob("*")] if folder else []
    mlx = "config.json" in names and any(n.endswith(".safetensors") for n in names)
    index = folder / "model.safetensors.index.json" if folder else None
    if mlx and index is not None and index.is_file():  # a sharded model: every shard there
        shards = set(json.loads(index.read_text()).get("weight_map", {}).values())
        mlx = shards <= set(names)
    return CachedModel(
        repo=repo,
        folder=folder,
        size_bytes=sum(p.stat().st_size for p in blobs),
        partial_bytes=partial,
        mlx=mlx,
        gguf_files=tuple(sorted(n for n in names if n.endswith(".gguf"))),
    )


def cached_snapshot(repo: str) -> Path | None:
    """The cached snapshot folder `refs/main` names, without any network; None if absent."""
    try:
        ref = repo_folder(repo) / "refs" / "main"
        folder = ref.parent.parent / "snapshots" / ref.read_text().strip()
    except (OSError, ValueError):
        return None
    return folder if folder.is_dir() else None


def delete_cached(repo: str) -> bool:
    """Remove `repo` from the hub cache, partial files included; False when absent."""
    folder = repo_folder(repo)
    if not folder.exists():
        return False
    shutil.rmtree(folder)
    return True


def hub_folder(repo: str, allow_download: bool) -> Path:
    """The snapshot folder of `repo`; ModelNotFoundError when it is not cached and
    downloads are off, or the download fails."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    where = {"allow_patterns": MODEL_FILES, "cache_dir": cache_dir()}
    try:
        return Path(snapshot_download(repo, local_files_only=True, **where))
    except LocalEntryNotFoundError:
        if not allow_download:
            raise ModelNotFoundError(
                f"hub model {repo!r} is not in the local Hugging Face cache and request-time downloads "
                "are off: download it first (the Models tab, or `workbench pull`), or set "
                "WORKBENCH_ALLOW_DOWNLOAD=1 to fetch it when a request names it",
                model_id=repo,
            ) from None
    try:
        return Path(snapshot_download(repo, endpoint=endpoint(), **where))
    except Exception as exc:
        raise ModelNotFoundError(f"could not download hub model {repo!r}: {exc}", model_id=repo) from exc
