"""ReplyText: a generation's tokens -> its text, as they come: the streaming detokenizer, the
stop strings, then the thinking section split from the answer. Pure Python, no mlx calls."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from workbench.engine.reasoning import ReasoningSplit
from workbench.engine.stops import StopBuffer


class ReplyText:
    """One generation's text pipeline; `thinking` is (start, end, open) for a model whose
    template has a thinking section (reasoning.thinking_of), else None."""

    def __init__(self, tokenizer: Any, stop: Sequence[str], thinking: tuple[str, str, bool] | None) -> None:
        self.detokenizer = tokenizer.detokenizer
        self.stops = StopBuffer(tuple(stop))
        self.split = ReasoningSplit(thinking[0], thinking[1], open=thinking[2]) if thinking else None
        self.stop_hit = False

    def push(self, token: int) -> tuple[str, str]:
        """(answer text, reasoning text) that `token` completes; sets stop_hit on a stop string."""
        self.detokenizer.add_token(token)
        text, self.stop_hit = self.stops.push(self.detokenizer.last_segment)
        return self._split(text)

    def finish(self) -> tuple[str, str]:
        """What the detokenizer, the stop buffer and the split still hold (none of it after a
        stop string ended the reply, which is not part of it)."""
        tail = ""
        if not self.stop_hit:
            self.detokenizer.finalize()
            tail, self.stop_hit = self.stops.push(self.detokenizer.last_segment)
            tail += "" if self.stop_hit else self.stops.flush()
        answer, reasoning = self._split(tail)
        if self.split is not None:
            rest_reasoning, rest_answer = self.split.flush()
            answer, reasoning = answer + rest_answer, reasoning + rest_reasoning
        return answer, reasoning

    @property
    def stop_sequence(self) -> str | None:
        return self.stops.matched if self.stop_hit else None

    def _split(self, text: str) -> tuple[str, str]:
        if self.split is None or not text:
            return text, ""
        reasoning, answer = self.split.push(text)
        return answer, reasoning
