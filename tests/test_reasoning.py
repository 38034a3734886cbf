"""Reasoning on the engine: a model whose template has a thinking section (the embedded
weights under a Qwen3-style template, tests.helpers.write_thinking_model) has its thinking
split from its answer, counted, bounded by a budget (the end marker forced), skipped when asked
or when the reply is constrained; and the split itself across every chunk boundary."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import anthropic
import openai
import pytest

from api.app import create_app
from tests.helpers import LiveServer, write_thinking_model
from workbench.config import Settings
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


# ---- on the wire --------------------------------------------------------------------
FORCED = {"ignore_eos": True}  # the 135M model: lengths forced, the budget closes the section


@pytest.fixture(scope="module")
def server(settings: Settings, engine: Engine, thinker: str) -> Iterator[LiveServer]:
    with LiveServer(create_app(settings, engine, with_ui=False)) as live:
        yield live


def test_chat_completions_give_reasoning_content_apart_streamed_or_not(
    server: LiveServer, thinker: str
) -> None:
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0, timeout=300)
    ask = {"model": thinker, "messages": [{"role": "user", "content": "What is the capital of France?"}]}
    body = {**ask, "max_tokens": 24, "temperature": 0, "extra_body": {**FORCED, "reasoning_budget": 6}}
    whole = client.chat.completions.create(**body)
    message = whole.choices[0].message
    thought = message.model_extra["reasoning_content"]
    assert thought.strip() and message.content.strip() and "</think>" not in message.content + thought
    assert whole.usage.completion_tokens_details.reasoning_tokens == 6
    parts = {"reasoning_content": "", "content": ""}
    for chunk in client.chat.completions.create(**body, stream=True):
        for choice in chunk.choices:
            parts["content"] += choice.delta.content or ""
            parts["reasoning_content"] += (choice.delta.model_extra or {}).get("reasoning_content") or ""
    assert parts == {"reasoning_content": thought, "content": message.content}
    skipped = client.chat.completions.create(**{**body, "reasoning_effort": "none"})
    assert "reasoning_content" not in (skipped.choices[0].message.model_extra or {})
    assert skipped.usage.completion_tokens_details.reasoning_tokens == 0
    with pytest.raises(openai.BadRequestError, match="reasoning_effort"):
        client.chat.completions.create(**{**body, "reasoning_effort": "extreme"})


def test_a_model_without_a_thinking_section_takes_any_effort(server: LiveServer) -> None:
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0, timeout=300)
    reply = client.chat.completions.create(
        model=EMBEDDED_IDS["f32"],
        messages=[{"role": "user", "content": "Hi"}],
        max_tokens=4,
        reasoning_effort="high",
    )
    assert reply.choices[0].message.content and "reasoning_content" not in (
        reply.choices[0].message.model_extra or {}
    )


def test_anthropic_thinking_blocks_bounded_by_budget_tokens(server: LiveServer, thinker: str) -> None:
    claude = anthropic.Anthropic(base_url=server.url, api_key="x", max_retries=0, timeout=300)
    ask = {
        "model": thinker,
        "max_tokens": 24,
        "messages": [{"role": "user", "content": "Capital of France?"}],
    }
    extra = {"extra_body": {**FORCED, "temperature": 0}}
    whole = claude.messages.create(**ask, thinking={"type": "enabled", "budget_tokens": 6}, **extra)
    assert [b.type for b in whole.content] == ["thinking", "text"] and whole.content[0].signature
    with claude.messages.stream(**ask, thinking={"type": "enabled", "budget_tokens": 6}, **extra) as stream:
        streamed = stream.get_final_message()
    assert [(b.type, getattr(b, "thinking", getattr(b, "text", None))) for b in streamed.content] == [
        (b.type, getattr(b, "thinking", getattr(b, "text", None))) for b in whole.content
    ]
    plain = claude.messages.create(**ask, thinking={"type": "disabled"}, **extra)
    assert [b.type for b in plain.content] == ["text"]


def test_responses_put_the_reasoning_in_its_own_item(server: LiveServer, thinker: str) -> None:
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0, timeout=300)
    ask = {"model": thinker, "input": "Capital of France?", "max_output_tokens": 24, "temperature": 0}
    body = {**ask, "extra_body": {**FORCED, "reasoning_budget": 6}}
    r = client.responses.create(**body)
    assert [o.type for o in r.output] == ["reasoning", "message"]
    assert r.output[0].content[0].text.strip() and r.output_text.strip()
    assert r.usage.output_tokens_details.reasoning_tokens == 6
    with client.responses.stream(**body) as stream:
        events = list(stream)
    thought = "".join(e.delta for e in events if e.type == "response.reasoning_text.delta")
    assert thought == r.output[0].content[0].text
    assert events[-1].response.output_text == r.output_text
    none = client.responses.create(**{**ask, "reasoning": {"effort": "none"}, "extra_body": FORCED})
    assert [o.type for o in none.output] == ["message"]
