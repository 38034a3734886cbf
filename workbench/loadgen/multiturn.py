"""The multi-turn chat benchmark: conversations whose history grows to about H tokens, each turn a
streamed chat completion timed by its client (TTFT per turn). No Engine, no mlx."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from workbench.loadgen.loadtest import StreamTiming, make_client, timed_stream, word_text

LAST_QUESTION = "Which word came first in my first message? Answer in one word."


@dataclass(frozen=True)
class TurnResult:
    """One turn of one conversation."""

    conversation: int
    turn: int
    timing: StreamTiming


def user_turns(history_tokens: int, turns: int, rng: random.Random) -> list[str]:
    """The user messages of one conversation: turns-1 long ones sharing about
    `history_tokens` words, then the short last question."""
    per_turn = max(history_tokens // (turns - 1), 1)
    texts = [f"Read these words: {word_text(per_turn, rng)}" for _ in range(turns - 1)]
    return [*texts, LAST_QUESTION]


def run_conversations(
    base_url: str,
    model: str,
    history_tokens: int,
    turns: int,
    conversations: int = 1,
    max_tokens: int = 8,
    api_key: str | None = None,
    timeout_s: float = 120.0,
    overall_timeout_s: float = 600.0,
    seed: int = 0,
    warmup: bool = True,
    on_progress: Callable[[int, int, str], None] | None = None,
    same_text: bool = False,
) -> list[TurnResult]:
    """Run `conversations` conversations of `turns` streamed chat turns, one after another.

    Replies are greedy (temperature 0), at most `max_tokens` tokens, and go back into the
    history as the client received them. Every conversation draws its own text (a fresh
    salt per run), so a cache only ever helps within a conversation; `same_text` drops the salt:
    every run with the same seed sends the same conversations (a cache that outlives a server
    restart, the disk tier's, then helps from turn 1). A failed turn is
    recorded and ends its conversation (later turns would not carry the history); nothing
    is sent after `overall_timeout_s`. One short untimed request goes first (`warmup`) so
    model loading is not in turn 1.
    """
    if turns < 2:
        raise ValueError("turns must be >= 2 (the last turn asks about the history before it)")
    if min(history_tokens, conversations, max_tokens) < 1:
        raise ValueError("history tokens, conversations and max tokens must be >= 1")
    client = make_client(base_url, api_key, timeout_s)
    create = client.chat.completions.create
    salt = 0 if same_text else random.SystemRandom().getrandbits(64)
    deadline = time.perf_counter() + overall_timeout_s
    if warmup:
        warm = [{"role": "user", "content": f"Say hello. {salt}"}]
        timed_stream(
            create, min(deadline, time.perf_counter() + timeout_s), model=model, messages=warm, max_tokens=1
        )
    results: list[TurnResult] = []
    total = conversations * turns
    for conversation in range(conversations):
        rng = random.Random(f"{seed}:{salt}:{conversation}")
        history: list[dict[str, str]] = []
        for turn, text in enumerate(user_turns(history_tokens, turns, rng), start=1):
            history.append({"role": "user", "content": text})
            timing = timed_stream(
                create,
                min(deadline, time.perf_counter() + timeout_s),
                model=model,
                messages=history,
                max_tokens=max_tokens,
                temperature=0,
            )
            results.append(TurnResult(conversation, turn, timing))
            if on_progress is not None:
                on_progress(len(results), total, f"conversation {conversation} turn {turn}")
            if timing.error is not None:
                break
            history.append({"role": "assistant", "content": timing.text})
    return results


def turn_rows(
    results: list[TurnResult],
    provenance: Mapping[str, Any],
    server_label: str,
    base_url: str,
    model: str,
    history_tokens: int,
    turns: int,
    max_tokens: int,
    seed: int,
) -> list[dict[str, Any]]:
    """MULTITURN_COLUMNS rows, one per turn (keys exactly reports.schema.MULTITURN_FIELDS)."""
    from workbench.reports.schema import MULTITURN_FIELDS

    rows = []
    for r in results:
        t = r.timing
        ok = t.error is None
        values = {
            **provenance,
            "server_label": server_label,
            "base_url": base_url,
            "model": model,
            "conversation": r.conversation,
            "turns": turns,
            "history_tokens": history_tokens,
            "max_tokens": max_tokens,
            "turn": r.turn,
            "prompt_tokens_reported": t.prompt_tokens,
            "cached_tokens_reported": t.cached_tokens,
            "ttft_s": t.ttft_s,
            "completion_tokens": t.completion_tokens if ok else None,
            "total_s": t.total_s,
            "error": t.error,
            "seed": seed,
        }
        rows.append({k: values[k] for k in MULTITURN_FIELDS})
    return rows
