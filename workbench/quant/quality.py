"""Quality of a variant against a reference, from engine.compare_next_tokens: perplexity, mean
KL divergence, top-1 agreement and the greedy divergence point, on the shipped evaluation
text (its sha256 goes with every result). Knows the Engine, not mlx."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from workbench.engine import CancelToken, Engine, GenerationRequest, InvalidRequestError, SamplingParams

EVAL_TEXT_PATH = Path(__file__).parent / "data" / "eval_text.txt"
# Raw-text openings (no chat template), so any model of the family can continue them.
DIVERGENCE_PROMPTS: tuple[str, ...] = (
    "The three primary colours of light are",
    "Once upon a time, in a small village by the sea,",
    "To sort a list of numbers in Python, you can",
    "The main causes of the First World War were",
    "Water boils at 100 degrees Celsius at sea level because",
    "Dear team, I am writing to let you know that",
    "The difference between weather and climate is",
    "Here is a recipe for a simple tomato soup:",
)
StepFn = Callable[[str], None]  # called after each unit of work, with what was done


@cache
def eval_text() -> str:
    """The fixed evaluation text (mixed prose, science, instructions, dialogue, code)."""
    return EVAL_TEXT_PATH.read_text(encoding="utf-8")


def eval_text_sha256() -> str:
    return hashlib.sha256(eval_text().encode("utf-8")).hexdigest()


def token_windows(ids: Sequence[int], eval_tokens: int, window: int) -> list[list[int]]:
    """The first `eval_tokens` ids cut into non-overlapping windows of `window` ids; a
    shorter tail is dropped (as mlx-lm's perplexity does), so every window is scored alike."""
    ids = list(ids[:eval_tokens])
    windows = [ids[i : i + window] for i in range(0, len(ids) - window + 1, window)]
    if not windows:
        raise InvalidRequestError(
            f"the evaluation text has {len(ids)} tokens, fewer than one window of {window}", "window"
        )
    return windows


@dataclass(frozen=True)
class QualityReport:
    """A variant against its reference. perplexity: exp(mean NLL of the true next token)
    over `eval_tokens` scored positions; kl_mean: mean KL(reference || variant) in nats;
    top1_agreement: share of positions where both pick the same next token;
    divergence_mean: mean index of the first greedy token that differs over the prompts,
    counting a continuation that never differs as `divergence_tokens`; identical_fraction:
    share of prompts whose whole continuation matches."""

    eval_tokens: int
    perplexity: float
    reference_perplexity: float
    kl_mean: float
    top1_agreement: float
    divergence_prompts: int
    divergence_tokens: int
    divergence_mean: float
    identical_fraction: float


def reference_continuations(
    engine: Engine, reference: str, prompts: Sequence[str], tokens: int, *, on_step: StepFn | None = None
) -> list[tuple[int, list[int]]]:
    """(prompt length, the prompt's ids followed by the reference's greedy continuation of
    `tokens` ids) per prompt; end-of-sequence is ignored, so all continue equally far."""
    windows = []
    for prompt in prompts:
        ids = engine.tokenize(prompt, reference)
        request = GenerationRequest(
            prompt_ids=tuple(ids),
            model=reference,
            sampling=SamplingParams(temperature=0.0),
            max_tokens=tokens,
            ignore_eos=True,
            cache=False,
        )
        windows.append((len(ids), [*ids, *engine.generate(request).token_ids]))
        if on_step:
            on_step("reference continuation")
    return windows


def measure_quality(
    engine: Engine,
    reference: str,
    model: str,
    windows: Sequence[Sequence[int]],
    continuations: Sequence[tuple[int, Sequence[int]]] = (),
    *,
    on_step: StepFn | None = None,
    cancel: CancelToken | None = None,
) -> QualityReport | None:
    """`model` against `reference` on token `windows` (token_windows of the evaluation
    text) and `continuations` ((prompt length, prompt + reference continuation) pairs).
    One engine call per window, so chats interleave and `cancel` stops between windows
    (None is returned then)."""
    nll: list[float] = []
    ref_nll: list[float] = []
    kl: list[float] = []
    agree = 0
    for ids in windows:
        if cancel is not None and cancel.cancelled:
            return None
        c = engine.compare_next_tokens(reference, model, ids)
        nll += c.nll
        ref_nll += c.reference_nll
        kl += c.kl
        agree += sum(a == b for a, b in zip(c.top1, c.reference_top1, strict=True))
        if on_step:
            on_step("quality window")
    firsts: list[int] = []
    length = 0
    for prompt_len, ids in continuations:
        if cancel is not None and cancel.cancelled:
            return None
        c = engine.compare_next_tokens(reference, model, ids)
        # Position p predicts token p + 1: the continuation's predictions start at prompt_len - 1.
        ours, theirs = c.top1[prompt_len - 1 :], c.reference_top1[prompt_len - 1 :]
        length = len(ours)
        firsts.append(next((i for i, (a, b) in enumerate(zip(ours, theirs, strict=True)) if a != b), length))
        if on_step:
            on_step("greedy divergence")
    n = len(nll)
    return QualityReport(
        eval_tokens=n,
        perplexity=math.exp(sum(nll) / n),
        reference_perplexity=math.exp(sum(ref_nll) / n),
        kl_mean=sum(kl) / n,
        top1_agreement=agree / n,
        divergence_prompts=len(firsts),
        divergence_tokens=length,
        divergence_mean=sum(firsts) / len(firsts) if firsts else math.nan,
        identical_fraction=sum(f == length for f in firsts) / len(firsts) if firsts else math.nan,
    )
