"""Structured output on the embedded model, through the official openai SDK against a
live server: `response_format` json_object / json_schema is enforced token by token, so
every answer parses and validates (jsonschema), whatever the small model would say."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema
import openai
import pytest

from api.app import create_app
from tests.helpers import LiveServer
from workbench.bench.runner import JSON_RECORDS
from workbench.config import Settings
from workbench.engine import Constraint, Engine, GenerationRequest, Message

S = {"type": "string", "maxLength": 24}
SCHEMAS: list[dict[str, Any]] = [
    {"type": "object", "properties": {"name": S}, "required": ["name"]},
    {
        "type": "object",
        "properties": {"age": {"type": "integer", "minimum": 0, "maximum": 120}},
        "required": ["age"],
    },
    {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]},
    {"type": "object", "properties": {"color": {"enum": ["red", "green", "blue"]}}, "required": ["color"]},
    {"type": "object", "properties": {"price": {"type": "number", "minimum": 0}}, "required": ["price"]},
    {
        "type": "object",
        "properties": {"tags": {"type": "array", "items": S, "minItems": 1, "maxItems": 3}},
        "required": ["tags"],
    },
    {
        "type": "object",
        "properties": {"user": {"type": "object", "properties": {"id": {"type": "integer"}, "email": S}}},
        "required": ["user"],
    },
    {
        "type": "object",
        "properties": {
            "title": S,
            "year": {"type": "integer", "minimum": 1900, "maximum": 2100},
            "genres": {"type": "array", "items": {"enum": ["drama", "comedy", "sci-fi"]}, "maxItems": 2},
        },
        "required": ["title", "year", "genres"],
        "additionalProperties": False,
    },
    {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 5},
    {
        "type": "object",
        "properties": {"answer": {"type": ["string", "null"], "maxLength": 16}},
        "required": ["answer"],
    },
    {
        "type": "object",
        "properties": {"code": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{2}$"}},
        "required": ["code"],
    },
    {"type": "object", "properties": {"date": {"type": "string", "format": "date"}}, "required": ["date"]},
    {
        "type": "object",
        "properties": {
            "point": {
                "type": "array",
                "prefixItems": [{"type": "number"}, {"type": "number"}],
                "items": False,
            }
        },
        "required": ["point"],
    },
    {
        "type": "object",
        "properties": {
            "shape": {
                "anyOf": [
                    {"type": "object", "properties": {"r": {"type": "number"}}, "required": ["r"]},
                    {"type": "string", "maxLength": 10},
                ]
            }
        },
        "required": ["shape"],
    },
    {
        "type": "object",
        "properties": {
            "matrix": {
                "type": "array",
                "items": {"type": "array", "items": {"type": "integer"}, "maxItems": 3},
                "maxItems": 3,
            }
        },
        "required": ["matrix"],
    },
    {
        "type": "object",
        "properties": {
            "steps": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"n": {"type": "integer"}, "do": S},
                    "required": ["n", "do"],
                },
                "maxItems": 3,
            }
        },
        "required": ["steps"],
    },
    {
        "type": "object",
        "properties": {"level": {"const": "debug"}, "count": {"type": "integer", "minimum": 1, "maximum": 9}},
        "required": ["level", "count"],
    },
    {
        "type": "object",
        "properties": {"ratio": {"type": "number", "minimum": 0, "maximum": 1}, "label": S},
        "required": ["ratio", "label"],
    },
    {
        "type": "object",
        "properties": {"city": S, "country": {"type": "string", "minLength": 2, "maxLength": 2}},
        "required": ["city", "country"],
        "additionalProperties": False,
    },
    {
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}, "sum": {"type": "integer"}},
        "required": ["a", "b", "sum"],
        "additionalProperties": False,
    },
]


@pytest.fixture(scope="module")
def server(settings: Settings, engine: Engine) -> Iterator[LiveServer]:
    with LiveServer(create_app(settings, engine, with_ui=False)) as live:
        yield live


def test_twenty_schemas_each_answer_validates(server: LiveServer) -> None:
    assert len(SCHEMAS) == 20
    client = openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0)

    async def ask(i: int, schema: dict[str, Any]) -> tuple[int, str, str | None]:
        reply = await client.chat.completions.create(
            model="default",
            messages=[{"role": "user", "content": f"Reply with JSON for this schema: {json.dumps(schema)}"}],
            # strict (as OpenAI requires for structured outputs): objects without
            # additionalProperties are closed, or a small model may add keys forever.
            response_format={
                "type": "json_schema",
                "json_schema": {"name": f"s{i}", "schema": schema, "strict": True},
            },
            max_tokens=160,
            temperature=0.7 if i % 2 else 0,  # sampled answers must validate too
            seed=i,
        )
        return i, reply.choices[0].message.content or "", reply.choices[0].finish_reason

    async def ask_all() -> list[tuple[int, str, str | None]]:
        return await asyncio.gather(*(ask(i, s) for i, s in enumerate(SCHEMAS)))

    for i, text, finish in asyncio.run(ask_all()):
        assert finish == "stop", (i, text, finish)
        jsonschema.validate(json.loads(text), SCHEMAS[i])


def test_json_object_and_completions_and_streaming(server: LiveServer) -> None:
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0)
    reply = client.chat.completions.create(
        model="default",
        messages=[{"role": "user", "content": "Describe a cat."}],
        response_format={"type": "json_object"},
        max_tokens=120,
        temperature=0,
    )
    assert isinstance(json.loads(reply.choices[0].message.content or ""), dict)
    schema = SCHEMAS[7]
    done = client.completions.create(
        model="default",
        prompt="A film as JSON:",
        max_tokens=120,
        extra_body={
            "response_format": {"type": "json_schema", "json_schema": {"name": "film", "schema": schema}}
        },
    )
    jsonschema.validate(json.loads(done.choices[0].text), schema)
    parts = client.chat.completions.create(
        model="default",
        messages=[{"role": "user", "content": "A film, please."}],
        response_format={"type": "json_schema", "json_schema": {"name": "film", "schema": schema}},
        max_tokens=120,
        temperature=0,
        stream=True,
    )
    text = "".join(c.choices[0].delta.content or "" for c in parts if c.choices)
    jsonschema.validate(json.loads(text), schema)


def test_bad_schemas_get_a_clear_400(server: LiveServer, engine: Engine) -> None:
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0)
    hi = [{"role": "user", "content": "hi"}]
    with pytest.raises(openai.BadRequestError, match=r"json_schema\.schema: required"):
        client.chat.completions.create(model="default", messages=hi, response_format={"type": "json_schema"})  # type: ignore[arg-type,typeddict-item]
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="default",
            messages=hi,
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "x", "schema": {"type": "nonsense"}},
            },
        )
    assert "response_format.json_schema.schema" in str(caught.value)
    with pytest.raises(openai.BadRequestError, match="response_format"):
        client.chat.completions.create(model="default", messages=hi, response_format={"type": "xml"})  # type: ignore[arg-type,typeddict-item]


def test_ignore_eos_runs_an_endless_grammar_to_max_tokens(engine: Engine) -> None:
    # What `output = "json"` benchmarks rely on: end-of-sequence is masked while the
    # grammar allows another record, so every trial reaches its length.
    done = engine.generate(
        GenerationRequest(
            messages=(Message("user", "Write one JSON record."),),
            max_tokens=48,
            ignore_eos=True,
            cache=False,
            constraint=Constraint("lark", JSON_RECORDS, "output"),
        )
    )
    assert done.stats.generation_tokens == 48 and done.finish_reason == "length"
    assert done.text.startswith("[{") and "<|im_end|>" not in done.text


def test_logprobs_under_a_schema_list_only_allowed_tokens(server: LiveServer) -> None:
    # Forbidden tokens have logprob -inf; listing them made a 500 (-inf is not JSON).
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0)
    schema = {"type": "object", "properties": {"name": S}, "required": ["name"]}
    format_ = {"type": "json_schema", "json_schema": {"name": "n", "schema": schema, "strict": True}}
    for stream in (False, True):
        args = {"model": "default", "messages": [{"role": "user", "content": "A name?"}], "max_tokens": 12}
        reply = client.chat.completions.create(
            **args, response_format=format_, logprobs=True, top_logprobs=5, stream=stream, temperature=0
        )
        chunks = list(reply) if stream else [reply]
        tokens = [
            t for c in chunks if c.choices and c.choices[0].logprobs for t in c.choices[0].logprobs.content
        ]
        assert tokens and all(1 <= len(t.top_logprobs) <= 5 for t in tokens)
        assert all(math.isfinite(a.logprob) for t in tokens for a in t.top_logprobs)
        # Right after the opening `{` only `"` can follow: a single alternative.
        assert min(len(t.top_logprobs) for t in tokens) == 1
    # The same on /v1/completions (found there by the fuzzer too), whole and streamed.
    body = {"model": "default", "prompt": "Once upon a time", "max_tokens": 3, "logprobs": 20}
    body["response_format"] = {"type": "json_object"}
    r = httpx.post(f"{server.url}/v1/completions", json=body, timeout=120)
    tops = [lp for entry in r.json()["choices"][0]["logprobs"]["top_logprobs"] for lp in entry.values()]
    assert r.status_code == 200 and tops and all(-1e9 < lp <= 0 for lp in tops), r.text[-300:]
    r = httpx.post(f"{server.url}/v1/completions", json={**body, "stream": True}, timeout=120)
    assert r.status_code == 200 and '"error"' not in r.text, r.text[-300:]


def test_strict_closes_object_subschemas_and_leaves_values_alone() -> None:
    schema = {
        "type": "object",
        "properties": {
            "properties": {"type": "object", "properties": {"x": S}},  # a field named "properties"
            "opts": {"type": "object", "default": {"properties": {}}},
        },
        "items": [{"type": "object"}],
        "anyOf": [{"type": "object"}],
        "$defs": {"open": {"type": "object", "additionalProperties": True}},
    }
    closed = json.loads(Constraint.json_schema(schema, strict=True).source)
    assert closed["additionalProperties"] is False
    assert set(closed["properties"]) == {"properties", "opts"}  # no key added among the fields
    assert closed["properties"]["properties"]["additionalProperties"] is False
    assert closed["properties"]["opts"]["additionalProperties"] is False  # no properties: still closed
    assert closed["properties"]["opts"]["default"] == {"properties": {}}  # a value, not a schema
    assert closed["items"][0]["additionalProperties"] is False
    assert closed["anyOf"][0]["additionalProperties"] is False
    assert closed["$defs"]["open"]["additionalProperties"] is True
