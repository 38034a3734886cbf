"""Soak: 64 concurrent streaming clients (the official openai SDK) against a live server
on 127.0.0.1, a quarter of them dropping their connection at a random point (seeded).
Afterwards every surviving stream got exactly its prompt's greedy text and usage, the
engine is idle, and memory (process RSS, MLX active) is back near its baseline.

Bounded: short replies, two rounds (the first grows the allocator pools and is the
baseline), an overall timeout. The figures are printed (pytest -s) and written to
test-artifacts/soak.json (WORKBENCH_TEST_ARTIFACTS moves it).
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import random
import time
from collections.abc import Iterator
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from api.app import create_app
from tests.helpers import FinishedGenerations, LiveServer, wait_until
from workbench.config import Settings
from workbench.engine import Engine

CLIENTS = 64
DROPPERS = 16  # a quarter
MAX_TOKENS = 16
# A dropped request asks for many tokens (and ignores end-of-sequence): were it not
# cancelled when its client leaves, it would keep the engine busy for minutes, its
# generation would not end as cancelled, and the idle check below would fail. The checks
# read outcomes (each generation's finish reason and length), so they hold on a machine
# of any speed; IDLE_TIMEOUT_S only bounds the wait for those outcomes.
DROPPED_MAX_TOKENS = 4000
BEFORE_HEADERS = -1  # a drop point: leave while the request still waits for its first token
ROUND_TIMEOUT_S = 240  # generous: another process may share these CPUs
IDLE_TIMEOUT_S = 60
# MLX active memory is exact bookkeeping of live arrays, so its baseline is read before
# any round: the weights plus the prompt cache's entries for these prompts (each surviving
# request replaces its prompt's entry with a same-sized one: the same prompt, the same
# greedy reply; a dropped one adds none). Process RSS also holds the allocators' pools,
# which the first round grows: its baseline is read after that warm-up round.
ACTIVE_MARGIN_GB = 0.01
# Read after malloc_trim, RSS still moved by up to ~0.045 GB either way between identical
# rounds (4 runs each of this code and the code before it, 2026-12-02); a leak of 1.2 MB a
# request (64 requests a round) passes 0.08 GB and fails.
RSS_MARGIN_GB = 0.08

CHAT_PROMPTS = (
    "Write two sentences about a lighthouse.",
    "Name three things people do in the rain.",
    "Describe a quiet morning in a small village.",
)
TEXT_PROMPTS = (
    "The most useful tools in a kitchen are",
    "Once upon a time, in a forest far away,",
    "The three primary colours are",
)


@dataclass(frozen=True)
class Plan:
    """One client: which prompt, on which endpoint, and whether (and where) it drops."""

    index: int
    kind: str  # "chat" or "text"
    prompt: int
    drop_after: int | None  # chunks read before closing; BEFORE_HEADERS; None: reads to the end
    wait_s: float = 0.0  # BEFORE_HEADERS only: how long it waits for the response first


@dataclass
class Outcome:
    plan: Plan
    chunks: int = 0
    text: str = ""
    finishes: list[str] = field(default_factory=list)
    usage: dict[str, Any] | None = None
    dropped: bool = False
    error: str | None = None


@dataclass(frozen=True)
class RoundResult:
    outcomes: list[Outcome]
    wall_s: float
    settled: bool  # the engine was idle within IDLE_TIMEOUT_S after the last client
    memory: dict[str, float]


@dataclass(frozen=True)
class Expected:
    text: str
    finish: str
    prompt_tokens: int
    completion_tokens: int


def plan_round(seed: int) -> list[Plan]:
    rng = random.Random(seed)
    droppers = set(rng.sample(range(CLIENTS), DROPPERS))
    plans = []
    for i in range(CLIENTS):
        kind, prompt = ("chat", "text")[i % 2], (i // 2) % 3
        if i not in droppers:
            plans.append(Plan(i, kind, prompt, None))
            continue
        drop_after = rng.randrange(BEFORE_HEADERS, 12)
        wait_s = rng.uniform(0.2, 3.0) if drop_after == BEFORE_HEADERS else 0.0
        plans.append(Plan(i, kind, prompt, drop_after, wait_s))
    return plans


def _create(client: openai.AsyncOpenAI, plan: Plan, *, stream: bool) -> Any:
    dropping = plan.drop_after is not None
    args: dict[str, Any] = {
        "model": "default",
        "max_tokens": DROPPED_MAX_TOKENS if dropping else MAX_TOKENS,
        "temperature": 0,
    }
    if dropping:
        args["extra_body"] = {"ignore_eos": True}
    if stream:
        args.update(stream=True, stream_options={"include_usage": True})
    if plan.kind == "chat":
        messages = [{"role": "user", "content": CHAT_PROMPTS[plan.prompt]}]
        return client.chat.completions.create(messages=messages, **args)
    return client.completions.create(prompt=TEXT_PROMPTS[plan.prompt], **args)


async def run_client(client: openai.AsyncOpenAI, plan: Plan) -> Outcome:
    out = Outcome(plan)
    try:
        if plan.drop_after == BEFORE_HEADERS:
            try:  # wait_for cancels the request (and closes its connection) on timeout
                stream = await asyncio.wait_for(_create(client, plan, stream=True), plan.wait_s)
            except TimeoutError:
                out.dropped = True
                return out
        else:
            stream = await _create(client, plan, stream=True)
        # Leaving the block closes the response (the connection, for a drop) and the iterator.
        async with stream, aclosing(aiter(stream)) as chunks:
            async for chunk in chunks:
                if plan.drop_after is not None and out.chunks >= plan.drop_after:
                    out.dropped = True  # the client leaves mid-stream
                    return out
                out.chunks += 1
                if chunk.usage is not None:
                    out.usage = chunk.usage.model_dump()
                for choice in chunk.choices:
                    out.text += (choice.delta.content or "") if plan.kind == "chat" else choice.text
                    if choice.finish_reason is not None:
                        out.finishes.append(choice.finish_reason)
        if plan.drop_after is not None:  # it should have dropped long before the end
            out.error = f"the stream ended after {out.chunks} chunks, before its drop point"
    except Exception as exc:  # counted as a failure, with what it was
        out.error = f"{type(exc).__name__}: {exc}"
    return out


def problems(out: Outcome, expected: Expected) -> list[str]:
    """What is wrong with one client's outcome (nothing, for a clean drop)."""
    if out.error is not None:
        return [out.error]
    if out.dropped:
        return []
    found = []
    if out.text != expected.text:
        found.append(f"text {out.text!r} != {expected.text!r}")
    if out.finishes != [expected.finish]:
        found.append(f"finish reasons {out.finishes} != [{expected.finish!r}]")
    usage = out.usage or {}
    if (usage.get("prompt_tokens"), usage.get("completion_tokens")) != (
        expected.prompt_tokens,
        expected.completion_tokens,
    ):
        found.append(f"usage {usage} != {expected}")
    elif usage.get("total_tokens") != expected.prompt_tokens + expected.completion_tokens:
        found.append(f"usage total {usage}")
    return found


async def expected_replies(client: openai.AsyncOpenAI) -> dict[tuple[str, int], Expected]:
    """Each prompt's greedy reply, from a solo non-streaming request."""
    found = {}
    for kind, prompts in (("chat", CHAT_PROMPTS), ("text", TEXT_PROMPTS)):
        for p in range(len(prompts)):
            r = await _create(client, Plan(-1, kind, p, None), stream=False)
            text = r.choices[0].message.content if kind == "chat" else r.choices[0].text
            assert text and r.usage is not None
            found[kind, p] = Expected(
                text, r.choices[0].finish_reason, r.usage.prompt_tokens, r.usage.completion_tokens
            )
    return found


async def run_round(client: openai.AsyncOpenAI, plans: list[Plan]) -> list[Outcome]:
    tasks = [asyncio.ensure_future(run_client(client, p)) for p in plans]
    try:
        return await asyncio.wait_for(asyncio.gather(*tasks), ROUND_TIMEOUT_S)
    finally:
        for t in tasks:
            t.cancel()


def _trim_heap() -> None:
    """Hand the C heap's free pages back to the system (glibc), so RSS counts what is held,
    not what malloc keeps cached from the round's many threads: the noise that remains is
    the allocator's, not a leak's."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name) if name else None
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


def memory_gb(url: str) -> dict[str, float]:
    """The server's memory figures from /health (the server runs in this process)."""
    gc.collect()  # both readings alike: no garbage cycle still holding buffers
    _trim_heap()
    mem = httpx.get(f"{url}/health", timeout=30).json()["memory"]
    return {k: round(mem[k], 4) for k in ("active_gb", "cache_gb", "process_rss_gb")}


def artifacts_dir() -> Path:
    default = Path(__file__).parents[1] / "test-artifacts"
    return Path(os.environ.get("WORKBENCH_TEST_ARTIFACTS", default))


@pytest.fixture(scope="module")
def server(settings: Settings, engine: Engine) -> Iterator[LiveServer]:
    with LiveServer(create_app(settings, engine, with_ui=False)) as live:
        yield live


def idle(engine: Engine) -> bool:
    return engine.active_streams == 0 and engine.queued_generations == 0


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_soak_64_streaming_clients_a_quarter_dropping(server: LiveServer, engine: Engine) -> None:
    # The engine's own limit decides when it answers 429: all 64 must fit at once.
    assert engine.settings.max_batch + engine.settings.max_queue >= CLIENTS
    assert wait_until(lambda: idle(engine), timeout_s=IDLE_TIMEOUT_S)
    started = time.monotonic()

    async def soak() -> dict[str, Any]:
        # max_retries=0: a failure is counted, never hidden by a retry.
        client = openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0, timeout=120)
        async with client:
            expected = await expected_replies(client)
            # gc and /health from this thread: garbage from the clients is finalized here, on its loop.
            start_memory = memory_gb(server.url)
            rounds = []
            for n in range(2):
                t0 = time.monotonic()
                outcomes = await run_round(client, plan_round(seed=1234 + n))
                wall_s = time.monotonic() - t0
                # Survivors are done; a dropped request's generation must be gone too.
                settled = await asyncio.to_thread(wait_until, lambda: idle(engine), IDLE_TIMEOUT_S)
                rounds.append(RoundResult(outcomes, round(wall_s, 1), settled, memory_gb(server.url)))
                if not settled:  # a stuck engine: report it now, pile no second round on it
                    return {"expected": expected, "start_memory": start_memory, "rounds": rounds}
            # A request after the soak decodes alone: no leftover sequence in the batch.
            after = await _create(client, Plan(-1, "chat", 0, None), stream=False)
        return {"expected": expected, "start_memory": start_memory, "rounds": rounds, "after": after}

    with FinishedGenerations(engine) as finished:
        result = asyncio.run(soak())
    wall_s = time.monotonic() - started
    expected, rounds = result["expected"], result["rounds"]

    failures = []
    figures: dict[str, Any] = {"clients_per_round": CLIENTS, "rounds": []}
    for n, rr in enumerate(rounds):
        outcomes = rr.outcomes
        found = [problems(o, expected[o.plan.kind, o.plan.prompt]) for o in outcomes]
        bad = [(n, o.plan, p) for o, p in zip(outcomes, found, strict=True) if p]
        failures += bad
        figures["rounds"].append(
            {
                "round": "warm-up" if n == 0 else "soak",
                "completed": sum(1 for o, p in zip(outcomes, found, strict=True) if not o.dropped and not p),
                "dropped_on_purpose": sum(1 for o in outcomes if o.dropped),
                "dropped_before_headers": sum(
                    1 for o in outcomes if o.dropped and o.plan.drop_after == BEFORE_HEADERS
                ),
                "failed": len(bad),
                "idle_after": rr.settled,
                "memory_gb": rr.memory,
                "wall_s": rr.wall_s,
            }
        )
    start, warm, end = result["start_memory"], rounds[0].memory, rounds[-1].memory
    figures.update(
        {
            "completed": sum(r["completed"] for r in figures["rounds"]),
            "dropped_on_purpose": sum(r["dropped_on_purpose"] for r in figures["rounds"]),
            "failed": len(failures),
            "active_gb_before": start["active_gb"],  # before any round
            "active_gb_after": end["active_gb"],
            "active_margin_gb": ACTIVE_MARGIN_GB,
            "rss_gb_start": start["process_rss_gb"],
            "rss_gb_before": warm["process_rss_gb"],  # after the warm-up round
            "rss_gb_after": end["process_rss_gb"],
            "rss_margin_gb": RSS_MARGIN_GB,
            "wall_s": round(wall_s, 1),
        }
    )
    out_dir = artifacts_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "soak.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(
        f"\nsoak: {figures['completed']} completed, {figures['dropped_on_purpose']} dropped on purpose, "
        f"{figures['failed']} failed over {len(rounds)} rounds of {CLIENTS}; "
        f"MLX active {start['active_gb']:.4f} -> {warm['active_gb']:.4f} -> {end['active_gb']:.4f} GB, "
        f"RSS {start['process_rss_gb']:.3f} -> {warm['process_rss_gb']:.3f} (baseline) "
        f"-> {end['process_rss_gb']:.3f} GB; {wall_s:.1f} s"
    )

    for r in figures["rounds"]:
        assert r["idle_after"], f"the engine was still busy {IDLE_TIMEOUT_S} s after the {r['round']} round"
    assert not failures, failures[:5]
    # Every generation either answered (at most MAX_TOKENS) or was cancelled when its
    # client left, far short of its forced DROPPED_MAX_TOKENS: none ran on for its client.
    runaway = [
        s for s in finished.seen if s.finish_reason != "cancelled" and s.generation_tokens > MAX_TOKENS
    ]
    cancelled = [s for s in finished.seen if s.finish_reason == "cancelled"]
    assert not runaway, runaway[:3]
    assert all(s.generation_tokens < DROPPED_MAX_TOKENS // 2 for s in cancelled), cancelled
    after_headers = sum(1 for rr in rounds for o in rr.outcomes if o.dropped and o.plan.drop_after >= 0)
    assert len(cancelled) >= after_headers, (len(cancelled), after_headers)
    for r in figures["rounds"]:
        assert r["completed"] == CLIENTS - DROPPERS and r["dropped_on_purpose"] == DROPPERS, r
        assert r["memory_gb"]["active_gb"] <= start["active_gb"] + ACTIVE_MARGIN_GB, (start, r)
    assert idle(engine)
    timings = result["after"].model_extra["timings"]
    assert result["after"].choices[0].message.content == expected["chat", 0].text
    assert timings["batch_size"] == 1, timings
    assert end["process_rss_gb"] <= warm["process_rss_gb"] + RSS_MARGIN_GB, (warm, end)
