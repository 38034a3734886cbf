"""The load tool: C streaming openai-SDK clients of any OpenAI-compatible server, R requests in all,
timed as each client sees them (TTFT, inter-token gaps, aggregate tok/s). No Engine, no mlx."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

# Common English words, each one token (with its leading space) in the usual BPE
# vocabularies, so N words make a prompt of about N tokens on any server.
_WORD_LIST = """the of and to in is was for on are with as be at by this had not but from or have one
    what were all when we there can an your which their said if do will each about how up out
    them then she many some so these would other into has more her two like him see time could
    no make than first been its who now people my made over did down only way find use may water
    long little very after words called just where most know get through back much before go good
    new write our used me man too any day same right look think also around another came come work
    three word must because does part even place well such here take why help put different away
    again off went old number great tell men say small every found still between name should home
    big give air line set own under read last never us left end along while might next sound below
    saw something thought both few those always looked show large often together asked house world
    going want school important until form food keep children feet land side without boy once animal
    life enough took sometimes four head above kind began almost live page got earth need far hand
    high year mother light parts country father let night following picture being study second eyes
    soon times story boys since white days ever paper hard near sentence better best across during
    today others however sure means knew try told young miles sun ways thing whole hear example heard
    several change answer room sea against top turned learn point city play toward five using himself
    usually"""
WORDS: tuple[str, ...] = tuple(_WORD_LIST.split())
# What each request asks: `free` a raw-prompt completion of fresh words (as before); `copy` and
# `extract` a chat turn that repeats its input (rewrite it exactly; JSON records of its fields),
# the requests agents and editors make and prompt-lookup speculation drafts from.
WORKLOADS: tuple[str, ...] = ("free", "copy", "extract")


def workload_messages(workload: str, words: int, rng: random.Random) -> list[dict[str, str]]:
    """The chat turn of a `copy` or `extract` request, its given text about `words` words."""
    if workload == "copy":
        text = word_text(words, rng)
        return [{"role": "user", "content": f"Copy this text exactly, word for word:\n\n{text}"}]
    records = [
        f"Name: {rng.choice(WORDS).title()} {rng.choice(WORDS).title()}. City: {rng.choice(WORDS).title()}. "
        f"Order: {rng.randrange(100, 999)}."
        for _ in range(max(1, words // 9))
    ]
    ask = 'Return one JSON object per line, {"name", "city", "order"}, for each record:\n\n'
    return [{"role": "user", "content": ask + "\n".join(records)}]


def word_text(words: int, rng: random.Random) -> str:
    """`words` words drawn from WORDS: about that many tokens on most servers."""
    return " ".join(rng.choice(WORDS) for _ in range(max(words, 1)))


def api_root(base_url: str) -> str:
    """The server root of an OpenAI base URL (http://host:port/v1 -> http://host:port)."""
    url = base_url.rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


def fetch_health(base_url: str, timeout_s: float = 5.0) -> dict[str, Any] | None:
    """The server's /health JSON, or None when it has none (or does not answer)."""
    import httpx

    try:
        response = httpx.get(f"{api_root(base_url)}/health", timeout=timeout_s)
        body = response.json()
    except (httpx.HTTPError, ValueError):
        return None
    return body if isinstance(body, dict) else None


def make_client(base_url: str, api_key: str | None, timeout_s: float) -> Any:
    """One openai client, shared by every thread (its HTTP pool is thread-safe); no retries,
    so a failure is counted, not hidden."""
    import openai

    return openai.OpenAI(base_url=base_url, api_key=api_key or "unused", max_retries=0, timeout=timeout_s)


def describe_error(exc: BaseException) -> str:
    """'Type: message', with the underlying cause the SDK wraps ('Connection error.' alone says little)."""
    text = f"{type(exc).__name__}: {str(exc).strip()}"
    if exc.__cause__ is not None:
        text += f" ({type(exc.__cause__).__name__}: {str(exc.__cause__).strip()})"
    return text[:300]


@dataclass
class StreamTiming:
    """One streamed request as its client saw it."""

    ttft_s: float | None = None
    times: list[float] = field(default_factory=list)  # when each text chunk came (perf_counter)
    chunks: int = 0
    text: str = ""
    total_s: float | None = None
    prompt_tokens: int | None = None  # server-reported (usage), when it sends usage
    cached_tokens: int | None = None
    usage_completion_tokens: int | None = None
    speculation: dict[str, int] | None = None  # our server's timings: drafted / accepted tokens, steps
    error: str | None = None

    @property
    def gaps_s(self) -> list[float]:
        """Seconds between successive text chunks."""
        return [b - a for a, b in zip(self.times, self.times[1:], strict=False)]

    @property
    def completion_tokens(self) -> int:
        """Server-reported when available; else text chunks (one token each on most servers)."""
        return self.usage_completion_tokens if self.usage_completion_tokens is not None else self.chunks


def _chunk_text(choice: Any) -> str:
    delta = getattr(choice, "delta", None)  # chat.completion.chunk
    if delta is not None:
        return delta.content or ""
    return getattr(choice, "text", None) or ""  # text_completion


def timed_stream(
    create: Callable[..., Any], deadline: float, timing: StreamTiming | None = None, **kwargs: Any
) -> StreamTiming:
    """Send one streaming request (`create` is client.completions.create or
    client.chat.completions.create) and time it into `timing` (a new one by default: pass one
    to watch it fill from another thread); errors are recorded, never raised.

    The request is abandoned at `deadline` (time.perf_counter() clock): the HTTP timeout
    bounds each read, and the loop checks the deadline between chunks.
    """
    timing = timing if timing is not None else StreamTiming()
    start = time.perf_counter()
    last: float | None = None
    parts: list[str] = []
    stream = None
    try:
        remaining = deadline - start
        if remaining <= 0:
            raise TimeoutError("overall timeout reached before the request was sent")
        stream = create(stream=True, stream_options={"include_usage": True}, timeout=remaining, **kwargs)
        for chunk in stream:
            now = time.perf_counter()
            for choice in chunk.choices or ():
                if text := _chunk_text(choice):
                    parts.append(text)
                    timing.times.append(now)
                    timing.chunks += 1
                    if last is None:
                        timing.ttft_s = now - start
                    last = now
            extra = getattr(chunk, "model_extra", None) or {}
            if isinstance(extra.get("timings"), dict) and extra["timings"].get("speculative"):
                keys = ("draft_tokens", "accepted_tokens", "decode_steps", "generation_tokens")
                timing.speculation = {k: int(extra["timings"].get(k) or 0) for k in keys}
            usage = getattr(chunk, "usage", None)
            if usage is not None:
                timing.prompt_tokens = usage.prompt_tokens
                timing.usage_completion_tokens = usage.completion_tokens
                details = getattr(usage, "prompt_tokens_details", None)
                cached = getattr(details, "cached_tokens", None) if details is not None else None
                timing.cached_tokens = int(cached) if cached is not None else None
            if now > deadline:
                raise TimeoutError(f"request still streaming after {now - start:.1f}s (timeout)")
        timing.total_s = time.perf_counter() - start
    except Exception as exc:  # any failure is a counted error; the run goes on
        timing.error = describe_error(exc)
    finally:
        if stream is not None:
            stream.close()
    timing.text = "".join(parts)
    return timing


def _percentile(values: Iterable[float], q: float) -> float | None:
    import numpy as np

    array = np.asarray(list(values), dtype=float)
    return float(np.percentile(array, q)) if array.size else None


def _mean(values: list[int]) -> float | None:
    return sum(values) / len(values) if values else None


@dataclass
class LoadResult:
    """One load-test run: its settings, every request's timing, and the aggregates."""

    base_url: str
    model: str
    concurrency: int
    requests: int
    prompt_tokens: int
    max_tokens: int
    ignore_eos: bool
    seed: int
    wall_s: float
    timings: list[StreamTiming]
    workload: str = "free"
    speculative: str | None = None

    @property
    def ok(self) -> list[StreamTiming]:
        return [t for t in self.timings if t.error is None]

    @property
    def errors(self) -> int:
        return len(self.timings) - len(self.ok)

    @property
    def completion_tokens(self) -> int:
        return sum(t.completion_tokens for t in self.ok)

    def figures(self) -> dict[str, Any]:
        """The aggregate columns of a LOAD_COLUMNS row."""
        ok = self.ok
        ttfts = [t.ttft_s for t in ok if t.ttft_s is not None]
        gaps = [g for t in ok for g in t.gaps_s]
        wall = max(self.wall_s, 1e-9)
        first = next((t.error for t in self.timings if t.error is not None), None)
        spec = [t.speculation for t in ok if t.speculation]
        drafted, steps = (sum(s[k] for s in spec) for k in ("draft_tokens", "decode_steps"))
        return {
            "acceptance_rate": sum(s["accepted_tokens"] for s in spec) / drafted if drafted else None,
            "tokens_per_step": sum(s["generation_tokens"] for s in spec) / steps if steps else None,
            "prompt_tokens_reported": _mean([t.prompt_tokens for t in ok if t.prompt_tokens is not None]),
            "cached_tokens_reported": _mean([t.cached_tokens for t in ok if t.cached_tokens is not None]),
            "completed": len(ok),
            "errors": self.errors,
            "first_error": first,
            "wall_s": self.wall_s,
            "completion_tokens": self.completion_tokens,
            "aggregate_tps": self.completion_tokens / wall,
            "requests_per_s": len(ok) / wall,
            "ttft_p50_s": _percentile(ttfts, 50),
            "ttft_p95_s": _percentile(ttfts, 95),
            "itl_p50_s": _percentile(gaps, 50),
            "itl_p95_s": _percentile(gaps, 95),
        }

    def row(self, provenance: Mapping[str, Any], server_label: str) -> dict[str, Any]:
        """This run as one LOAD_COLUMNS row (keys exactly reports.schema.LOAD_FIELDS)."""
        from workbench.reports.schema import LOAD_FIELDS

        values = {
            **provenance,
            "server_label": server_label,
            "base_url": self.base_url,
            "model": self.model,
            "concurrency": self.concurrency,
            "requests": self.requests,
            "prompt_tokens": self.prompt_tokens,
            "max_tokens": self.max_tokens,
            "ignore_eos": self.ignore_eos,
            "seed": self.seed,
            "workload": self.workload,
            "speculative": self.speculative,
            **self.figures(),
        }
        return {k: values[k] for k in LOAD_FIELDS}


def request_body(
    client: Any, workload: str, words: int, rng: random.Random, ignore_eos: bool, speculative: str | None
) -> tuple[Callable[..., Any], dict[str, Any]]:
    """The SDK call and the body of one load-tool request (temperature, tokens and model apart)."""
    extra: dict[str, Any] = {"ignore_eos": True} if ignore_eos and workload == "free" else {}
    if speculative:
        extra["speculative"] = speculative
    if workload == "free":
        return client.completions.create, {"prompt": word_text(words, rng), "extra_body": extra or None}
    messages = workload_messages(workload, words, rng)
    return client.chat.completions.create, {"messages": messages, "extra_body": extra or None}


def run_load(
    base_url: str,
    model: str,
    concurrency: int,
    requests: int,
    prompt_tokens: int,
    max_tokens: int,
    api_key: str | None = None,
    timeout_s: float = 120.0,
    overall_timeout_s: float = 600.0,
    seed: int = 0,
    ignore_eos: bool = True,
    warmup: int = 1,
    on_progress: Callable[[int, int, str], None] | None = None,
    workload: str = "free",
    speculative: str | None = None,
) -> LoadResult:
    """Stream `requests` raw-prompt completions from `base_url`, `concurrency` in flight.

    Each prompt is `prompt_tokens` words of WORDS (exact in words, about that many
    tokens: servers tokenize differently, hence the server-reported mean in the row),
    drawn afresh for every request of every run. temperature 0, `max_tokens` each, and
    `ignore_eos` sent as an extra field (our server honours it, mlx_lm.server ignores
    unknown fields; pass False for a server that rejects it). `warmup` untimed requests
    go first, one at a time. No request outlives `timeout_s`, and nothing is sent after
    `overall_timeout_s` (unsent requests count as errors), so the run ends by itself.
    `workload` copy / extract send chat turns instead (WORKLOADS; end-of-sequence ends them);
    `speculative` (a mode name) is sent as our server's `speculative` extension field.
    """
    if workload not in WORKLOADS:
        raise ValueError(f"workload must be one of {', '.join(WORKLOADS)}, got {workload!r}")
    if min(concurrency, requests, prompt_tokens, max_tokens) < 1:
        raise ValueError("concurrency, requests, prompt tokens and max tokens must be >= 1")
    if warmup < 0:
        raise ValueError("warmup must be >= 0")
    client = make_client(base_url, api_key, timeout_s)
    salt = random.SystemRandom().getrandbits(64)  # fresh prompts per run: no cache reuse across runs

    def send(index: int, deadline: float, tokens: int) -> StreamTiming:
        rng = random.Random(f"{seed}:{salt}:{index}")
        create, body = request_body(client, workload, prompt_tokens, rng, ignore_eos, speculative)
        until = min(deadline, time.perf_counter() + timeout_s)
        return timed_stream(create, until, model=model, max_tokens=tokens, temperature=0, **body)

    begin = time.perf_counter()
    for w in range(warmup):
        send(-1 - w, begin + overall_timeout_s, min(max_tokens, 4))
    start = time.perf_counter()
    deadline = start + overall_timeout_s
    done = 0
    lock = threading.Lock()

    def one(index: int) -> tuple[StreamTiming, float]:
        nonlocal done
        timing = send(index, deadline, max_tokens)
        ended = time.perf_counter()
        with lock:
            done += 1
            if on_progress is not None:
                on_progress(done, requests, f"c={concurrency}")
        return timing, ended

    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="loadtest") as pool:
        results = list(pool.map(one, range(requests)))
    ends = [ended for _, ended in results]
    return LoadResult(
        base_url=base_url,
        model=model,
        concurrency=concurrency,
        requests=requests,
        prompt_tokens=prompt_tokens,
        max_tokens=max_tokens,
        ignore_eos=ignore_eos,
        seed=seed,
        wall_s=max(ends) - start,
        timings=[timing for timing, _ in results],
        workload=workload,
        speculative=speculative,
    )
