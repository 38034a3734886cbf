"""The Responses API (`/v1/responses`) as the official openai SDK sees it, on a live server and
the shared engine: text or item input, instructions, the stream's event sequence through the
SDK's own accumulator, previous_response_id over the store, function tools and their outputs,
text.format, max_output_tokens, GET / DELETE / input_items, errors in OpenAI's shape."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema
import openai
import pytest

from api.app import create_app
from tests.helpers import LiveServer
from workbench.config import Settings
from workbench.engine import Engine
from workbench.engine.models.embedded import EMBEDDED_IDS

F32 = EMBEDDED_IDS["f32"]
ASK = "What is the capital of France?"
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
GREEDY: dict[str, Any] = {"temperature": 0}


@pytest.fixture(scope="module")
def server(settings: Settings, engine: Engine) -> Iterator[LiveServer]:
    with LiveServer(create_app(settings, engine, with_ui=False)) as live:
        yield live


@pytest.fixture(scope="module")
def client(server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0, timeout=300)


def test_a_text_input_gets_a_completed_response_with_usage_and_timings(client: openai.OpenAI) -> None:
    r = client.responses.create(model=F32, input=ASK, max_output_tokens=32, **GREEDY)
    assert r.object == "response" and r.status == "completed" and r.id.startswith("resp_")
    assert "Paris" in r.output_text and [o.type for o in r.output] == ["message"]
    u = r.usage
    assert (
        u.input_tokens > 5
        and 0 < u.output_tokens <= 32
        and u.total_tokens == u.input_tokens + u.output_tokens
    )
    assert u.output_tokens_details.reasoning_tokens == 0 and u.input_tokens_details.cached_tokens >= 0
    assert r.model_extra["timings"]["generation_tokens"] == u.output_tokens
    with_instructions = client.responses.create(
        model=F32, input=ASK, instructions="Answer in one word.", max_output_tokens=8, **GREEDY
    )
    # The instructions are the leading system turn: the prompt a chat request with it renders.
    system = [{"role": "system", "content": "Answer in one word."}, {"role": "user", "content": ASK}]
    chat = client.chat.completions.create(model=F32, messages=system, max_tokens=1)
    assert with_instructions.usage.input_tokens == chat.usage.prompt_tokens != u.input_tokens
    assert with_instructions.instructions == "Answer in one word."


def test_the_stream_is_the_official_event_sequence_and_the_same_reply(client: openai.OpenAI) -> None:
    whole = client.responses.create(model=F32, input=ASK, max_output_tokens=32, **GREEDY)
    with client.responses.stream(model=F32, input=ASK, max_output_tokens=32, **GREEDY) as stream:
        events = list(stream)
        final = stream.get_final_response()  # the SDK's accumulator took every event
    kinds = [e.type for e in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == whole.output_text == final.output_text
    assert final.usage.output_tokens == whole.usage.output_tokens


def test_previous_response_id_continues_the_stored_conversation(client: openai.OpenAI) -> None:
    first = client.responses.create(
        model=F32, input=ASK, instructions="Be brief.", max_output_tokens=16, **GREEDY
    )
    second = client.responses.create(
        model=F32, input="And of Italy?", previous_response_id=first.id, max_output_tokens=16, **GREEDY
    )
    assert second.previous_response_id == first.id and second.output_text
    # The first turn and its answer are in the prompt; its instructions are not carried over.
    alone = client.responses.create(model=F32, input="And of Italy?", max_output_tokens=1, **GREEDY)
    assert second.usage.input_tokens > alone.usage.input_tokens + first.usage.output_tokens
    assert client.responses.retrieve(first.id).output_text == first.output_text
    items = client.responses.input_items.list(first.id)
    assert [i.type for i in items.data] == ["message"]
    client.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(first.id)
    with pytest.raises(openai.NotFoundError) as gone:
        client.responses.create(model=F32, input="Hi", previous_response_id=first.id)
    assert gone.value.body["param"] == "previous_response_id"
    unstored = client.responses.create(model=F32, input="Hi", store=False, max_output_tokens=2)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(unstored.id)


def test_function_tools_call_and_take_their_output_back(client: openai.OpenAI) -> None:
    ask = {"model": F32, "input": "What is the weather in Paris?", "tools": [WEATHER], **GREEDY}
    called = client.responses.create(**ask, tool_choice="required", max_output_tokens=48)
    (call,) = [o for o in called.output if o.type == "function_call"]
    assert call.name == "get_weather" and call.call_id.startswith("call_")
    jsonschema.validate(json.loads(call.arguments), WEATHER["parameters"])
    with client.responses.stream(**ask, tool_choice="required", max_output_tokens=48) as stream:
        events = list(stream)
        streamed = [o for o in stream.get_final_response().output if o.type == "function_call"]
    pieces = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    assert streamed[0].arguments == pieces == call.arguments  # greedy: the same call
    answered = client.responses.create(
        model=F32,
        input=[
            {"role": "user", "content": [{"type": "input_text", "text": "What is the weather in Paris?"}]},
            {
                "type": "function_call",
                "call_id": call.call_id,
                "name": call.name,
                "arguments": call.arguments,
            },
            {"type": "function_call_output", "call_id": call.call_id, "output": "Sunny, 21 C"},
        ],
        tools=[WEATHER],
        max_output_tokens=24,
        **GREEDY,
    )
    assert answered.output_text and answered.usage.input_tokens > called.usage.input_tokens


def test_text_format_json_schema_is_enforced(client: openai.OpenAI) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    r = client.responses.create(
        model=F32,
        input="Name the capital of France as JSON.",
        text={"format": {"type": "json_schema", "name": "city", "schema": schema, "strict": True}},
        max_output_tokens=40,
        **GREEDY,
    )
    jsonschema.validate(json.loads(r.output_text), schema)


def test_max_output_tokens_makes_an_incomplete_response(client: openai.OpenAI) -> None:
    body = {
        "model": F32,
        "input": "Count to fifty.",
        "max_output_tokens": 3,
        "extra_body": {"ignore_eos": True},
    }
    r = client.responses.create(**body)
    assert r.status == "incomplete" and r.incomplete_details.reason == "max_output_tokens"
    assert r.usage.output_tokens == 3
    with client.responses.stream(**body) as stream:
        last = list(stream)[-1]
    assert (
        last.type == "response.incomplete" and last.response.incomplete_details.reason == "max_output_tokens"
    )


def test_what_cannot_be_honoured_is_a_400_naming_it(server: LiveServer) -> None:
    cases = [
        ({"tools": [{"type": "hologram"}]}, "tools.0"),  # hosted tools (web_search) are accepted
        ({"background": True}, "background"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]},
            "input.0.content.0",
        ),
        ({"input": [{"type": "item_reference", "id": "x"}]}, "input.0.type"),
        ({"reasoning": {"effort": "extreme"}}, "reasoning.effort"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"max_output_tokens": 0}, "max_output_tokens"),
    ]
    for extra, param in cases:
        body = {"model": F32, "input": ASK, **extra}
        r = httpx.post(f"{server.url}/v1/responses", json=body, timeout=60)
        assert r.status_code == 400, (extra, r.text)
        error = r.json()["error"]
        assert set(error) >= {"message", "type", "param", "code"} and error["param"] == param, (extra, error)
    r = httpx.get(f"{server.url}/v1/responses/resp_nope", timeout=30)
    assert r.status_code == 404 and r.json()["error"]["param"] == "response_id"
