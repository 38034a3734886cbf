"""Continuous batching on the engine thread (one mlx-lm BatchGenerator per loaded model, each
generation a sequence with its own sampling, stops and stats) and the cross-request prompt cache."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import mlx.core as mx
from mlx_lm.generate import BatchGenerator, StopSequences

from workbench.config import Settings
from workbench.engine import memory
from workbench.engine.cache_miss import CacheMiss
from workbench.engine.decode_threads import DecodeThreads
from workbench.engine.disk_cache import DiskTier
from workbench.engine.generation import (
    GB,
    Prepared,
    ReplyLimits,
    Timeline,
    final_chunk,
    prepare,
)
from workbench.engine.models.registry import LoadedModel
from workbench.engine.prefill_budget import PrefillBudget
from workbench.engine.prompt_cache import ExplainedPromptCache, PromptStore
from workbench.engine.reply_text import ReplyText
from workbench.engine.sampling import token_logprob
from workbench.engine.streams import StreamState
from workbench.engine.types import Chunk, FinishReason, GenerationRequest

# An idle batch holds its first step for requests arriving together (a burst of clients, the
# next wave of a closed loop), at most this share of the measured time its prompts will take;
# not after LONE_GATHERS holds in a row caught nobody (one client at a time), until a burst is seen.
GATHER_SHARE = 0.05
LONE_GATHERS = 3


def _greedy(logprobs: Any) -> Any:
    return mx.argmax(logprobs, axis=-1)


@dataclass(eq=False)
class _Seq:
    """One generation in a batch: its request, what it has produced, its timings."""

    uid: int
    request: GenerationRequest
    ready: Prepared
    state: StreamState
    reply: ReplyText
    timeline: Timeline
    load_s: float | None
    cached: int
    miss: CacheMiss | None
    pending: deque[Chunk] = field(default_factory=deque)
    batch_size: int = 1
    kv_bytes: int = 0
    finished: bool = False
    error: BaseException | None = None


class ModelBatch:
    """The running batch and the prompt cache of one loaded model (engine thread only)."""

    def __init__(
        self,
        lm: LoadedModel,
        settings: Settings,
        disk: DiskTier | None = None,
        threads: DecodeThreads | None = None,
        gather: bool = True,
    ) -> None:
        self.lm = lm
        self.disk = disk
        self.threads = threads or DecodeThreads(None, "auto")
        self.gather = gather  # off on a distributed engine: ranks would time it differently
        self.idle_since: float | None = None  # the first arrival at an empty batch, until it steps
        self.lone = 0  # first steps in a row that an empty batch took with one sequence
        self.burst = (0.0, 0.0)  # when the first arrival at an empty batch was queued, its window
        self.max_batch = settings.max_batch
        # Prompt tokens per sequence per step. On the CPU backend attention over a long context
        # costs most (a 256-token chunk at depth 3840 took 5.1 s, at depth 0 0.9 s), and small
        # chunks both free the running streams sooner and process the whole prompt faster.
        auto = 256 if mx.default_device() == mx.cpu else 2048  # mlx-lm's default
        self.prefill_step = settings.prefill_step or auto
        self.budget = PrefillBudget(self.prefill_step, settings.prefill_share)
        self.limits = ReplyLimits.of(settings)
        self.seqs: dict[int, _Seq] = {}
        self.gen = self._new_generator()
        self.cache = (
            ExplainedPromptCache(settings.prompt_cache_entries, int(settings.prompt_cache_gb * GB))
            if settings.prompt_cache_entries > 0
            else None
        )

    def _new_generator(self) -> BatchGenerator:
        return BatchGenerator(
            self.lm.model,
            completion_batch_size=self.max_batch,
            prefill_batch_size=self.max_batch,
            prefill_step_size=self.prefill_step,
        )

    # ---- sequences in and out ------------------------------------------------
    def add(self, request: GenerationRequest, state: StreamState, load_s: float | None) -> _Seq:
        timeline = Timeline()
        ready = prepare(self.lm, request, self.limits)
        if state.started_idle:
            memory.reset_peak()
        prompt = ready.prompt
        if not self.seqs:
            self.idle_since, self.burst = time.perf_counter(), (state.queued_at, self._window([len(prompt)]))
        elif state.queued_at - self.burst[0] <= self.burst[1]:
            self.lone = 0  # sent with the first one: a burst, gathered or not
        store = self.store(request)
        cache, cached, miss = store.reuse(prompt) if store else (None, 0, CacheMiss("off"))
        rest = prompt[cached:]
        sampler = _greedy if request.sampling.greedy and ready.seed is None else ready.sampler
        (uid,) = self.gen.insert(
            [rest],
            max_tokens=[ready.max_tokens],
            caches=[cache],
            all_tokens=[prompt[:cached]],
            samplers=[sampler],
            logits_processors=[ready.processors],
            stop_sequences=[StopSequences([[t] for t in sorted(ready.eos)])],
        )
        seq = _Seq(
            uid=uid,
            request=request,
            ready=ready,
            state=state,
            reply=ReplyText(self.lm.tokenizer, request.stop, ready.thinking, ready.calls(request)),
            timeline=timeline,
            load_s=load_s,
            cached=cached,
            miss=miss,
        )
        self.seqs[uid] = seq
        return seq

    def can_step(self) -> bool:
        """Every decoding sequence has handed over its tokens (the batch is not ahead), and an
        idle batch is not gathering arrivals."""
        return all(not s.pending for s in self.seqs.values() if s.timeline.count) and not self._gathering()

    def _gathering(self) -> bool:
        """Sequences added to an empty batch wait, before their first step, up to GATHER_SHARE of
        the time their prompts will take (the last measured cost per prompt token), so requests
        sent together are prefilled in one step: one at once and the rest a millisecond later
        took 0.43 s + 2.7 s here, eight together 2.4 s. Never while anything decodes; a long
        prompt counts one chunk (its first step), so it waits for its first chunk's 5% only."""
        if self.idle_since is None or not self.gather or self.budget.token_s is None:
            return False
        if self.lone >= LONE_GATHERS:
            return False
        if len(self.seqs) >= self.max_batch:
            return False
        uncached = [len(s.ready.prompt) - s.cached for s in self.seqs.values()]
        return time.perf_counter() - self.idle_since < self._window(uncached)

    def _window(self, lengths: list[int]) -> float:
        """GATHER_SHARE of the measured time of these prompts' first step (one chunk each)."""
        tokens = sum(min(n, self.prefill_step) for n in lengths)
        return GATHER_SHARE * tokens * (self.budget.token_s or 0.0)

    def step(self) -> None:
        """One batch step: a token for every decoding sequence, a prompt chunk for new ones
        (sized by the PrefillBudget while others decode)."""
        decoding = sum(1 for s in self.seqs.values() if s.timeline.count)
        prompts = [len(s.ready.prompt) - s.cached for s in self.seqs.values() if not s.timeline.count]
        self.gen.prefill_step_size = self.budget.size(decoding, prompts)
        if self.idle_since is not None:
            self.lone = self.lone + 1 if len(self.seqs) == 1 else 0
            self.idle_since = None
        self.threads.before(self.lm.entry.id, decoding, bool(prompts))
        try:
            start = time.perf_counter()
            with self.gen.stats() as work:
                _, responses = self.gen.next()
            self.threads.after(time.perf_counter() - start)
            self.budget.observe(work.prompt_tokens, work.prompt_time, work.generation_steps, work.decode_time)
        except Exception as exc:  # the batch's state is unknown now: fail its sequences, start afresh
            failed = list(self.seqs.values())
            self.seqs.clear()
            self.gen.close()
            self.gen = self._new_generator()
            for seq in failed:
                seq.error = exc
            self.threads.rest()
            return
        size = len(responses)
        stopped: list[_Seq] = []
        for r in responses:
            seq = self.seqs.get(r.uid)
            if seq is None:
                continue
            seq.batch_size = max(seq.batch_size, size)
            seq.timeline.token()
            if r.finish_reason == "stop":  # an end-of-sequence token: counted, not shown
                self._remember(seq, r.all_tokens, r.prompt_cache)
                self._finish(seq, "stop")
                continue
            text, reasoning, calls = seq.reply.push(r.token)
            top = seq.request.logprobs
            logprob = token_logprob(self.lm.tokenizer, r.token, r.logprobs, top) if top is not None else None
            chunk = Chunk(text=text, token_id=r.token, logprob=logprob, reasoning=reasoning, calls=calls)
            seq.pending.append(chunk)
            if seq.reply.stop_hit:
                stopped.append(seq)
            elif r.finish_reason == "length":
                self._remember(seq, r.all_tokens, r.prompt_cache)
                self._finish(seq, "length")
        if stopped:  # a stop string ended these: take them out of the batch
            caches = self.gen.remove([s.uid for s in stopped], return_prompt_caches=True)
            for seq in stopped:
                cache, tokens = caches.get(seq.uid, (None, None))
                self._remember(seq, tokens, cache)
                self._finish(seq, "stop")
        if not self.seqs:
            self.threads.rest()

    def cancel(self, seq: _Seq) -> None:
        """Take `seq` out of the batch and end it as cancelled."""
        if seq.finished:
            return
        self.gen.remove([seq.uid])
        self._finish(seq, "cancelled")
        if not self.seqs:
            self.threads.rest()

    def store(self, request: GenerationRequest, key: str | None = None) -> PromptStore | None:
        """The prompt cache for `request` under `key` (default: the model id); None when off."""
        if self.cache is None or not request.cache:
            return None
        key = key or self.lm.entry.id
        where = f"{key}@{self.lm.entry.location}"
        return PromptStore(self.cache, key, self.lm.tokenizer.decode, self.disk, where)

    def _remember(self, seq: _Seq, tokens: list[int] | None, cache: list[Any] | None) -> None:
        if cache:
            seq.kv_bytes = sum(c.nbytes for c in cache)
        store = self.store(seq.request)
        if store is not None and tokens and cache:
            store.keep(tokens, cache)

    def _finish(self, seq: _Seq, finish: FinishReason) -> None:
        chunk = final_chunk(
            self.lm.entry.id,
            seq.state,
            finish,
            seq.timeline,
            prompt_tokens=len(seq.ready.prompt),
            text=seq.reply,
            seed=seq.ready.seed,
            load_s=seq.load_s,
            cached=seq.cached,
            cache_miss=seq.miss,
            batch_size=seq.batch_size,
            reasoning_tokens=seq.ready.reasoning_tokens(),
            kv_bytes=seq.kv_bytes,
        )
        seq.pending.append(chunk)
        seq.finished = True
        self.seqs.pop(seq.uid, None)

    def close(self) -> None:
        self.gen.close()


def batched_chunks(
    batch: ModelBatch, request: GenerationRequest, state: StreamState, *, load_s: float | None = None
) -> Iterator[Chunk | None]:
    """`request` as a sequence of `batch`: its chunks as they come, None while it has
    nothing yet (the worker then steps the other streams). Closing it early cancels."""
    seq = batch.add(request, state, load_s)
    try:
        # One round before the first step: requests that arrived together (a benchmark's
        # batch, a burst of clients) are all added by then, and prefill in one step.
        yield None
        while True:
            # Cancellation first: while another sequence steps the batch every round (one
            # waiting for a slot does), this one always has a token pending, and a check
            # behind the pending tokens was never reached (it decoded to max_tokens unread).
            if state.cancel.cancelled and not seq.finished:
                batch.cancel(seq)
            if seq.pending:
                yield seq.pending.popleft()
                continue
            if seq.finished:
                return
            if seq.error is not None:
                raise seq.error
            if batch.can_step():
                batch.step()
                if seq.pending or seq.finished or seq.error is not None:
                    continue
            yield None
    finally:
        if not seq.finished and seq.error is None:
            batch.cancel(seq)
