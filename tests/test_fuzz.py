"""Fuzzing the HTTP API with schemathesis against the server's own /openapi.json: a
real uvicorn on 127.0.0.1, the real embedded model on the shared engine. Every
documented operation gets a bounded, seeded set of generated requests (valid and
invalid); none may get a 5xx, and every response must match what the schema says
(status code, content type, body schema).

schemathesis's own pytest loader (`schemathesis.pytest.from_fixture`) does not run on
pytest 9.2 (it reads the removed `Node._nodeid`), so each operation is driven through
the public strategy API (`operation.as_strategy`) under Hypothesis' `@given`; that
runs the fuzzing phase, not schemathesis's coverage phase.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import BaseSchema, Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.app import create_app
from api.openai.protocol import MAX_CHOICES
from tests.helpers import LiveServer
from workbench.config import Settings
from workbench.engine import Engine
from workbench.engine.models.embedded import EMBEDDED_IDS

F32 = EMBEDDED_IDS["f32"]
EXAMPLES = 30  # generated requests per operation and mode (valid / invalid)
OPERATIONS = [
    ("GET", "/health"),
    ("GET", "/v1/models"),
    ("GET", "/v1/models/{model_id}"),
    ("POST", "/v1/chat/completions"),
    ("POST", "/v1/completions"),
    ("POST", "/v1/messages"),
    ("POST", "/v1/messages/count_tokens"),
    ("POST", "/v1/responses"),
    ("GET", "/v1/responses/{response_id}"),
    ("DELETE", "/v1/responses/{response_id}"),
    ("GET", "/v1/responses/{response_id}/input_items"),
]
# Valid requests for every operation; invalid ones where there is something to get
# wrong (a body: the GET routes take no parameters but a path string).
RUNS = [(m, p, GenerationMode.POSITIVE) for m, p in OPERATIONS] + [
    (m, p, GenerationMode.NEGATIVE) for m, p in OPERATIONS if m == "POST"
]
MAX_TOKENS = 4  # generation is the slow part: length limits the server honours are clamped to this
# The most max_tokens each route takes (a larger one is a 400): any on OpenAI's routes (a
# limit past the context stops when it is full, WORKBENCH_MAX_TOKENS=clamp), 1e6 on Anthropic's.
HONOURED = {"/v1/messages": 1_000_000}
FEW_CHOICES = 2  # n up to the bound is clamped to this
LIMITS = ("max_tokens", "max_completion_tokens", "max_output_tokens")
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    # Streamed replies (`stream: true`) are documented as text/event-stream without a
    # schema (api/openapi.py), so this validates JSON bodies only: the content-type
    # check still holds streams to text/event-stream, their events go unchecked here.
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def server(settings: Settings, engine: Engine) -> Iterator[LiveServer]:
    with LiveServer(create_app(settings, engine, with_ui=False)) as live:
        yield live


@pytest.fixture(scope="module")
def api_schema(server: LiveServer) -> BaseSchema:
    """The schema the live server publishes, with the live server as its base URL."""
    config = SchemathesisConfig.from_dict({"base-url": server.url, "request-timeout": 120})
    return schemathesis.openapi.from_url(f"{server.url}/openapi.json", config=config)


def test_every_published_operation_is_fuzzed(api_schema: BaseSchema) -> None:
    published = {(op.ok().method.upper(), op.ok().path) for op in api_schema.get_all_operations()}
    assert published == set(OPERATIONS)


def test_the_schema_documents_what_the_server_answers(server: LiveServer) -> None:
    """Errors are 400s (never FastAPI's 422) in each API's error shape, and a reply may
    also stream (the fuzzer first found every 400 undocumented)."""
    schema = httpx.get(f"{server.url}/openapi.json").json()
    paths = schema["paths"]
    for method, path in OPERATIONS:
        assert "422" not in paths[path][method.lower()]["responses"], (method, path)
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    chat = paths["/v1/chat/completions"]["post"]["responses"]
    assert set(chat["200"]["content"]) == {"application/json", "text/event-stream"}
    assert chat["400"]["content"]["application/json"]["schema"]["$ref"].endswith("/OpenAIError")
    messages = paths["/v1/messages"]["post"]["responses"]
    assert messages["400"]["content"]["application/json"]["schema"]["$ref"].endswith("/AnthropicError")
    assert paths["/v1/models/{model_id}"]["get"]["responses"]["404"]
    assert paths["/health"]["get"]["responses"]["503"]


def test_top_k_beyond_the_vocabulary_means_no_top_k(server: LiveServer) -> None:
    """Found by fuzzing: top_k >= the vocabulary size (49152 here; the bound is 100000)
    made mlx-lm raise at the first token, a 500. It keeps every token, as top_k 0 does:
    a seeded reply is the same either way."""
    hello = [{"role": "user", "content": "Hi"}]
    requests = [
        (
            "/v1/chat/completions",
            {"messages": hello, "seed": 3},
            lambda r: r["choices"][0]["message"]["content"],
        ),
        ("/v1/completions", {"prompt": "Once upon a time", "seed": 3}, lambda r: r["choices"][0]["text"]),
        ("/v1/messages", {"messages": hello}, lambda r: r["content"][0]["type"]),  # no seed here
    ]
    for path, body, text in requests:
        replies = set()
        for top_k in (100_000, 49_152, 0):
            sent = {**body, "model": F32, "max_tokens": 4, "temperature": 1, "top_k": top_k}
            r = httpx.post(f"{server.url}{path}", json=sent, timeout=120)
            assert r.status_code == 200, (path, top_k, r.text)
            replies.add(text(r.json()))
        assert len(replies) == 1, (path, replies)


@pytest.mark.slow
@pytest.mark.timeout(150)
@pytest.mark.parametrize(("method", "path", "mode"), RUNS, ids=[f"{m} {p} {g.value}" for m, p, g in RUNS])
def test_operation_survives_fuzzing(
    api_schema: BaseSchema, method: str, path: str, mode: GenerationMode
) -> None:
    """Valid (positive) or invalid (negative) generated requests: no 5xx, and each
    response as documented; valid ones reach the model, not only its validation."""
    statuses: Counter[int] = Counter()

    # Seeded, no example database and no shrinking: the same requests every run, in
    # bounded time; a failure reports its request (with a curl line to replay it).
    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=api_schema[path][method].as_strategy(generation_mode=mode), data=st.data())
    def fuzz(case: Case, data: st.DataObject) -> None:
        cheapen(case, data)
        if mode is GenerationMode.POSITIVE:
            repair(case)
        statuses[case.call_and_validate(checks=CHECKS).status_code] += 1

    fuzz()
    if mode is GenerationMode.POSITIVE and method == "POST":
        assert statuses[200] > 0, statuses


def cheapen(case: Case, data: st.DataObject) -> None:
    """Most requests name the real model (a random name is a quick 404), and length
    limits and choice counts that would be honoured are kept small so generation stays
    short; the rest (wrong type, out of range) pass through untouched."""
    body = case.body
    if not isinstance(body, dict):
        return
    honoured = HONOURED.get(case.operation.path, math.inf)
    for key in LIMITS:
        if _is_number(body.get(key)) and MAX_TOKENS < body[key] <= honoured:
            body[key] = MAX_TOKENS
    generates = case.operation.path in ("/v1/chat/completions", "/v1/completions", "/v1/responses")
    if generates and all(body.get(k) is None for k in LIMITS):
        # Unset or null: until end of sequence (or the context).
        body["max_output_tokens" if case.operation.path == "/v1/responses" else "max_tokens"] = MAX_TOKENS
    if _is_number(body.get("n")) and FEW_CHOICES < body["n"] <= MAX_CHOICES:
        body["n"] = FEW_CHOICES
    if isinstance(body.get("model"), str):
        body["model"] = data.draw(st.sampled_from([F32, "default", "default", body["model"]]))


def repair(case: Case) -> None:
    """Rules of a valid request that its schema does not say: content may be null only
    in an assistant turn that makes tool calls, and a text prompt is not empty. Without
    this nearly every generated request is a 400, and generation goes unfuzzed."""
    body = case.body if isinstance(case.body, dict) else {}
    messages = body.get("messages")
    for message in messages if isinstance(messages, list) else []:
        if isinstance(message, dict) and message.get("content") is None and not message.get("tool_calls"):
            message["content"] = ""
    if body.get("prompt") in ("", [], [""]):
        body["prompt"] = "Once upon a time"


def _is_number(value: object) -> bool:
    """An int or float (JSON's 4897.0 is a valid integer too), not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)
