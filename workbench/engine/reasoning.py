"""A reply's thinking section: split from its answer as the text streams (ReasoningSplit), and
counted and bounded token by token (ThinkBudget, an mlx-lm logits processor). Engine thread."""

from __future__ import annotations

from typing import Any

import mlx.core as mx


def _held(text: str, marker: str) -> int:
    """Length of the longest end of `text` that begins `marker` (kept back: it may be one)."""
    for n in range(min(len(text), len(marker) - 1), 0, -1):
        if marker.startswith(text[-n:]):
            return n
    return 0


class ReasoningSplit:
    """Text in, (reasoning, answer) out. The section opens with `start` at the head of the
    reply (or was opened by the prompt: `open`) and closes with `end`; the markers are not
    part of either side, nor the blank lines right after `end`."""

    def __init__(self, start: str, end: str, *, open: bool) -> None:
        self.start, self.end = start, end
        self.state = "thinking" if open else "before"
        self.buffer = ""
        self.after_end = False  # strip the newlines that follow the end marker

    def push(self, text: str) -> tuple[str, str]:
        self.buffer += text
        reasoning, answer = "", ""
        if self.state == "before":
            head = self.buffer.lstrip()
            if head.startswith(self.start):
                self.state, self.buffer = "thinking", head[len(self.start) :]
            elif self.start.startswith(head):
                return "", ""  # blank so far, or a part of the start marker
            else:
                self.state = "answer"
        if self.state == "thinking":
            at = self.buffer.find(self.end)
            if at < 0:
                keep = _held(self.buffer, self.end)
                reasoning, self.buffer = (
                    self.buffer[: len(self.buffer) - keep],
                    self.buffer[len(self.buffer) - keep :],
                )
                return reasoning, ""
            reasoning, self.buffer = self.buffer[:at], self.buffer[at + len(self.end) :]
            self.state, self.after_end = "answer", True
        if self.after_end:
            self.buffer = self.buffer.lstrip("\n")
            self.after_end = not self.buffer
        answer, self.buffer = self.buffer, ""
        return reasoning, answer

    def flush(self) -> tuple[str, str]:
        """What is still held at the end: an unclosed section's last text is reasoning."""
        rest, self.buffer = self.buffer, ""
        return (rest, "") if self.state == "thinking" else ("", rest)


class ThinkBudget:
    """Counts the tokens inside the thinking section and, once `budget` of them are spent,
    forces the end marker's tokens (budget forcing). Called before every draw with the tokens
    so far (the prompt's last one at the first call), in the batched and the alone paths."""

    def __init__(
        self, start: tuple[int, ...], end: tuple[int, ...], budget: int | None, *, open: bool
    ) -> None:
        self.start, self.end, self.budget = start, end, budget
        self.thinking = open
        self.spent = 0
        self.recent: list[int] = []
        self.started = False

    def __call__(self, tokens: mx.array, logits: mx.array) -> mx.array:
        if self.started:
            self._see(int(mx.reshape(tokens, (-1,))[-1].item()))
        self.started = True
        if not (self.thinking and self.budget is not None and self.spent >= self.budget):
            return logits
        forced = self.end[self._end_progress()]
        keep = mx.arange(logits.shape[-1]) == forced
        return mx.where(keep, logits, mx.array(-mx.inf, dtype=logits.dtype))

    def _see(self, token: int) -> None:
        self.recent = [*self.recent, token][-max(len(self.start), len(self.end)) :]
        if not self.thinking:
            self.thinking = tuple(self.recent[-len(self.start) :]) == self.start
            return
        self.spent += 1
        if tuple(self.recent[-len(self.end) :]) == self.end:
            self.thinking = False
            self.spent -= len(self.end)  # the marker is not reasoning

    def _end_progress(self) -> int:
        """How many of the end marker's tokens were just emitted (forcing continues there)."""
        for n in range(min(len(self.end) - 1, len(self.recent)), 0, -1):
            if tuple(self.recent[-n:]) == self.end[:n]:
                return n
        return 0


def thinking_of(tokenizer: Any, prompt: list[int]) -> tuple[str, str, bool] | None:
    """(start marker, end marker, whether the prompt left the section open) of a tokenizer
    whose template has a thinking section (mlx-lm's TokenizerWrapper knows), else None."""
    if not getattr(tokenizer, "has_thinking", False):
        return None
    opened = tokenizer.rfind_think_start(prompt) > tokenizer.rfind_think_end(prompt)
    return tokenizer.think_start, tokenizer.think_end, opened
