"""Reasoning on the engine: a model whose template has a thinking section (the embedded
weights under a Qwen3-style template, tests.helpers.write_thinking_model) has its thinking
split from its answer, counted, bounded by a budget (the end marker forced), skipped when asked
or when the reply is constrained; and the split itself across every chunk boundary."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import write_thinking_model
from workbench.engine import Constraint, Engine, GenerationRequest, Message, SamplingParams
from workbench.engine.models.embedded import EMBEDDED_IDS
from workbench.engine.reasoning import ReasoningSplit

ASK = (Message("user", "What is the capital of France?"),)
GREEDY = SamplingParams(temperature=0)


@pytest.fixture(scope="module")
def thinker(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    source = Path(engine.load(EMBEDDED_IDS["f32"]).path or "")
    folder = write_thinking_model(source, tmp_path_factory.mktemp("thinker") / "smollm2-thinking")
    info = engine.model_info(str(folder), scope="any")
    yield info.id
    engine.unload(info.id)
    shutil.rmtree(folder, ignore_errors=True)


def ask(engine: Engine, model: str, **fields: object) -> object:
    request = GenerationRequest(messages=ASK, model=model, sampling=GREEDY, ignore_eos=True, **fields)
    return engine.generate(request)


def test_a_budget_closes_the_thinking_and_the_answer_follows(engine: Engine, thinker: str) -> None:
    """The 135M model never closes its thinking itself: a budget of 6 ends it after exactly 6
    reasoning tokens (</think> forced), and the rest of the reply is the answer."""
    done = ask(engine, thinker, max_tokens=24, reasoning_budget=6)
    assert done.stats.reasoning_tokens == 6 and done.stats.generation_tokens == 24
    assert 16 in done.token_ids  # </think>, forced at the budget
    assert done.token_ids.index(16) == 6
    assert done.reasoning.strip() and done.text.strip()
    for marker in ("<think>", "</think>"):
        assert marker not in done.text and marker not in done.reasoning
    assert engine.model_info(thinker).reasoning is True


def test_without_a_budget_the_reply_is_all_reasoning(engine: Engine, thinker: str) -> None:
    done = ask(engine, thinker, max_tokens=10)
    assert done.finish_reason == "length" and done.stats.reasoning_tokens == 10
    assert done.text == "" and done.reasoning.strip()


def test_think_false_and_a_constraint_skip_the_section(engine: Engine, thinker: str) -> None:
    plain = ask(engine, thinker, max_tokens=8, think=False)
    assert plain.reasoning == "" and plain.stats.reasoning_tokens == 0 and plain.text.strip()
    fmt = Constraint.json_schema({"type": "object", "properties": {"city": {"type": "string"}}}, strict=True)
    shaped = engine.generate(
        GenerationRequest(messages=ASK, model=thinker, sampling=GREEDY, max_tokens=24, constraint=fmt)
    )
    assert shaped.reasoning == "" and isinstance(json.loads(shaped.text), dict)


def test_a_model_without_a_thinking_section_answers_plainly(engine: Engine) -> None:
    done = ask(engine, EMBEDDED_IDS["f32"], max_tokens=8, reasoning_budget=2)
    assert done.reasoning == "" and done.stats.reasoning_tokens == 0 and done.text
    assert engine.model_info(EMBEDDED_IDS["f32"]).reasoning is False


@pytest.mark.parametrize("opened", [True, False])
def test_the_split_holds_across_every_chunk_boundary(opened: bool) -> None:
    reply = ("" if opened else "\n<think>") + "first, the facts</think>\n\nParis is the capital."
    for size in range(1, 9):
        split = ReasoningSplit("<think>", "</think>", open=opened)
        reasoning, answer = "", ""
        for i in range(0, len(reply), size):
            r, a = split.push(reply[i : i + size])
            reasoning, answer = reasoning + r, answer + a
        r, a = split.flush()
        assert (reasoning + r, answer + a) == ("first, the facts", "Paris is the capital."), size
    split = ReasoningSplit("<think>", "</think>", open=False)
    assert split.push("Paris.") == ("", "Paris.")  # no section: all answer
    unclosed = ReasoningSplit("<think>", "</think>", open=True)
    assert unclosed.push("still thinking </thi") == ("still thinking ", "")
    assert unclosed.flush() == ("</thi", "")
