"""Continuous batching and the prompt cache on the real embedded model: concurrent
requests decode together yet each gets exactly what it gets alone; a cancelled one
leaves the others alone; a full queue answers 429 with Retry-After and recovers; a
continued conversation reuses its cached prefix (openai SDK against a live server)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from api.app import create_app
from tests.helpers import LiveServer, wait_until
from workbench.config import Settings
from workbench.engine import Completion, Engine, GenerationRequest, Message, SamplingParams
from workbench.engine.models.embedded import EMBEDDED_IDS

F32 = EMBEDDED_IDS["f32"]
TOPICS = ["a cat", "the sea", "a robot", "winter", "a city", "music", "a garden", "the moon"]


def request(
    i: int, *, stop: tuple[str, ...] = (), seed: int | None = None, max_tokens: int = 24
) -> GenerationRequest:
    sampling = SamplingParams(temperature=0.8, seed=seed) if seed is not None else SamplingParams()
    return GenerationRequest(
        messages=(Message("user", f"Write two sentences about {TOPICS[i]}."),),
        model=F32,
        sampling=sampling,
        max_tokens=max_tokens,
        stop=stop,
        cache=False,
    )


def run_together(engine: Engine, requests: list[GenerationRequest]) -> list[Completion]:
    """Start every request at once, from its own thread; wait for all."""
    results: list[Any] = [None] * len(requests)
    start = threading.Barrier(len(requests))

    def work(i: int) -> None:
        start.wait()
        try:
            results[i] = engine.generate(requests[i])
        except Exception as exc:  # reported below, with its index
            results[i] = exc

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(requests))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    errors = [(i, r) for i, r in enumerate(results) if isinstance(r, Exception) or r is None]
    assert not errors, errors
    return results


def test_eight_batched_streams_each_get_what_they_get_alone(engine: Engine) -> None:
    engine.load(F32)
    # Stop strings that cut some replies short: words from the middle of their greedy text.
    plain = [engine.generate(request(i)).text for i in range(8)]
    stops = [
        (plain[i].split()[len(plain[i].split()) // 2],) if i % 2 == 0 else ("zzz-never",) for i in range(8)
    ]
    requests = [
        request(i, stop=stops[i], seed=None if i < 4 else 1000 + i)  # 4 greedy, 4 seeded samplers
        for i in range(8)
    ]
    alone = [engine.generate(r) for r in requests]
    together = run_together(engine, requests)
    for i, (a, t) in enumerate(zip(alone, together, strict=True)):
        assert t.text == a.text, (i, a.text, t.text)
        assert (
            t.stats.finish_reason == a.stats.finish_reason and t.stats.stop_sequence == a.stats.stop_sequence
        )
        assert t.stats.seed == a.stats.seed
    assert any(a.stats.stop_sequence for a in alone), "no stop string ended a reply: the test needs one"
    # They really were decoded together.
    assert max(t.stats.batch_size for t in together) >= 4
    assert all(a.stats.batch_size == 1 for a in alone)
    assert wait_until(lambda: engine.active_streams == 0, timeout_s=60)


def test_cancelling_one_stream_leaves_the_others_untouched(engine: Engine) -> None:
    requests = [request(i, max_tokens=20) for i in range(4)]
    alone = [engine.generate(r).text for r in requests]
    streams: list[Iterator[Any]] = [engine.stream(r) for r in requests]
    texts = [""] * 4
    stats: list[Any] = [None] * 4

    def consume(i: int) -> None:
        for n, chunk in enumerate(streams[i]):
            texts[i] += chunk.text
            stats[i] = chunk.stats or stats[i]
            if i == 0 and n == 3:
                streams[0].close()  # the consumer leaves: the engine cancels it
                return

    threads = [threading.Thread(target=consume, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert texts[1:] == alone[1:]
    assert all(s is not None and s.finish_reason in ("length", "stop") for s in stats[1:])
    assert alone[0].startswith(texts[0]) and len(texts[0]) < len(alone[0])
    assert wait_until(lambda: engine.active_streams == 0, timeout_s=60)
    assert engine.queued_generations == 0


def test_a_cancelled_sequence_leaves_while_a_waiting_one_steps_the_batch(engine: Engine) -> None:
    """Two sequences decode (max_batch 2) while a third waits for a slot and steps the batch
    every round. Cancelled, the two must end at once: a cancel check behind their pending
    tokens was never reached, and they decoded to max_tokens for nobody. The worker's round
    is replayed in a fixed order on the engine thread (decoders first, then the waiting one),
    so the outcome does not depend on timing."""
    from workbench.engine.scheduler import ModelBatch, batched_chunks
    from workbench.engine.streams import CancelToken, StreamState

    forced = GenerationRequest(prompt="Once upon a time", max_tokens=200, ignore_eos=True)

    def scenario() -> list[list[Any]]:
        lm, _ = engine._load(F32)
        batch = ModelBatch(lm, engine.settings.with_(max_batch=2, prompt_cache_entries=0))
        states = [StreamState(cancel=CancelToken(), queued_at=time.perf_counter()) for _ in range(3)]
        streams = [batched_chunks(batch, forced, state) for state in states]
        got: list[list[Any]] = [[], [], []]

        def one_round() -> None:
            for stream, out in zip(streams, got, strict=True):
                if out and out[-1].stats is not None:
                    continue  # finished
                chunk = next(stream)
                if chunk is not None:
                    out.append(chunk)

        while min(len(got[0]), len(got[1])) < 3:  # both decoding; the third waits
            one_round()
        assert not got[2]
        states[0].cancel.cancel()
        states[1].cancel.cancel()
        for _ in range(6):
            one_round()
        for stream in streams:
            stream.close()
        batch.close()
        return got

    got = engine._worker.call(scenario)
    for out in got[:2]:
        assert out[-1].stats is not None and out[-1].stats.finish_reason == "cancelled", len(out)
        assert out[-1].stats.generation_tokens < 10
    assert got[2], "the waiting sequence got the freed slot"


@pytest.fixture(scope="module")
def small_queue(settings: Settings, engine: Engine) -> Iterator[tuple[str, Engine]]:
    """A server on its own engine that decodes 2 at a time and lets 1 more wait."""
    own = Engine(settings.with_(max_batch=2, max_queue=1))
    own.load(F32)
    with own, LiveServer(create_app(settings.with_(max_batch=2, max_queue=1), own, with_ui=False)) as server:
        yield server.url, own


def test_a_full_queue_answers_429_with_retry_after_and_recovers(small_queue: tuple[str, Engine]) -> None:
    url, own = small_queue
    client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0, timeout=120)
    messages = [{"role": "user", "content": "Count to fifty."}]
    leave = threading.Event()
    got: list[str] = []

    def hold() -> None:  # a streaming client that reads until told to leave
        # Forced to 2000 tokens: no holder can finish (and free a slot) before it is told to leave.
        stream = client.chat.completions.create(
            model=F32,
            messages=messages,
            max_tokens=2000,
            temperature=0,
            stream=True,
            extra_body={"ignore_eos": True},
        )
        with stream:
            for chunk in stream:
                got.append(chunk.id)
                if leave.is_set():
                    return

    # Three streams fill the engine (2 decoding + 1 waiting for a slot).
    holders = [threading.Thread(target=hold) for _ in range(3)]
    for t in holders:
        t.start()
    try:
        assert wait_until(lambda: own.queued_generations == 3 and len(got) > 4, timeout_s=60)
        extra = httpx.post(
            url + "/v1/chat/completions",
            json={"model": F32, "messages": messages, "max_tokens": 2},
            timeout=60,
        )
        assert extra.status_code == 429, extra.text
        assert extra.headers["retry-after"] == "1"
        error = extra.json()["error"]
        assert error["code"] == "queue_full" and "max_queue 1" in error["message"]
        with pytest.raises(openai.RateLimitError):
            client.chat.completions.create(model=F32, messages=messages, max_tokens=2)
    finally:
        leave.set()  # the clients leave: their generations are cancelled
        for t in holders:
            t.join(timeout=120)
    assert wait_until(lambda: own.queued_generations == 0 and own.active_streams == 0, timeout_s=30)
    again = client.chat.completions.create(model=F32, messages=messages, max_tokens=4)
    assert again.choices[0].message.content


def test_a_continued_conversation_reuses_its_cached_prefix(settings: Settings, engine: Engine) -> None:
    with LiveServer(create_app(settings, engine, with_ui=False)) as server:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
        history = [
            {"role": "system", "content": "You are a patient tutor who answers in full sentences. " * 8},
            {"role": "user", "content": "What is photosynthesis? Explain it simply."},
        ]
        first = client.chat.completions.create(model=F32, messages=history, max_tokens=24, temperature=0)
        history += [
            {"role": "assistant", "content": first.choices[0].message.content},
            {"role": "user", "content": "And why do plants need water for it?"},
        ]
        t0 = time.perf_counter()
        second = client.chat.completions.create(model=F32, messages=history, max_tokens=8, temperature=0)
        assert time.perf_counter() - t0 < 120
        cached = second.usage.prompt_tokens_details.cached_tokens
        # The whole first turn (system prompt, question, reply) came from the cache.
        assert cached >= first.usage.prompt_tokens, (cached, first.usage.prompt_tokens)
        assert cached < second.usage.prompt_tokens
        assert second.model_extra["timings"]["cached_tokens"] == cached
        assert second.model_extra["timings"]["cache_miss"] is None  # all the cache knew of it
        # A request that asks for no cache, through the engine, reports none.
        req = GenerationRequest(
            messages=tuple(Message(m["role"], m["content"]) for m in history),
            model=F32,
            max_tokens=2,
            cache=False,
        )
        uncached = engine.generate(req).stats
        assert uncached.cached_tokens == 0 and uncached.cache_miss is not None
        assert uncached.cache_miss.reason == "off"


def test_an_idle_batch_gathers_arrivals_before_its_first_step(engine: Engine) -> None:
    """Requests that reach an empty batch a moment apart are prefilled in one step: the first
    waits (up to GATHER_SHARE of its prompt's measured time) for the others, and a sequence
    added while others decode never waits. Replayed on the engine thread; the only time that
    counts is the window, measured on this machine."""
    from workbench.engine.scheduler import GATHER_SHARE, LONE_GATHERS, ModelBatch, batched_chunks
    from workbench.engine.streams import CancelToken, StreamState

    # ~160 tokens: the window (5% of their measured prefill) is tens of ms here, a few ms on a
    # 3x faster machine, against the microseconds between a sequence's arrival and the check.
    ask = GenerationRequest(prompt=" ".join(["Once upon a time"] * 40), max_tokens=3, ignore_eos=True)

    def state() -> StreamState:
        return StreamState(cancel=CancelToken(), queued_at=time.perf_counter())

    def drain(*streams: Iterator[Any]) -> None:
        """Round-robin to their ends, as the worker steps them."""
        live = list(streams)
        while live:
            for stream in list(live):
                if next(stream, StopIteration) is StopIteration:
                    live.remove(stream)

    def scenario() -> dict[str, Any]:
        lm, _ = engine._load(F32)
        batch = ModelBatch(lm, engine.settings.with_(prompt_cache_entries=0))
        seen: dict[str, Any] = {"unmeasured": batch.budget.token_s}
        list(batched_chunks(batch, ask, state()))  # measures the cost per prompt token
        a, b = batched_chunks(batch, ask, state()), batched_chunks(batch, ask, state())
        seen["first"] = next(a)
        (alone,) = batch.seqs.values()
        window = GATHER_SHARE * batch.budget.token_s * len(alone.ready.prompt)
        seen["held"] = not batch.can_step()  # alone in an empty batch, just now
        seen["second"] = next(b)  # arrives within the window
        start = time.perf_counter()
        while not batch.can_step():
            assert time.perf_counter() - start < 100 * window + 5, "the window never closed"
            time.sleep(window / 10)
        seen["rounds"] = 1
        while (first := next(a)) is None and seen["rounds"] < 50:  # the prompts' step(s)
            seen["rounds"] += 1
        seen["a_first"] = first
        seen["counts"] = sorted(s.timeline.count for s in batch.seqs.values())
        c = batched_chunks(batch, ask, state())
        seen["late"] = next(c)
        seen["late_held"] = batch._gathering()  # others decode: no waiting
        drain(a, b, c)
        for _ in range(LONE_GATHERS):  # one client at a time: each first step taken alone
            lone = batched_chunks(batch, ask, state())
            next(lone)
            seen.setdefault("lone_held", []).append(not batch.can_step())
            while not batch.can_step():
                time.sleep(window / 10)
            list(lone)
        lone = batched_chunks(batch, ask, state())
        next(lone)
        seen["after_lone"] = batch._gathering()
        missed = batched_chunks(batch, ask, state())  # sent with it: a burst after all
        seen["missed"] = next(missed)
        drain(lone, missed)
        seen["again"] = batch.lone
        batch.close()
        return seen

    seen = engine._worker.call(scenario)
    assert seen["unmeasured"] is None
    assert seen["first"] is None and seen["second"] is None and seen["late"] is None
    assert seen["held"], "the first arrival at an empty batch waits for others"
    assert seen["a_first"] is not None and seen["a_first"].token_id is not None
    assert seen["counts"] == [1, 1], "both prompts were processed in the same step"
    assert not seen["late_held"]
    assert seen["lone_held"] == [True] * LONE_GATHERS
    assert not seen["after_lone"], "after LONE_GATHERS lone first steps an empty batch no longer waits"
    assert seen["again"] == 0, "a request arriving during a lone first prompt turns gathering back on"
