"""The Anthropic Messages API as clients see it: a real uvicorn on 127.0.0.1, the
official anthropic SDK unmodified, the real embedded model on the shared engine."""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anthropic
import httpx
import pytest
from fastapi import FastAPI

from api.app import create_app
from api.sse import ANTHROPIC_SSE, sse_response
from tests.helpers import FinishedGenerations, LiveServer, wait_until
from workbench.config import Settings
from workbench.engine import Engine, InvalidRequestError
from workbench.engine.models.embedded import EMBEDDED_IDS

F32 = EMBEDDED_IDS["f32"]
HELLO = [{"role": "user", "content": "What is the capital of France?"}]
PIRATE = "You are a pirate. Answer every question in pirate speak, with 'Arr!'."
# Recent SDKs take temperature / top_p / top_k only through extra_body (newer Claude
# models fix them); the wire field is the same either way.
GREEDY = {"extra_body": {"temperature": 0}}
STREAM_EVENTS = ["message_start", "content_block_start", "ping", "content_block_delta"]
END_EVENTS = ["content_block_stop", "message_delta", "message_stop"]


@pytest.fixture(scope="module")
def server(settings: Settings, engine: Engine) -> Iterator[LiveServer]:
    with LiveServer(create_app(settings, engine, with_ui=False)) as live:
        yield live


@pytest.fixture(scope="module")
def client(server: LiveServer) -> anthropic.Anthropic:
    # The SDK appends /v1/messages to the base URL itself.
    return anthropic.Anthropic(base_url=server.url, api_key="unused", max_retries=0, timeout=120)


def _error(exc: anthropic.APIStatusError, kind: str) -> str:
    """Anthropic's error shape, exactly; returns the message."""
    body = exc.response.json()
    assert set(body) == {"type", "error"} and body["type"] == "error", body
    # A prompt past the context also says both sizes (llama.cpp's n_prompt_tokens, n_ctx).
    fields = set(body["error"]) - {"n_prompt_tokens", "n_ctx"}
    assert fields == {"type", "message"} and body["error"]["type"] == kind, body
    return body["error"]["message"]


def _sse(response: httpx.Response) -> list[tuple[str, dict]]:
    """(event name, data) pairs of a raw SSE response; comment lines (keep-alives) skipped."""
    events, name = [], None
    for line in response.iter_lines():
        if line.startswith("event:"):
            name = line.removeprefix("event:").strip()
        elif line.startswith("data:"):
            events.append((name, json.loads(line.removeprefix("data:"))))
            name = None
    return events


def test_create_reply_usage_and_timings(client: anthropic.Anthropic, engine: Engine) -> None:
    r = client.messages.create(model=F32, max_tokens=12, messages=HELLO, **GREEDY)
    assert r.type == "message" and r.role == "assistant" and r.model == F32 and r.id.startswith("msg_")
    assert [b.type for b in r.content] == ["text"] and "Paris" in r.content[0].text
    # The same engine, the same reply as the in-process API gives.
    assert r.content[0].text == engine.chat(HELLO, F32, max_tokens=12).text
    assert r.stop_reason in ("end_turn", "max_tokens") and r.stop_sequence is None
    assert r.usage.input_tokens > 5 and 0 < r.usage.output_tokens <= 12
    t = r.model_extra["timings"]
    assert t["prompt_tokens"] == r.usage.input_tokens and t["generation_tokens"] == r.usage.output_tokens
    assert t["ttft_s"] > 0 and t["prompt_tps"] > 0 and 0 < t["peak_memory_gb"] < 10
    assert t["concurrent_streams"] >= 1 and "stop_sequence" not in t and "finish_reason" not in t


def test_stream_collects_text_and_final_message(client: anthropic.Anthropic) -> None:
    args = {"model": F32, "max_tokens": 16, "messages": HELLO, **GREEDY}
    whole = client.messages.create(**args)
    with client.messages.stream(**args) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(pieces) > 1 and "".join(pieces) == whole.content[0].text
    assert final.content[0].text == whole.content[0].text and final.id.startswith("msg_")
    assert final.stop_reason == whole.stop_reason and final.stop_sequence is None
    assert final.usage.input_tokens == whole.usage.input_tokens
    assert final.usage.output_tokens == whole.usage.output_tokens


def test_raw_stream_sends_the_full_event_sequence(server: LiveServer) -> None:
    body = {"model": F32, "max_tokens": 6, "messages": HELLO, "temperature": 0, "stream": True}
    with httpx.stream("POST", f"{server.url}/v1/messages", json=body, timeout=60) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = _sse(r)
    names = [name for name, _ in events]
    deltas = names.count("content_block_delta")
    assert deltas >= 1 and names == STREAM_EVENTS + ["content_block_delta"] * (deltas - 1) + END_EVENTS
    assert all(data["type"] == name for name, data in events)  # no bare data: events, no [DONE]
    start = events[0][1]["message"]
    assert start["content"] == [] and start["stop_reason"] is None and start["usage"]["input_tokens"] > 5
    assert events[1][1] == {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "text", "text": ""},
    }
    assert all(d["delta"]["type"] == "text_delta" and d["index"] == 0 for n, d in events if n == names[3])
    delta = events[-2][1]
    assert delta["delta"] == {"stop_reason": "max_tokens", "stop_sequence": None}
    assert delta["usage"] == {"input_tokens": start["usage"]["input_tokens"], "output_tokens": 6}
    assert delta["timings"]["generation_tokens"] == 6 and delta["timings"]["generation_tps"] > 0


def test_system_prompt_is_honoured(client: anthropic.Anthropic, engine: Engine) -> None:
    plain = client.messages.create(model=F32, max_tokens=12, messages=HELLO, **GREEDY)
    pirate = client.messages.create(model=F32, max_tokens=12, messages=HELLO, **GREEDY, system=PIRATE)
    same = engine.chat([{"role": "system", "content": PIRATE}, *HELLO], F32, max_tokens=12)
    assert pirate.content[0].text == same.text and pirate.usage.input_tokens == same.stats.prompt_tokens
    assert pirate.content[0].text != plain.content[0].text
    blocks = [{"type": "text", "text": PIRATE[:20]}, {"type": "text", "text": PIRATE[20:]}]
    as_blocks = client.messages.create(model=F32, max_tokens=12, messages=HELLO, **GREEDY, system=blocks)
    assert as_blocks.content[0].text == pirate.content[0].text


def test_stop_sequences_end_with_stop_sequence(client: anthropic.Anthropic) -> None:
    args = {"model": F32, "max_tokens": 12, "messages": HELLO, **GREEDY}
    free = client.messages.create(**args).content[0].text
    stop = free.split()[3]  # a word from the middle of the free reply
    cut = free[: free.index(stop)]
    r = client.messages.create(**args, stop_sequences=["never-in-reply", stop])
    assert r.content[0].text == cut and r.stop_reason == "stop_sequence" and r.stop_sequence == stop
    with client.messages.stream(**args, stop_sequences=[stop]) as stream:
        assert "".join(stream.text_stream) == cut
        final = stream.get_final_message()
    assert final.stop_reason == "stop_sequence" and final.stop_sequence == stop


def test_max_tokens_ends_with_max_tokens(client: anthropic.Anthropic) -> None:
    r = client.messages.create(model=F32, max_tokens=2, messages=HELLO, **GREEDY)
    assert r.stop_reason == "max_tokens" and r.usage.output_tokens == 2 and r.stop_sequence is None


def test_content_blocks_and_multi_turn(client: anthropic.Anthropic, engine: Engine) -> None:
    turns = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is the capital "},
                {"type": "text", "text": "of France?"},
            ],
        },
        {"role": "assistant", "content": "Paris."},
        {
            "role": "user",
            "content": [{"type": "text", "text": "And of Italy?", "cache_control": {"type": "ephemeral"}}],
        },
    ]
    r = client.messages.create(model=F32, max_tokens=8, messages=turns, **GREEDY, metadata={"user_id": "t"})
    flat = [
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "And of Italy?"},
    ]
    assert r.content[0].text == engine.chat(flat, F32, max_tokens=8).text


def test_count_tokens_equals_the_engines_prompt_tokens(client: anthropic.Anthropic) -> None:
    for system in (None, PIRATE):
        extra = {"system": system} if system else {}
        counted = client.messages.count_tokens(model=F32, messages=HELLO, **extra)
        r = client.messages.create(model=F32, max_tokens=1, messages=HELLO, **extra)
        assert counted.input_tokens == r.usage.input_tokens == r.model_extra["timings"]["prompt_tokens"]
    assert (
        client.messages.count_tokens(model=F32, messages=HELLO, system=PIRATE).input_tokens
        > client.messages.count_tokens(model=F32, messages=HELLO).input_tokens
    )


def test_bad_requests_get_anthropic_shaped_400s(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as bad:
        client.messages.create(model=F32, max_tokens=4, messages=HELLO, extra_body={"temperature": 1.5})
    message = _error(bad.value, "invalid_request_error")
    assert message.startswith("temperature:") and message in bad.value.message
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
    with pytest.raises(anthropic.BadRequestError) as bad:
        client.messages.create(
            model=F32,
            max_tokens=4,
            messages=[{"role": "user", "content": [{"type": "text", "text": "What is it?"}, image]}],
        )
    message = _error(bad.value, "invalid_request_error")
    assert message.startswith("messages.0.content.1:") and "image" in message and "text-only" in message
    for kwargs, where in (
        ({"stop_sequences": [""]}, "stop_sequences.0"),
        ({"tools": [{"name": "a b", "input_schema": {"type": "object"}}]}, "tools"),
        (
            {
                "tools": [{"name": "f", "input_schema": {"type": "object"}}],
                "tool_choice": {"type": "tool", "name": "g"},
            },
            "tool_choice",
        ),
        ({"thinking": {"type": "sometimes"}}, "thinking.type"),
        (  # a final assistant turn prefills text only
            {
                "messages": [
                    *HELLO,
                    {
                        "role": "assistant",
                        "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}],
                    },
                ]
            },
            "messages.1.content.0",
        ),
        ({"messages": [{"role": "system", "content": "hi"}]}, "messages.0.role"),
        ({"messages": []}, "messages"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"extra_body": {"top_k": -1}}, "top_k"),
        (
            {"output_config": {"format": {"type": "json_schema", "schema": {"type": "no"}}}},
            "output_config.format",
        ),
    ):
        with pytest.raises(anthropic.BadRequestError) as bad:
            client.messages.create(**{"model": F32, "max_tokens": 4, "messages": HELLO, **kwargs})
        assert _error(bad.value, "invalid_request_error").startswith(where), kwargs
        if set(kwargs) <= {"tools", "tool_choice", "thinking", "messages", "output_config"}:
            # count_tokens refuses what create refuses (an unenforceable schema included).
            with pytest.raises(anthropic.BadRequestError) as bad:
                client.messages.count_tokens(**{"model": F32, "messages": HELLO, **kwargs})
            assert _error(bad.value, "invalid_request_error").startswith(where), ("count_tokens", kwargs)
    with pytest.raises(anthropic.BadRequestError) as bad:
        client.messages.count_tokens(model=F32, messages=[{"role": "user", "content": [image]}])
    assert "image" in _error(bad.value, "invalid_request_error")


def test_thinking_is_answered_without_it_and_a_final_assistant_turn_prefills_the_reply(
    client: anthropic.Anthropic,
) -> None:
    """Claude-style clients send `thinking` on every request: the reply is the one without it
    (these models have no reasoning section). A final assistant turn is Anthropic's prefill:
    its tokens end the prompt, the reply continues them and does not repeat them."""
    plain = client.messages.create(model=F32, max_tokens=8, messages=HELLO, **GREEDY)
    thinking = client.messages.create(
        model=F32, max_tokens=8, messages=HELLO, thinking={"type": "enabled", "budget_tokens": 1024}, **GREEDY
    )
    assert [b.type for b in thinking.content] == ["text"] and thinking.content[0].text == plain.content[
        0
    ].text
    start = "The capital of France is the city of"
    prefilled = [*HELLO, {"role": "assistant", "content": start}]
    reply = client.messages.create(model=F32, max_tokens=8, messages=prefilled, **GREEDY)
    assert reply.usage.input_tokens > plain.usage.input_tokens + 5  # the prefill is in the prompt
    assert reply.content[0].text and not reply.content[0].text.strip().startswith(start)
    assert reply.content[0].text != plain.content[0].text
    counted = client.messages.count_tokens(model=F32, messages=prefilled)
    assert counted.input_tokens == reply.usage.input_tokens


def test_errors_keep_each_apis_shape(client: anthropic.Anthropic, server: LiveServer) -> None:
    for stream in (False, True):
        with pytest.raises(anthropic.NotFoundError) as nf:
            client.messages.create(model="no-such-model", max_tokens=4, messages=HELLO, stream=stream)
        assert "no-such-model" in _error(nf.value, "not_found_error")
    with pytest.raises(anthropic.BadRequestError) as bad:
        client.messages.create(
            model=F32, max_tokens=2, messages=[{"role": "user", "content": "word " * 9000}]
        )
    assert "context" in _error(bad.value, "invalid_request_error")
    # Raw HTTP: malformed JSON and a missing max_tokens are Anthropic-shaped 400s, never 422.
    url = f"{server.url}/v1/messages"
    for raw in (b"{not json", json.dumps({"model": F32, "messages": HELLO}).encode()):
        r = httpx.post(url, content=raw, headers={"content-type": "application/json"})
        assert r.status_code == 400 and r.json()["type"] == "error", r.text
        assert r.json()["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in r.json()["error"]["message"]
    missing = httpx.post(f"{url}/nothing-here", json={})
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found_error"
    # The OpenAI routes on the same server keep OpenAI's shape.
    r = httpx.post(
        f"{server.url}/v1/chat/completions", json={"model": F32, "messages": HELLO, "temperature": 3}
    )
    assert r.status_code == 400 and set(r.json()) == {"error"}
    assert set(r.json()["error"]) == {"message", "type", "param", "code"}


def test_anthropic_headers_are_accepted(server: LiveServer) -> None:
    headers = {"anthropic-version": "2023-06-01", "anthropic-beta": "token-counting-2024-11-01"}
    body = {"model": F32, "max_tokens": 1, "messages": HELLO}
    r = httpx.post(f"{server.url}/v1/messages", json=body, headers=headers, timeout=60)
    assert r.status_code == 200 and r.json()["type"] == "message"


def test_api_key_as_x_api_key_or_bearer(
    settings: Settings, engine: Engine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The SDK looks for credentials in the environment and ~/.config: give it none.
    for var in [v for v in os.environ if v.startswith("ANTHROPIC_")]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("HOME", str(tmp_path))
    with LiveServer(create_app(settings.with_(api_key="s3cret"), engine, with_ui=False)) as live:

        def sdk(**auth: object) -> anthropic.Anthropic:
            return anthropic.Anthropic(base_url=live.url, max_retries=0, timeout=60, **auth)  # type: ignore[arg-type]

        def ask(client: anthropic.Anthropic) -> anthropic.types.Message:
            return client.messages.create(model=F32, max_tokens=1, messages=HELLO)

        with pytest.raises(anthropic.AuthenticationError) as denied:
            ask(sdk(api_key="wrong"))
        assert "wrong API key" in _error(denied.value, "authentication_error")
        # A client that sends no key at all (the SDK needs Authorization explicitly omitted).
        with pytest.raises(anthropic.AuthenticationError) as denied:
            ask(sdk(api_key=None, default_headers={"Authorization": anthropic.Omit()}))
        assert "no API key" in _error(denied.value, "authentication_error")
        for auth in (
            {"api_key": "s3cret"},
            {"auth_token": "s3cret"},
            {"api_key": None, "default_headers": {"x-api-key": "s3cret"}},
        ):
            assert ask(sdk(**auth)).type == "message", auth
        url = f"{live.url}/v1/messages/count_tokens"
        body = {"model": F32, "messages": HELLO}
        for headers, status in (
            ({}, 401),
            ({"x-api-key": "nope"}, 401),
            ({"x-api-key": "s3cret"}, 200),
            ({"authorization": "Bearer s3cret"}, 200),
        ):
            r = httpx.post(url, json=body, headers=headers, timeout=60)
            assert r.status_code == status, (headers, r.text)
            if status == 401:
                assert r.json()["error"]["type"] == "authentication_error"
        # OpenAI routes keep their 401 shape.
        r = httpx.get(f"{live.url}/v1/models")
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"


def test_closing_a_stream_stops_generation(client: anthropic.Anthropic, engine: Engine) -> None:
    long = [{"role": "user", "content": "Count from 1 to 1000, separated by commas."}]
    forced = {"extra_body": {"temperature": 0, "ignore_eos": True}}  # greedy; 4000 tokens whatever it says
    with FinishedGenerations(engine) as finished:
        with client.messages.stream(model=F32, max_tokens=4000, messages=long, **forced) as stream:
            for received, _ in enumerate(stream.text_stream, start=1):
                if received == 4:
                    break
        closed_at = time.monotonic()
        # The generation ends as cancelled, far short of its forced length (no clock involved).
        stats = finished.cancelled(max_tokens=4000)
    print(f"engine idle {time.monotonic() - closed_at:.3f}s after closing ({stats.generation_tokens} tok)")


def test_dropping_a_non_streaming_request_stops_generation(server: LiveServer, engine: Engine) -> None:
    long = [{"role": "user", "content": "Count from 1 to 1000, separated by commas."}]
    body = json.dumps(
        {"model": F32, "max_tokens": 4000, "messages": long, "temperature": 0, "ignore_eos": True}
    ).encode()
    head = "POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    with FinishedGenerations(engine) as finished:
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
            assert wait_until(lambda: engine.active_streams == 1, timeout_s=120)
        closed_at = time.monotonic()
        stats = finished.cancelled(max_tokens=4000)
    print(f"engine idle {time.monotonic() - closed_at:.3f}s after leaving ({stats.generation_tokens} tok)")


def test_failure_after_headers_is_an_error_event() -> None:
    # Our framing around a stream that fails once its headers are out (a fake event
    # source: the subject is sse.py's Anthropic dialect, read by the real SDK).
    app = FastAPI()

    @app.post("/v1/messages")
    async def failing() -> object:
        async def events() -> AsyncIterator[dict]:
            msg = {"id": "msg_x", "type": "message", "role": "assistant", "content": [], "model": "m"}
            usage = {"input_tokens": 1, "output_tokens": 0}
            yield {"type": "message_start", "message": {**msg, "stop_reason": None, "usage": usage}}
            raise InvalidRequestError("the engine gave up half-way")

        return sse_response(events(), ANTHROPIC_SSE)

    with LiveServer(app) as live:
        with httpx.stream("POST", f"{live.url}/v1/messages", json={}) as r:
            events = _sse(r)
        assert [name for name, _ in events] == ["message_start", "error"]
        assert events[1][1] == {
            "type": "error",
            "error": {"type": "invalid_request_error", "message": "the engine gave up half-way"},
        }
        sdk = anthropic.Anthropic(base_url=live.url, api_key="x", max_retries=0)
        with (
            pytest.raises(anthropic.APIStatusError, match="half-way"),
            sdk.messages.stream(model="m", max_tokens=1, messages=HELLO) as stream,
        ):
            list(stream.text_stream)
