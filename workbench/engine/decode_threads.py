"""DecodeThreads: OpenBLAS's thread count for each batch step on the CPU backend: all of them for
prompt work, and for decode steps the count the steps of that model and batch size measured fastest.
Knows no mlx; the numbers it picks change speed only (OpenBLAS splits no dot product over threads)."""

from __future__ import annotations

import logging
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

SKIP = 2  # steps after a change that still ran partly under the old one (mlx evaluates a step ahead)
SAMPLES = 6  # step times per count before the counts of a batch size are compared
MARGIN = 0.05  # fewer threads than all must step this much faster (a batch of 1 here: 63 vs 67 ms)
HOLD = 2000  # decode steps of one batch size on its pick before its counts are measured again


def _bucket(batch: int) -> int:
    """Batch sizes up to 8 each their own; above, powers of two (9-16 -> 16, 17-32 -> 32)."""
    return batch if batch <= 8 else 1 << (batch - 1).bit_length()


@dataclass
class _Trial:
    """What one (model, batch size) has measured: step times per count, and its pick."""

    counts: tuple[int, ...]
    times: dict[int, list[float]] = field(default_factory=dict)
    pick: int | None = None
    held: int = 0
    medians: dict[int, float] = field(default_factory=dict)

    def count(self) -> int:
        if self.pick is not None and self.held < HOLD:
            self.held += 1
            return self.pick
        self.pick = None
        for n in self.counts:
            if len(self.times.get(n, ())) < SAMPLES:
                return n
        medians = {n: statistics.median(self.times[n]) for n in self.counts}
        best = min(medians, key=medians.__getitem__)
        if medians[best] > (1 - MARGIN) * medians[self.counts[0]]:
            best = self.counts[0]  # within the noise of all threads: OpenBLAS's own count
        self.pick, self.held, self.times = best, 0, {}
        self.medians = medians
        return self.pick


class DecodeThreads:
    """Sets OpenBLAS's thread count before each batch step (`before`) and learns from its time
    (`after`). `setting`: 'auto' (measured), 'all', or a count for every decode step."""

    def __init__(self, control: tuple[Callable[[], int], Callable[[int], None]] | None, setting: str) -> None:
        self._set = control[1] if control else None
        self.all = max(1, control[0]()) if control else 1
        fixed = {"auto": None, "all": self.all}.get(setting)
        self.fixed = fixed if setting in ("auto", "all") else min(int(setting), self.all)
        counts = {self.all, max(1, self.all // 2), 1}
        self.counts = tuple(sorted(counts, reverse=True))
        self.current = self.all
        self._trials: dict[tuple[str, int], _Trial] = {}
        self._last: tuple[str, int, int] | None = None  # (model, bucket, count) of the step before
        self._skip = 0
        self._timing: _Trial | None = None

    @property
    def active(self) -> bool:
        return self._set is not None and self.all > 1

    def before(self, model: str, decoding: int, prompt_work: bool) -> None:
        """Before a step: all threads while a prompt is processed, else this batch size's count."""
        self._timing = None
        if not self.active:
            return
        if prompt_work or decoding == 0:
            self._use(self.all)
            self._last = None
            return
        key = (model, _bucket(decoding))
        if self.fixed is not None:
            self._use(self.fixed)
            return
        trial = self._trials.setdefault(key, _Trial(self.counts))
        measuring = trial.pick is None or trial.held >= HOLD
        count = trial.count()
        if measuring and trial.pick is not None:
            ms = ", ".join(f"{n}: {1000 * t:.0f} ms" for n, t in trial.medians.items())
            log.info("decode threads for %s at batch %d: %d (median step by count: %s)", *key, count, ms)
        self._use(count)
        if self._last != (*key, count):
            self._skip = SKIP
        self._last = (*key, count)
        if trial.pick is None:
            self._timing = trial

    def after(self, seconds: float) -> None:
        """The step `before` prepared took `seconds` (kept while that batch size is measured)."""
        trial, self._timing = self._timing, None
        if trial is None or self._last is None:
            return
        if self._skip > 0:
            self._skip -= 1
            return
        trial.times.setdefault(self._last[2], []).append(seconds)

    def rest(self) -> None:
        """All threads again (the batch is empty: other work may run next)."""
        if self.active:
            self._use(self.all)
        self._last = None

    def picks(self) -> dict[str, int]:
        """The counts picked so far, by 'model@batch size'."""
        return {f"{m}@{b}": t.pick for (m, b), t in self._trials.items() if t.pick is not None}

    def _use(self, count: int) -> None:
        if count != self.current and self._set is not None:
            self._set(count)
            self.current = count
