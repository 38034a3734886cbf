"""Why a prompt reused no more of the prompt cache (`CacheMiss`, in every reply's stats), and the
token prefix two sequences share; no mlx here (the cache itself is prompt_cache.py)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

MissReason = Literal["off", "no_entry", "evicted", "diverged"]


@dataclass(frozen=True)
class CacheMiss:
    """Why the prompt cache supplied fewer tokens than it knew of: 'off' (the cache is off for
    the server or the request), 'no_entry' (nothing cached or evicted shares the prompt's start),
    'evicted' (an entry that shared `at` tokens was dropped by `bound`), 'diverged' (the nearest
    entry differs from the prompt at token index `at`: `cached_text` and `prompt_text` show a few
    tokens either side, as each has them)."""

    reason: MissReason
    at: int | None = None
    bound: str = ""
    cached_text: str = ""
    prompt_text: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens `a` and `b` share."""
    n = min(len(a), len(b))
    if n == 0:
        return 0
    differ = np.flatnonzero(np.asarray(a[:n], dtype=np.int64) != np.asarray(b[:n], dtype=np.int64))
    return int(differ[0]) if differ.size else n
