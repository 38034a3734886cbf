"""The long-arrival scenario: a long prompt arrives while streams decode; do the streams freeze
while the server processes it? Inter-token gaps before it arrives against gaps until its first
token. An HTTP client of any OpenAI-compatible server, like the load tool; no Engine, no mlx."""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from workbench.loadgen.loadtest import StreamTiming, _percentile, make_client, timed_stream, word_text

STEADY_TOKENS = 8  # each running stream has made this many tokens before the long prompt goes


@dataclass
class ArrivalResult:
    """One long-arrival run: the running streams, the long request, when it was sent."""

    base_url: str
    model: str
    streams: int
    long_prompt_tokens: int
    max_tokens: int
    running: list[StreamTiming]
    long: StreamTiming
    sent_at: float  # perf_counter clock, as the timings' chunk times

    def figures(self) -> dict[str, Any]:
        """Gaps of the running streams between chunks, before the long prompt was sent (steady)
        and those that end while it is processed (sent -> its first token, plus the gap that
        spans its first token)."""
        first = self.sent_at + (self.long.ttft_s or 0.0)
        steady, during, after = [], [], 0
        for t in self.running:
            for a, gap in zip(t.times, t.gaps_s, strict=False):  # each gap with when it began
                if a + gap <= self.sent_at:
                    steady.append(gap)
                elif a < first:
                    during.append(gap)
                else:
                    after += 1
        p50 = _percentile(steady, 50)
        p95 = _percentile(during, 95)
        errors = [t.error for t in [*self.running, self.long] if t.error]
        return {
            "long_ttft_s": self.long.ttft_s,
            "long_prompt_tokens_reported": self.long.prompt_tokens,
            "itl_steady_p50_s": p50,
            "itl_during_p95_s": p95,
            "itl_during_max_s": max(during) if during else None,
            "during_gaps": len(during),
            "after_gaps": after,
            "freeze_ratio": p95 / p50 if p50 and p95 is not None else None,
            "errors": len(errors),
            "first_error": errors[0] if errors else None,
        }

    def row(self, provenance: Mapping[str, Any], server_label: str) -> dict[str, Any]:
        """This run as one ARRIVAL_COLUMNS row (keys exactly reports.schema.ARRIVAL_FIELDS)."""
        from workbench.reports.schema import ARRIVAL_FIELDS

        values = {
            **provenance,
            "server_label": server_label,
            "base_url": self.base_url,
            "model": self.model,
            "streams": self.streams,
            "long_prompt_tokens": self.long_prompt_tokens,
            "max_tokens": self.max_tokens,
            **self.figures(),
        }
        return {k: values[k] for k in ARRIVAL_FIELDS}


def run_long_arrival(
    base_url: str,
    model: str,
    streams: int = 4,
    long_prompt_tokens: int = 4096,
    max_tokens: int = 256,
    api_key: str | None = None,
    timeout_s: float = 120.0,
    overall_timeout_s: float = 600.0,
    seed: int = 0,
) -> ArrivalResult:
    """`streams` streamed completions (fresh words, greedy, `max_tokens` each, ignore_eos asked)
    decode; once each has made STEADY_TOKENS tokens, one more request arrives with a prompt of
    `long_prompt_tokens` words and max_tokens 4. Ends by itself: every request has its timeout
    and the run `overall_timeout_s`."""
    if min(streams, long_prompt_tokens, max_tokens) < 1:
        raise ValueError("streams, long prompt tokens and max tokens must be >= 1")
    client = make_client(base_url, api_key, timeout_s)
    rng = random.Random(f"{seed}:{random.SystemRandom().getrandbits(64)}")
    deadline = time.perf_counter() + overall_timeout_s
    running = [StreamTiming() for _ in range(streams)]
    prompts = [word_text(128, rng) for _ in range(streams)]
    long_prompt = word_text(long_prompt_tokens, rng)

    def stream(i: int) -> None:
        until = min(deadline, time.perf_counter() + timeout_s)
        body = {"prompt": prompts[i], "max_tokens": max_tokens, "extra_body": {"ignore_eos": True}}
        timed_stream(client.completions.create, until, running[i], model=model, temperature=0, **body)

    with ThreadPoolExecutor(max_workers=streams, thread_name_prefix="long-arrival") as pool:
        futures = [pool.submit(stream, i) for i in range(streams)]
        # Until every stream is decoding (or has ended).
        while time.perf_counter() < deadline and not all(
            t.chunks >= STEADY_TOKENS or t.error is not None or f.done()
            for t, f in zip(running, futures, strict=True)
        ):
            time.sleep(0.02)
        sent_at = time.perf_counter()
        until = min(deadline, sent_at + timeout_s)
        long = timed_stream(
            client.completions.create, until, model=model, prompt=long_prompt, max_tokens=4, temperature=0
        )
        for f in futures:
            f.result()
    return ArrivalResult(base_url, model, streams, long_prompt_tokens, max_tokens, running, long, sent_at)
