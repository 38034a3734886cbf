"""The prompt cache's disk tier: KV caches in mlx-lm's prompt-cache files (save_prompt_cache), keyed
by model + exact token prefix, bounded by bytes, written when the engine is idle; engine thread only."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlx_lm.models.cache as mlx_cache
from mlx_lm.models.cache import can_trim_prompt_cache, load_prompt_cache, save_prompt_cache, trim_prompt_cache

from workbench.engine.cache_miss import common_prefix

log = logging.getLogger(__name__)
SUFFIX = ".safetensors"
PARTIAL = ".partial"
MAX_PENDING = 4  # caches waiting for an idle moment; past it the oldest is not written


@dataclass
class DiskEntry:
    """One file: the key (model id, KV storage, where the weights are), its tokens, its size."""

    key: str
    tokens: tuple[int, ...]
    path: Path
    nbytes: int
    used: float


def _header(path: Path) -> dict[str, str]:
    """A safetensors file's metadata, read from its header alone (no tensor is loaded)."""
    with path.open("rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        return json.loads(f.read(size)).get("__metadata__", {})


class DiskTier:
    """Prompt caches on disk under `directory`, at most `max_bytes` in all (least recently used
    first out). `put` queues a cache; `flush` (the engine calls it when idle, and at stop) writes
    the queue; `best` and `load` give back the longest cached prefix of a prompt."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory, self.max_bytes = Path(directory), max_bytes
        self.directory.mkdir(parents=True, exist_ok=True)
        self.entries: list[DiskEntry] = []
        self.pending: list[tuple[str, tuple[int, ...], list[Any]]] = []
        for path in sorted(self.directory.glob(f"*{SUFFIX}")):
            if path.name.endswith(PARTIAL + SUFFIX):  # a write cut short
                path.unlink(missing_ok=True)
                continue
            try:
                meta = _header(path)
                tokens = tuple(json.loads(meta["0.tokens"]))
                key = meta["0.key"]
            except (OSError, ValueError, KeyError, struct.error):
                log.warning("prompt cache: ignoring unreadable %s", path)
                continue
            stat = path.stat()
            self.entries.append(DiskEntry(key, tokens, path, stat.st_size, stat.st_mtime))

    @property
    def nbytes(self) -> int:
        return sum(e.nbytes for e in self.entries)

    def best(self, key: str, prompt: Sequence[int]) -> tuple[DiskEntry | None, int]:
        """The entry sharing the longest prefix with `prompt`, and that length (at most len - 1)."""
        found, length = None, 0
        for entry in self.entries:
            if entry.key == key:
                n = min(common_prefix(entry.tokens, prompt), len(prompt) - 1)
                if n > length:
                    found, length = entry, n
        return found, length

    def load(self, entry: DiskEntry, length: int) -> list[Any] | None:
        """`entry`'s KV cache cut to its first `length` tokens; None when it cannot be."""
        try:
            cache = load_prompt_cache(str(entry.path))
        except Exception:  # a damaged or foreign file: drop it
            log.warning("prompt cache: could not load %s; removing it", entry.path, exc_info=True)
            self._remove(entry)
            return None
        excess = len(entry.tokens) - length
        if excess and not (can_trim_prompt_cache(cache) and trim_prompt_cache(cache, excess) == excess):
            return None
        entry.used = time.time()
        os.utime(entry.path)
        return cache

    def put(self, key: str, tokens: Sequence[int], cache: list[Any]) -> None:
        """Queue `cache` (of `tokens`) for the next flush; caches of classes mlx-lm cannot load
        back (e.g. a float16 cache of ours) are not kept on disk."""
        if not all(getattr(mlx_cache, type(c).__name__, None) is type(c) for c in cache):
            return
        tokens = tuple(tokens)
        self.pending = [p for p in self.pending if not (p[0] == key and p[1] == tokens[: len(p[1])])]
        self.pending.append((key, tokens, cache))
        del self.pending[:-MAX_PENDING]

    def flush(self) -> int:
        """Write what is queued (superseding entries it extends); returns how many were written."""
        written = 0
        while self.pending:
            key, tokens, cache = self.pending.pop(0)
            if any(e.key == key and e.tokens[: len(tokens)] == tokens for e in self.entries):
                continue  # already on disk (or a longer sequence that holds it)
            try:
                written += self._write(key, tokens, cache)
            except OSError:
                log.warning("prompt cache: could not write to %s", self.directory, exc_info=True)
        return written

    def _write(self, key: str, tokens: tuple[int, ...], cache: list[Any]) -> int:
        name = hashlib.sha256(f"{key}\n{tokens}".encode()).hexdigest()[:24]
        path = self.directory / f"{name}{SUFFIX}"
        partial = self.directory / f"{name}{PARTIAL}{SUFFIX}"
        save_prompt_cache(str(partial), cache, {"key": key, "tokens": json.dumps(list(tokens))})
        size = partial.stat().st_size
        if size > self.max_bytes:
            partial.unlink(missing_ok=True)
            return 0
        for old in [e for e in self.entries if e.key == key and tokens[: len(e.tokens)] == e.tokens]:
            self._remove(old)  # a prefix of the new sequence: superseded
        os.replace(partial, path)
        self.entries.append(DiskEntry(key, tokens, path, size, time.time()))
        while self.nbytes > self.max_bytes:
            self._remove(min(self.entries, key=lambda e: e.used))
        return 1

    def _remove(self, entry: DiskEntry) -> None:
        self.entries.remove(entry)
        entry.path.unlink(missing_ok=True)


def of(settings: Any) -> DiskTier | None:
    """The disk tier WORKBENCH_PROMPT_CACHE_DIR asks for (None: memory only)."""
    where = settings.prompt_cache_dir
    return DiskTier(where, int(settings.prompt_cache_disk_gb * 1e9)) if where else None
