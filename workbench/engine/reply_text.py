"""ReplyText: a generation's tokens -> its text, as they come: the streaming detokenizer, the
stop strings, the thinking section split from the answer, native tool calls parsed. No mlx."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from workbench.engine.reasoning import ReasoningSplit
from workbench.engine.stops import StopBuffer
from workbench.engine.structured.native_tools import NativeCallSplitter

Events = tuple[tuple[Any, ...], ...]


class ReplyText:
    """One generation's text pipeline; `thinking` is (start, end, open) for a model whose
    template has a thinking section (reasoning.thinking_of), else None; `calls` is (dialect,
    tools) when tool calls come in the template's own format."""

    def __init__(
        self,
        tokenizer: Any,
        stop: Sequence[str],
        thinking: tuple[str, str, bool] | None,
        calls: tuple[str, Sequence[Any]] | None = None,
    ) -> None:
        self.detokenizer = tokenizer.detokenizer
        self.stops = StopBuffer(tuple(stop))
        self.split = ReasoningSplit(thinking[0], thinking[1], open=thinking[2]) if thinking else None
        self.native = NativeCallSplitter(*calls) if calls else None
        self.stop_hit = False

    def push(self, token: int) -> tuple[str, str, Events]:
        """(answer text, reasoning text, call events) that `token` completes; sets stop_hit
        on a stop string."""
        self.detokenizer.add_token(token)
        text, self.stop_hit = self.stops.push(self.detokenizer.last_segment)
        answer, reasoning = self._split(text)
        answer, calls = self._calls(answer)
        return answer, reasoning, calls

    def finish(self) -> tuple[str, str, Events]:
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
        answer, calls = self._calls(answer)
        if self.native is not None:
            more = self.native.finish(complete=not self.stop_hit)
            answer += "".join(e[1] for e in more if e[0] == "text")
            calls += tuple(e for e in more if e[0] != "text")
        return answer, reasoning, calls

    @property
    def stop_sequence(self) -> str | None:
        return self.stops.matched if self.stop_hit else None

    def _calls(self, text: str) -> tuple[str, Events]:
        if self.native is None or not text:
            return text, ()
        events = self.native.feed(text)
        return "".join(e[1] for e in events if e[0] == "text"), tuple(e for e in events if e[0] != "text")

    def _split(self, text: str) -> tuple[str, str]:
        if self.split is None or not text:
            return text, ""
        reasoning, answer = self.split.push(text)
        return answer, reasoning
