"""Stop strings matched on text, so a stop spanning several tokens is still caught; text that may
start one is held back, the stop itself never emitted. Pure Python, no mlx."""

from __future__ import annotations

from collections.abc import Sequence


class StopBuffer:
    """Feed decoded text in; get back what is safe to emit and whether a stop hit."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = tuple(s for s in stops if s)
        self._pending = ""
        self.matched: str | None = None  # the stop string that ended the text, once one has

    def push(self, text: str) -> tuple[str, bool]:
        """Add text; return (text safe to emit now, stopped)."""
        if not self.stops:
            return text, False
        pending = self._pending + text
        # (position, order given, stop) of each stop found: the earliest one wins.
        hits = [(i, n, s) for n, s in enumerate(self.stops) if (i := pending.find(s)) >= 0]
        if hits:
            at, _, self.matched = min(hits)
            self._pending = ""
            return pending[:at], True
        hold = self._held_suffix(pending)
        self._pending = pending[len(pending) - hold :]
        return pending[: len(pending) - hold], False

    def flush(self) -> str:
        """The held-back text, once generation ended without a stop."""
        text, self._pending = self._pending, ""
        return text

    def _held_suffix(self, text: str) -> int:
        """Length of the longest suffix of `text` that is a proper prefix of a stop."""
        best = 0
        for stop in self.stops:
            for k in range(min(len(stop) - 1, len(text)), best, -1):
                if text.endswith(stop[:k]):
                    best = k
                    break
        return best
