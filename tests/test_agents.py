"""Coding agents as they really call: each request shape in tests/agent_shapes.py (Claude Code,
opencode, Continue, Aider, Cline, Roo Code; sourced there) replayed against a live server
with the official openai / anthropic SDKs, streamed where the agent streams, must get a
200 and a well-formed reply (all shapes at once: the server batches them; replies capped
at AGENT_CAP tokens by the server's WORKBENCH_MAX_OUTPUT_TOKENS, since an agent's 32000 on a
135M model that never stops would fill the context). And max_tokens far above the context
(agents send their own model's output limit): a full reply that stops when the context is full, on the chat,
completions and messages APIs, streamed and not; a prompt that does not fit is a 400 in
each API's shape with the prompt's size and the context's (llama.cpp's n_prompt_tokens,
n_ctx); WORKBENCH_MAX_TOKENS=reject keeps the old 400."""

from __future__ import annotations

import inspect
import json
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anthropic
import httpx
import jsonschema
import openai
import pytest

from api.app import create_app
from tests.agent_shapes import Shape, shapes
from tests.agent_shapes_responses import responses_shapes
from tests.helpers import LiveServer
from workbench.config import Settings
from workbench.engine import Engine
from workbench.engine.models.embedded import EMBEDDED_IDS

F32 = EMBEDDED_IDS["f32"]
OPENAI_FINISH = {"stop", "length", "tool_calls"}
ANTHROPIC_STOPS = {"end_turn", "max_tokens", "tool_use", "stop_sequence"}


# Tokens a reply may take on the conformance server: room for a tool call; a reply the cap
# cuts stops with length / max_tokens / incomplete, and an unfinished call is not checked.
AGENT_CAP = 64


@pytest.fixture(scope="module")
def server(settings: Settings, engine: Engine) -> Iterator[LiveServer]:
    with LiveServer(create_app(settings, engine, with_ui=False)) as live:
        yield live


@pytest.fixture(scope="module")
def capped_server(settings: Settings) -> Iterator[LiveServer]:
    """A server (its own engine) whose replies stop after AGENT_CAP tokens."""
    capped = settings.with_(max_output_tokens=AGENT_CAP)
    with Engine(capped) as own, LiveServer(create_app(capped, own, with_ui=False)) as live:
        yield live


@pytest.fixture(scope="module")
def agent_replies(capped_server: LiveServer) -> dict[str, Any]:
    """Every shape's reply (or the exception it raised), all requested at once."""
    todo, url = all_shapes(), capped_server.url

    def attempt(shape: Shape) -> Any:
        try:
            return _reply(shape, url)
        except Exception as exc:  # reported by the shape's own test
            return exc

    with ThreadPoolExecutor(max_workers=len(todo)) as pool:
        return dict(zip([s.id for s in todo], pool.map(attempt, todo), strict=True))


def all_shapes() -> list[Shape]:
    return [*shapes(F32), *responses_shapes(F32)]


def _responses_reply(shape: Shape, url: str) -> Any:
    """The final response of a responses shape (streamed through the SDK's accumulator when the
    client streams; a "{previous}" previous_response_id continues a response made first)."""
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="sk-local", max_retries=0, timeout=600)
    body = dict(shape.body)
    if body.get("previous_response_id") == "{previous}":
        first = client.responses.create(model=body["model"], input="Weather in Paris?", tools=body["tools"])
        body["previous_response_id"] = first.id
    kwargs, extra = _split(client.responses.create, {k: v for k, v in body.items() if k != "stream"})
    options = {"extra_body": extra or None, "extra_headers": shape.headers or None}
    if not body.get("stream"):
        return client.responses.create(**kwargs, **options)
    with client.responses.stream(**kwargs, **options) as stream:
        events = list(stream)
    assert [e.sequence_number for e in events] == list(range(len(events)))
    return events[-1].response  # completed or incomplete (the SDK's final response wants completed)


def _reply(shape: Shape, url: str) -> Any:
    if shape.api == "responses":
        return _responses_reply(shape, url)
    if shape.api == "count_tokens":
        client = anthropic.Anthropic(base_url=url, api_key="local", max_retries=0)
        return client.beta.messages.count_tokens(
            **shape.body, betas=list(shape.betas), extra_headers=shape.headers or None
        )
    if shape.api in ("chat", "completions"):
        return _openai_reply(shape, url)
    return _anthropic_reply(shape, url)


def _split(create: Any, body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The body as an SDK call takes it: its own parameters, and the rest as extra_body."""
    known = set(inspect.signature(create).parameters)
    return {k: v for k, v in body.items() if k in known}, {k: v for k, v in body.items() if k not in known}


def _tool_schemas(shape: Shape) -> dict[str, dict[str, Any]]:
    """Every offered function's parameters schema (namespaces' functions too)."""
    tools = list(shape.body.get("tools") or [])
    tools += [inner for t in tools if t.get("type") == "namespace" for inner in t.get("tools", [])]
    out = {}
    for t in tools:
        if "function" in t:
            out[t["function"]["name"]] = t["function"].get("parameters") or {}
        elif t.get("name"):
            out[t["name"]] = t.get("input_schema") or t.get("parameters") or {}
    return out


def _check_response(shape: Shape, response: Any, schemas: dict[str, dict[str, Any]]) -> None:
    """A well-formed response: completed (or incomplete at the cap), output items of the kinds
    offered, calls of offered tools whose arguments follow their schema, usage counted."""
    assert response.status in ("completed", "incomplete"), response
    assert response.output and response.usage.input_tokens > 0 and response.usage.output_tokens > 0
    for item in response.output:
        assert item.type in ("message", "reasoning", "function_call", "custom_tool_call"), item
        if item.type == "function_call" and response.status == "completed":
            jsonschema.validate(json.loads(item.arguments), schemas[item.name])
        if item.type == "custom_tool_call":
            assert isinstance(item.input, str) and item.name in schemas
    fmt = (shape.body.get("text") or {}).get("format") or {}
    calls = [i for i in response.output if i.type in ("function_call", "custom_tool_call")]
    if fmt.get("type") == "json_schema" and not calls and response.status == "completed":
        jsonschema.validate(json.loads(response.output_text), fmt["schema"])


def _openai_reply(shape: Shape, url: str) -> tuple[str, list[tuple[str, str]], str, Any]:
    """(text, [(tool, arguments)], finish_reason, usage) of a chat or completions shape."""
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="sk-local", max_retries=0, timeout=600)
    create = client.chat.completions.create if shape.api == "chat" else client.completions.create
    kwargs, extra = _split(create, shape.body)
    result = create(**kwargs, extra_body=extra or None, extra_headers=shape.headers or None)
    if not shape.body.get("stream"):
        choice = result.choices[0]
        if shape.api == "completions":
            return choice.text, [], choice.finish_reason, result.usage
        calls = [(c.function.name, c.function.arguments) for c in choice.message.tool_calls or []]
        return choice.message.content or "", calls, choice.finish_reason, result.usage
    text, finish, usage, calls = "", None, None, {}
    for chunk in result:
        usage = chunk.usage or usage
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            if shape.api == "completions":
                text += choice.text
                continue
            text += choice.delta.content or ""
            for call in choice.delta.tool_calls or []:
                name, args = calls.get(call.index, ("", ""))
                calls[call.index] = (
                    name + (call.function.name or ""),
                    args + (call.function.arguments or ""),
                )
    return text, list(calls.values()), finish, usage


def _anthropic_reply(shape: Shape, url: str) -> Any:
    """The final Message of a messages shape (streamed through the SDK when the agent streams)."""
    client = anthropic.Anthropic(base_url=url, auth_token="local", max_retries=0, timeout=600)
    api = client.beta.messages if shape.betas else client.messages
    body = {k: v for k, v in shape.body.items() if k != "stream"}
    kwargs, extra = _split(api.create, body)
    if shape.betas:
        kwargs["betas"] = list(shape.betas)
    options = {"extra_body": extra or None, "extra_headers": shape.headers or None}
    if shape.body.get("stream"):
        with api.stream(**kwargs, **options) as stream:
            return stream.get_final_message()
    return api.create(**kwargs, **options)


@pytest.mark.parametrize("shape", all_shapes(), ids=lambda s: s.id)
def test_an_agent_request_shape_gets_a_well_formed_reply(shape: Shape, agent_replies: dict[str, Any]) -> None:
    schemas = _tool_schemas(shape)
    reply = agent_replies[shape.id]
    if isinstance(reply, Exception):
        raise reply
    if shape.api == "count_tokens":
        assert reply.input_tokens > 100
        return
    if shape.api == "responses":
        _check_response(shape, reply, schemas)
        return
    if shape.api in ("chat", "completions"):
        text, calls, finish, usage = reply
        assert finish in OPENAI_FINISH, finish
        assert text or calls, "an empty reply"
        for name, arguments in calls if finish != "length" else []:
            jsonschema.validate(json.loads(arguments), schemas[name])  # an offered tool, its schema
        assert finish != "tool_calls" or calls
        if shape.body.get("stream_options", {}).get("include_usage") or not shape.body.get("stream"):
            assert usage is not None and usage.prompt_tokens > 0 and usage.completion_tokens > 0
        return
    message = reply
    assert message.role == "assistant" and message.stop_reason in ANTHROPIC_STOPS, message
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    assert message.content and {b.type for b in message.content} <= {"text", "tool_use"}, message.content
    for block in message.content:
        if block.type == "tool_use":
            jsonschema.validate(block.input, schemas[block.name])
    if shape.body.get("tool_choice", {}).get("type") == "any" and message.stop_reason != "max_tokens":
        assert any(b.type == "tool_use" for b in message.content) and message.stop_reason == "tool_use"


def test_the_server_cap_stops_every_reply_at_its_length(capped_server: LiveServer) -> None:
    """WORKBENCH_MAX_OUTPUT_TOKENS: a reply asking for more (or for nothing) stops at the cap."""
    client = openai.OpenAI(base_url=f"{capped_server.url}/v1", api_key="x", max_retries=0, timeout=300)

    def ask(max_tokens: int | None) -> Any:
        return client.completions.create(
            model=F32, prompt="Once upon a time", max_tokens=max_tokens, extra_body={"ignore_eos": True}
        )

    with ThreadPoolExecutor(max_workers=2) as pool:  # batched together
        for reply in pool.map(ask, (None, 32000)):
            assert reply.choices[0].finish_reason == "length"
            assert reply.usage.completion_tokens == AGENT_CAP, reply.usage


# ---- max_tokens far above the context ---------------------------------------------------
ROOM = 12  # tokens the short-context model has left after the prompt


@pytest.fixture(scope="module")
def short_context(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The embedded float32 weights under a context just ROOM tokens past a chat prompt
    (a copy of its config, the weights linked): the clamped reply reaches the end of the
    context in a few tokens. Registered with the session engine by its path."""
    source = Path(engine.load(F32).path or "")
    folder = tmp_path_factory.mktemp("ctx") / "smollm2-short-context"
    folder.mkdir()
    for item in source.iterdir():
        if item.name != "config.json":
            (folder / item.name).symlink_to(item)
    messages = [{"role": "user", "content": "Count from one to one hundred in words, please."}]
    config = json.loads((source / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(config))
    model = engine.model_info(str(folder), scope="any").id
    from workbench.engine import GenerationRequest, Message

    prompt = engine.count_prompt_tokens(
        GenerationRequest(messages=tuple(Message(**m) for m in messages), model=model)
    )
    engine.unload(model)
    config["max_position_embeddings"] = prompt + ROOM
    (folder / "config.json").write_text(json.dumps(config))
    yield {"model": model, "messages": messages, "n_ctx": prompt + ROOM, "folder": folder}
    engine.unload(model)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_max_tokens_far_above_the_context_gives_a_full_reply_that_stops_at_its_end(
    stream: bool, short_context: dict[str, Any], server: LiveServer
) -> None:
    """32000 tokens asked of a model with a context of prompt + ROOM: 200, the reply fills
    the context (end-of-sequence ignored so a reply cannot end sooner), and it says so:
    finish_reason 'length' on chat and completions, stop_reason 'max_tokens' on messages,
    status 'incomplete' (max_output_tokens) on responses."""
    model, messages, n_ctx = short_context["model"], short_context["messages"], short_context["n_ctx"]
    oai = openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0, timeout=300)
    forced = {"ignore_eos": True}
    chat = Shape(
        "test",
        "chat",
        "chat",
        "",
        {
            "model": model,
            "messages": messages,
            "max_tokens": 32000,
            "temperature": 0,
            "stream": stream,
            **({"stream_options": {"include_usage": True}} if stream else {}),
            **forced,
        },
    )
    text, _, finish, usage = _openai_reply(chat, server.url)
    assert finish == "length" and text and usage.prompt_tokens + usage.completion_tokens == n_ctx, usage
    prompt = "Count from one to one hundred in words: one, two,"
    completion = oai.completions.create(
        model=model, prompt=prompt, max_tokens=32000, temperature=0, extra_body=forced
    )
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage.prompt_tokens + completion.usage.completion_tokens == n_ctx
    claude = anthropic.Anthropic(base_url=server.url, api_key="x", max_retries=0, timeout=300)
    ask = {"model": model, "max_tokens": 32000, "messages": messages}
    forced_greedy = {**forced, "temperature": 0}  # the SDK's create() no longer takes temperature
    if stream:
        with claude.messages.stream(**ask, extra_body=forced_greedy) as events:
            message = events.get_final_message()
    else:
        message = claude.messages.create(**ask, extra_body=forced_greedy)
    assert message.stop_reason == "max_tokens" and message.content[0].text
    assert message.usage.input_tokens + message.usage.output_tokens == n_ctx
    asked = {"model": model, "input": messages, "max_output_tokens": 32000, "extra_body": forced}
    if stream:
        with oai.responses.stream(**asked) as events:
            response = list(events)[-1].response  # response.incomplete: get_final_response wants completed
    else:
        response = oai.responses.create(**asked)
    assert response.status == "incomplete" and response.incomplete_details.reason == "max_output_tokens"
    assert response.output_text and response.usage.total_tokens == n_ctx


def test_a_prompt_past_the_context_is_a_400_naming_both_sizes(
    short_context: dict[str, Any], server: LiveServer
) -> None:
    model, n_ctx = short_context["model"], short_context["n_ctx"]
    long = [{"role": "user", "content": "Please count slowly: " + "one two three four five " * 20}]
    for stream in (False, True):
        r = httpx.post(
            f"{server.url}/v1/chat/completions",
            json={"model": model, "messages": long, "max_tokens": 32000, "stream": stream},
            timeout=120,
        )
        error = r.json()["error"]
        assert r.status_code == 400 and error["code"] == "context_length_exceeded", r.text
        assert error["n_ctx"] == n_ctx and error["n_prompt_tokens"] > n_ctx
        over = error["n_prompt_tokens"] - n_ctx + 1
        assert f"{over} more than" in error["message"] and "longer context" in error["message"]
        r = httpx.post(
            f"{server.url}/v1/messages",
            json={"model": model, "messages": long, "max_tokens": 32000, "stream": stream},
            timeout=120,
        )
        body = r.json()
        assert r.status_code == 400 and body["type"] == "error", r.text
        assert body["error"]["type"] == "invalid_request_error" and body["error"]["n_ctx"] == n_ctx
        assert body["error"]["n_prompt_tokens"] == error["n_prompt_tokens"]


def test_the_reject_policy_keeps_the_400_for_max_tokens_past_the_context(
    settings: Settings, short_context: dict[str, Any]
) -> None:
    strict = settings.with_(max_tokens_policy="reject", model_paths=(str(short_context["folder"]),))
    with Engine(strict) as own, LiveServer(create_app(strict, own, with_ui=False)) as live:
        body = {"model": short_context["model"], "messages": short_context["messages"], "max_tokens": 32000}
        r = httpx.post(f"{live.url}/v1/chat/completions", json=body, timeout=120)
        error = r.json()["error"]
        assert (
            r.status_code == 400
            and error["param"] == "max_tokens"
            and error["n_ctx"] == short_context["n_ctx"]
        )
        assert "WORKBENCH_MAX_TOKENS=clamp" in error["message"]
        fits = {**body, "max_tokens": ROOM}
        assert httpx.post(f"{live.url}/v1/chat/completions", json=fits, timeout=120).status_code == 200
