"""Tool calling on the embedded model through the official openai and anthropic SDKs
against a live server: forced and named calls are valid calls whose arguments validate
against the tool's schema; streamed calls reassemble to the same call; tool results go
back through the template; bad tool requests get a clear 400."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import jsonschema
import openai
import pytest

from api.app import create_app
from tests.helpers import LiveServer
from workbench.config import Settings
from workbench.engine import Engine
from workbench.engine.structured.tools import CallSplitter, ToolSpec, parse_calls, tool_constraint

WEATHER = {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 40}, "unit": {"enum": ["celsius", "fahrenheit"]}},
    "required": ["city", "unit"],
}
ADD = {
    "type": "object",
    "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
    "required": ["a", "b"],
}
TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {"name": "get_weather", "description": "Weather now", "parameters": WEATHER},
    },
    {"type": "function", "function": {"name": "add", "description": "Add two integers", "parameters": ADD}},
]
SCHEMAS = {"get_weather": WEATHER, "add": ADD}
ASK = [{"role": "user", "content": "What is the weather in Paris, in celsius?"}]


@pytest.fixture(scope="module")
def server(settings: Settings, engine: Engine) -> Iterator[LiveServer]:
    with LiveServer(create_app(settings, engine, with_ui=False)) as live:
        yield live


@pytest.fixture(scope="module")
def client(server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0)


def _valid(name: str, arguments: str) -> None:
    jsonschema.validate(json.loads(arguments), SCHEMAS[name])


def test_required_tool_choice_yields_a_valid_call(client: openai.OpenAI) -> None:
    one = [TOOLS[0]]
    reply = client.chat.completions.create(
        model="default",
        messages=ASK,
        tools=one,
        tool_choice="required",
        temperature=0,  # type: ignore[arg-type]
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    calls = choice.message.tool_calls or []
    assert len(calls) >= 1 and calls[0].id.startswith("call_")
    for call in calls:
        assert call.type == "function" and call.function.name == "get_weather"  # type: ignore[union-attr]
        _valid("get_weather", call.function.arguments)  # type: ignore[union-attr]
    # Sampled, and with two tools to choose from: still valid calls, every time.
    for seed in range(3):
        sampled = client.chat.completions.create(
            model="default",
            messages=[{"role": "user", "content": "Add 2 and 3, then tell me the weather in Oslo."}],
            tools=TOOLS,  # type: ignore[arg-type]
            tool_choice="required",
            temperature=1.0,
            seed=seed,
            max_tokens=120,
        )
        made = sampled.choices[0].message.tool_calls or []
        assert sampled.choices[0].finish_reason == "tool_calls" and made, sampled
        for call in made:
            _valid(call.function.name, call.function.arguments)  # type: ignore[union-attr]
    # A named tool is the one called, even when the question is about the other.
    named = client.chat.completions.create(
        model="default",
        messages=ASK,
        tools=TOOLS,  # type: ignore[arg-type]
        tool_choice={"type": "function", "function": {"name": "add"}},
        parallel_tool_calls=False,
        temperature=0,
    )
    (call,) = named.choices[0].message.tool_calls or []
    assert call.function.name == "add"  # type: ignore[union-attr]
    _valid("add", call.function.arguments)  # type: ignore[union-attr]


def test_streamed_tool_call_deltas_reassemble_to_the_same_call(client: openai.OpenAI) -> None:
    ask: dict[str, Any] = {"model": "default", "messages": ASK, "tools": TOOLS, "tool_choice": "required"}
    whole = client.chat.completions.create(**ask, temperature=0)
    expected = [(c.function.name, c.function.arguments) for c in whole.choices[0].message.tool_calls or []]  # type: ignore[union-attr]
    calls: dict[int, dict[str, str]] = {}
    finish = None
    pieces = 0
    for chunk in client.chat.completions.create(**ask, temperature=0, stream=True):
        if not chunk.choices:
            continue
        for delta in chunk.choices[0].delta.tool_calls or []:
            entry = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
            entry["id"] += delta.id or ""
            if delta.function is not None:
                entry["name"] += delta.function.name or ""
                entry["arguments"] += delta.function.arguments or ""
                pieces += bool(delta.function.arguments)
        finish = chunk.choices[0].finish_reason or finish
    assert finish == "tool_calls"
    assert [(c["name"], c["arguments"]) for _, c in sorted(calls.items())] == expected
    assert all(c["id"].startswith("call_") for c in calls.values())
    assert pieces > 1  # the arguments arrived as they were generated, not in one piece
    # A stop string that cuts the call: every argument character so far arrives, and
    # finish_reason stays "stop" (not "tool_calls"), as in the non-stream reply.
    forced = {"type": "function", "function": {"name": "get_weather"}}
    cut = {**ask, "tool_choice": forced, "stop": ["celsius", "fahrenheit"], "temperature": 0}
    whole = client.chat.completions.create(**cut)
    assert whole.choices[0].finish_reason == "stop" and not whole.choices[0].message.tool_calls
    text = whole.choices[0].message.content or ""
    assert text.startswith('{"name": "get_weather", "arguments": {') and text.endswith('"unit": "')
    arguments, finish = "", None
    for chunk in client.chat.completions.create(**cut, stream=True):
        for delta in chunk.choices[0].delta.tool_calls or [] if chunk.choices else []:
            arguments += delta.function.arguments or "" if delta.function else ""
        finish = (chunk.choices[0].finish_reason if chunk.choices else None) or finish
    assert finish == "stop" and text == f'{{"name": "get_weather", "arguments": {arguments}'


def test_tool_results_go_back_and_auto_and_none_answer_in_text(client: openai.OpenAI) -> None:
    first = client.chat.completions.create(
        model="default",
        messages=ASK,
        tools=[TOOLS[0]],
        tool_choice="required",
        temperature=0,  # type: ignore[arg-type]
    )
    call = (first.choices[0].message.tool_calls or [])[0]
    history = [
        *ASK,
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "18 degrees celsius and sunny"},
    ]
    for choice in ("auto", "none"):
        reply = client.chat.completions.create(
            model="default",
            messages=history,
            tools=TOOLS,
            tool_choice=choice,
            temperature=0,
            max_tokens=40,  # type: ignore[arg-type]
        )
        message = reply.choices[0].message
        if choice == "none" or not message.tool_calls:
            assert message.content and reply.choices[0].finish_reason in ("stop", "length")
        else:  # auto may call again: then validly
            for again in message.tool_calls:
                _valid(again.function.name, again.function.arguments)  # type: ignore[union-attr]


def test_bad_tool_requests_get_a_clear_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="'nope' is not one of the tools"):
        client.chat.completions.create(
            model="default",
            messages=ASK,
            tools=TOOLS,  # type: ignore[arg-type]
            tool_choice={"type": "function", "function": {"name": "nope"}},
        )
    with pytest.raises(openai.BadRequestError, match="tool_choice: needs tools"):
        client.chat.completions.create(model="default", messages=ASK, tool_choice="required")
    with pytest.raises(openai.BadRequestError, match="tools"):
        bad = [{"type": "function", "function": {"name": "has space"}}]
        client.chat.completions.create(model="default", messages=ASK, tools=bad)  # type: ignore[arg-type]
    # A tool named like a mode: 'required' still means any tool; forcing it by name is a 400.
    named = [{"type": "function", "function": {"name": "required", "parameters": ADD}}, *TOOLS]
    with pytest.raises(openai.BadRequestError, match="'required' cannot be forced by name"):
        client.chat.completions.create(
            model="default",
            messages=ASK,
            tools=named,  # type: ignore[arg-type]
            tool_choice={"type": "function", "function": {"name": "required"}},
        )
    specs = [ToolSpec("required", "", ADD), ToolSpec("add", "", ADD)]
    assert "call_1" in tool_constraint(specs, "required", parallel=False).source


def test_anthropic_sdk_gets_tool_use_blocks(server: LiveServer) -> None:
    client = anthropic.Anthropic(base_url=server.url, api_key="x", max_retries=0)
    tools = [{"name": "get_weather", "description": "Weather now", "input_schema": WEATHER}]
    forced = {"type": "tool", "name": "get_weather"}
    args: dict[str, Any] = {
        "model": "default",
        "max_tokens": 80,
        "messages": ASK,
        "tools": tools,
        "tool_choice": forced,
        "extra_body": {"temperature": 0},
    }
    reply = client.messages.create(**args)
    assert reply.stop_reason == "tool_use"
    uses = [b for b in reply.content if b.type == "tool_use"]
    assert uses and uses[0].name == "get_weather" and uses[0].id.startswith("toolu_")
    jsonschema.validate(uses[0].input, WEATHER)
    with client.messages.stream(**args) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    assert [(b.name, b.input) for b in final.content if b.type == "tool_use"] == [
        (u.name, u.input) for u in uses
    ]
    # The result goes back as a tool_result block; the reply is text (tool_choice none).
    history = [
        *ASK,
        {"role": "assistant", "content": [u.model_dump() for u in uses]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": uses[0].id, "content": "18 C"}]},
    ]
    answer = client.messages.create(
        model="default",
        max_tokens=30,
        messages=history,
        tools=tools,
        tool_choice={"type": "none"},
        extra_body={"temperature": 0},  # type: ignore[arg-type]
    )
    assert answer.stop_reason in ("end_turn", "max_tokens") and answer.content[0].type == "text"
    counted = client.messages.count_tokens(model="default", messages=ASK, tools=tools)  # type: ignore[arg-type]
    assert counted.input_tokens > client.messages.count_tokens(model="default", messages=ASK).input_tokens  # type: ignore[arg-type]


def test_call_parsing_and_splitting_agree() -> None:
    tools = [ToolSpec("add", "", ADD), ToolSpec("get_weather", "", WEATHER)]
    text = (
        '{"name": "add", "arguments": {"a": 1, "b": 2}}\n'
        + '{"name": "get_weather", "arguments": {"city": "Rome"}}'
    )
    rest, calls = parse_calls(text, tools)
    assert rest == "" and [(c.name, c.arguments) for c in calls] == [
        ("add", '{"a": 1, "b": 2}'),
        ("get_weather", '{"city": "Rome"}'),
    ]
    for size in (1, 2, 5, 64):
        split = CallSplitter()
        events = [
            e for i in range(0, len(text), size) for e in split.feed(text[i : i + size])
        ] + split.finish()
        names = [e[2] for e in events if e[0] == "call"]
        args = ["".join(e[2] for e in events if e[0] == "args" and e[1] == k) for k in range(2)]
        assert names == ["add", "get_weather"] and args == [c.arguments for c in calls], size
    assert parse_calls("Plain words.", tools) == ("Plain words.", [])
    assert parse_calls('{"name": "add", "arguments": {"a": 1', tools)[1] == []  # cut short: text
    cut = '{"name": "add", "arguments": {"a": 12'
    for size in (1, 3, 64):
        split = CallSplitter()
        events = [e for i in range(0, len(cut), size) for e in split.feed(cut[i : i + size])]
        events += split.finish(complete=False)  # max_tokens or a stop string ended it
        assert "".join(e[2] for e in events if e[0] == "args") == '{"a": 12', size


def test_tools_and_a_reply_format_together_give_a_call_or_a_conforming_answer(client: openai.OpenAI) -> None:
    """OpenAI takes both (the Agents SDK sends them together): under `auto` a reply is calls or
    an answer that follows the format; under `required` it is calls."""
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    fmt = {"type": "json_schema", "json_schema": {"name": "final", "schema": schema, "strict": True}}
    for stream in (False, True):
        body = {"model": "default", "messages": ASK, "tools": TOOLS, "response_format": fmt, "max_tokens": 64}
        text, calls = _reply_of(client, body, stream)
        if calls:
            for name, arguments in calls:
                _valid(name, arguments)
        else:
            jsonschema.validate(json.loads(text), schema)
    forced = {**body, "tool_choice": "required", "stream": False}
    reply = client.chat.completions.create(**forced, temperature=0)  # type: ignore[call-overload]
    assert reply.choices[0].message.tool_calls


def _reply_of(client: openai.OpenAI, body: dict, stream: bool) -> tuple[str, list[tuple[str, str]]]:
    if not stream:
        m = client.chat.completions.create(**body, temperature=0).choices[0].message  # type: ignore[call-overload]
        return m.content or "", [(c.function.name, c.function.arguments) for c in m.tool_calls or []]
    text, calls = "", {}
    for chunk in client.chat.completions.create(**body, temperature=0, stream=True):  # type: ignore[call-overload]
        for choice in chunk.choices:
            text += choice.delta.content or ""
            for c in choice.delta.tool_calls or []:
                name, args = calls.get(c.index, ("", ""))
                calls[c.index] = (name + (c.function.name or ""), args + (c.function.arguments or ""))
    return text, list(calls.values())
