"""The OpenAI-compatible API as clients see it: a real uvicorn on 127.0.0.1, the
official openai SDK unmodified, the real embedded model on the shared engine."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from api.app import create_app
from tests.helpers import FinishedGenerations, LiveServer, wait_until
from workbench.config import Settings
from workbench.engine import Engine
from workbench.engine.models.embedded import EMBEDDED_IDS

F32 = EMBEDDED_IDS["f32"]
HELLO = [{"role": "user", "content": "What is the capital of France?"}]
CAPITAL = "The capital of France is"
IMAGE = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]


@pytest.fixture(scope="module")
def server(settings: Settings, engine: Engine) -> Iterator[LiveServer]:
    with LiveServer(create_app(settings, engine)) as live:
        yield live


@pytest.fixture(scope="module")
def client(server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=120)


def test_models_lists_every_registered_id(client: openai.OpenAI, engine: Engine) -> None:
    ids = [m.id for m in client.models.list()]
    assert ids == [m.id for m in engine.models()]
    dense = engine.model_info(EMBEDDED_IDS["f32"]).id  # "-f32" names the dense variant anywhere
    assert {EMBEDDED_IDS["4bit"], dense} <= set(ids)
    one = client.models.retrieve(EMBEDDED_IDS["4bit"])
    assert one.id == EMBEDDED_IDS["4bit"] and one.object == "model"
    assert one.model_extra["bits"] == 4 and one.model_extra["variant"] == "4bit"
    assert one.model_extra["dtype"] in ("float32", "float16")  # its scales' dtype
    # 'default' names a model in requests, so it names one here too: the default's object.
    default = client.models.retrieve("default")
    assert default.id == engine.default_model and default.object == "model"
    assert default.model_extra["context_length"] == 8192  # what a client sizes its requests by
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


def test_chat_reply_usage_and_timings(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model=F32, messages=HELLO, max_tokens=12, temperature=0)
    assert r.object == "chat.completion" and r.model == F32
    assert "Paris" in r.choices[0].message.content
    assert r.choices[0].finish_reason in ("stop", "length")
    assert r.usage.prompt_tokens > 5 and 0 < r.usage.completion_tokens <= 12
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    t = r.model_extra["timings"]
    assert t["prompt_tokens"] == r.usage.prompt_tokens
    assert t["generation_tokens"] == r.usage.completion_tokens
    assert t["ttft_s"] > 0 and t["prompt_tps"] > 0 and t["generation_tps"] > 0
    assert 0 < t["peak_memory_gb"] < 10


def test_chat_stream_equals_reply_and_reports_usage(client: openai.OpenAI) -> None:
    whole = client.chat.completions.create(model=F32, messages=HELLO, max_tokens=16, temperature=0)
    chunks = list(
        client.chat.completions.create(
            model=F32,
            messages=HELLO,
            max_tokens=16,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finals) == 1 and finals[0].choices[0].finish_reason == whole.choices[0].finish_reason
    assert finals[0].model_extra["timings"]["generation_tps"] > 0
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert last.usage.completion_tokens == whole.usage.completion_tokens
    assert last.model_extra["timings"]["ttft_s"] > 0
    assert all(c.usage is None for c in chunks[:-1])


def test_text_completion_stream_and_whole(client: openai.OpenAI) -> None:
    whole = client.completions.create(model=F32, prompt=CAPITAL, max_tokens=6, temperature=0)
    assert whole.object == "text_completion" and "Paris" in whole.choices[0].text
    assert whole.usage.completion_tokens == 6 and whole.choices[0].finish_reason == "length"
    parts = list(
        client.completions.create(model=F32, prompt=CAPITAL, max_tokens=6, temperature=0, stream=True)
    )
    assert "".join(p.choices[0].text for p in parts) == whole.choices[0].text
    echoed = client.completions.create(model=F32, prompt=CAPITAL, max_tokens=6, temperature=0, echo=True)
    assert echoed.choices[0].text == CAPITAL + whole.choices[0].text


def test_token_id_prompts_and_batches(client: openai.OpenAI, engine: Engine) -> None:
    ids = engine.tokenize(CAPITAL, F32)
    by_ids = client.completions.create(model=F32, prompt=ids, max_tokens=4, temperature=0)
    by_text = client.completions.create(model=F32, prompt=CAPITAL, max_tokens=4, temperature=0)
    assert by_ids.choices[0].text == by_text.choices[0].text
    batch = client.completions.create(
        model=F32, prompt=["One, two,", "Red, green,"], max_tokens=3, temperature=0
    )
    assert [c.index for c in batch.choices] == [0, 1]
    assert batch.usage.prompt_tokens == sum(
        len(engine.tokenize(p, F32)) for p in ["One, two,", "Red, green,"]
    )


def test_stop_strings_end_the_reply_before_them(client: openai.OpenAI) -> None:
    free = client.completions.create(model=F32, prompt="1, 2, 3, 4,", max_tokens=12, temperature=0).choices[0]
    assert " 7" in free.text, free.text
    for stop in (" 7", [" 7", "never"]):
        r = client.completions.create(
            model=F32, prompt="1, 2, 3, 4,", max_tokens=12, temperature=0, stop=stop
        )
        assert r.choices[0].text == free.text[: free.text.index(" 7")]
        assert r.choices[0].finish_reason == "stop"


def test_seed_reproduces_and_n_gives_distinct_choices(client: openai.OpenAI) -> None:
    def sample(seed: int, n: int = 1) -> list[str]:
        r = client.chat.completions.create(
            model=F32,
            messages=[{"role": "user", "content": "Write a short poem."}],
            max_tokens=16,
            temperature=1.0,
            seed=seed,
            n=n,
        )
        assert [c.index for c in r.choices] == list(range(n))
        return [c.message.content for c in r.choices]

    first = sample(1234)
    assert sample(1234) == first
    assert sample(4321) != first
    pair = sample(1234, n=2)
    assert len(pair) == 2 and pair[0] == first[0] and pair[1] != pair[0]


def test_n_streams_every_choice(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model=F32,
            messages=HELLO,
            max_tokens=4,
            temperature=0.8,
            seed=3,
            n=2,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert sorted(c.choices[0].index for c in finals) == [0, 1]
    usage = chunks[-1].usage
    assert chunks[-1].choices == []
    assert usage.completion_tokens == sum(c.model_extra["timings"]["generation_tokens"] for c in finals)
    assert chunks[-1].model_extra["timings"]["choices"] == 2


def test_logprobs_with_top_logprobs(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model=F32, messages=HELLO, max_tokens=5, temperature=0, logprobs=True, top_logprobs=3
    )
    content = r.choices[0].logprobs.content
    assert len(content) == r.usage.completion_tokens or len(content) == r.usage.completion_tokens - 1
    assert "".join(e.token for e in content) == r.choices[0].message.content
    for e in content:
        assert len(e.top_logprobs) == 3 and e.logprob <= 0
        lps = [t.logprob for t in e.top_logprobs]
        assert lps == sorted(lps, reverse=True)
        assert e.top_logprobs[0].token == e.token and e.top_logprobs[0].logprob == pytest.approx(e.logprob)
    text = client.completions.create(model=F32, prompt=CAPITAL, max_tokens=3, temperature=0, logprobs=2)
    lp = text.choices[0].logprobs
    assert len(lp.tokens) == 3 and len(lp.top_logprobs[0]) == 2
    assert lp.text_offset == [0, len(lp.tokens[0]), len(lp.tokens[0]) + len(lp.tokens[1])]
    streamed = client.chat.completions.create(
        model=F32, messages=HELLO, max_tokens=5, temperature=0, logprobs=True, top_logprobs=3, stream=True
    )
    entries = [
        e for c in streamed if c.choices and c.choices[0].logprobs for e in c.choices[0].logprobs.content
    ]
    assert [(e.token, e.logprob) for e in entries] == [(e.token, e.logprob) for e in content]


def test_max_tokens_ends_with_length(client: openai.OpenAI) -> None:
    for limit in ({"max_tokens": 2}, {"max_completion_tokens": 2}):
        r = client.chat.completions.create(model=F32, messages=HELLO, temperature=0, **limit)
        assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 2


def test_sampling_extras_are_honoured(client: openai.OpenAI, engine: Engine) -> None:
    greedy = client.chat.completions.create(model=F32, messages=HELLO, max_tokens=8, temperature=0)
    top1 = client.chat.completions.create(
        model=F32, messages=HELLO, max_tokens=8, temperature=1.5, seed=9, extra_body={"top_k": 1}
    )
    assert top1.choices[0].message.content == greedy.choices[0].message.content
    token = engine.tokenize(" banana", F32)[0]
    biased = client.completions.create(
        model=F32, prompt="Hello", max_tokens=4, temperature=0, logit_bias={str(token): 100}, logprobs=0
    )
    assert biased.choices[0].logprobs.tokens == [" banana"] * 4
    # Penalties reach the sampler: the reply matches the in-process engine given the same
    # SamplingParams, and differs from plain greedy on a prompt that invites repetition.
    loop = [{"role": "user", "content": "Repeat the word 'cat' twenty times."}]
    plain = client.chat.completions.create(model=F32, messages=loop, max_tokens=24, temperature=0)
    penalised = client.chat.completions.create(
        model=F32,
        messages=loop,
        max_tokens=24,
        temperature=0,
        presence_penalty=1.5,
        frequency_penalty=1.0,
        user="tester",
        extra_body={"min_p": 0.1, "repetition_penalty": 1.5, "some_vendor_field": True},
    )
    same = engine.chat(
        loop,
        F32,
        max_tokens=24,
        presence_penalty=1.5,
        frequency_penalty=1.0,
        min_p=0.1,
        repetition_penalty=1.5,
    )
    assert penalised.choices[0].message.content == same.text
    assert penalised.choices[0].message.content != plain.choices[0].message.content


def _error(exc: openai.APIStatusError) -> dict:
    body = exc.response.json()
    # A prompt past the context also says both sizes (llama.cpp's n_prompt_tokens, n_ctx).
    fields = set(body["error"]) - {"n_prompt_tokens", "n_ctx"}
    assert set(body) == {"error"} and fields == {"message", "type", "param", "code"}, body
    return body["error"]


def test_bad_input_gets_openai_shaped_400s(client: openai.OpenAI, server: LiveServer) -> None:
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model=F32, messages=HELLO, temperature=3)
    err = _error(bad.value)
    assert err["param"] == "temperature" and err["type"] == "invalid_request_error"
    for kwargs, param in (
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "x", "schema": {"type": "no"}},
                }
            },
            "response_format.json_schema.schema",
        ),
        ({"response_format": {"type": "xml"}}, "response_format.type"),
        # Near 0 it pushed logits past float range (logprobs NaN: a 500, found by the fuzzer).
        ({"extra_body": {"repetition_penalty": 1e-300}}, "repetition_penalty"),
        (
            {"tools": [{"type": "function", "function": {"name": "a b", "parameters": {}}}]},
            "tools.0.function.name",
        ),
        (
            {
                "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
                "tool_choice": {"type": "function", "function": {"name": "g"}},
            },
            "tool_choice",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
            None,
        ),
        ({"stop": [""]}, "stop"),
        ({"n": 0}, "n"),
        ({"top_logprobs": 2}, "top_logprobs"),
    ):
        args = {"model": F32, "messages": HELLO, "max_tokens": 2, **kwargs}
        with pytest.raises(openai.BadRequestError) as bad:
            client.chat.completions.create(**args)
        err = _error(bad.value)
        assert param is None or err["param"] == param, err
        if param and param.split(".")[0] in ("response_format", "tools", "tool_choice"):
            assert err["message"].startswith(param), err
    # Raw HTTP: malformed JSON and a missing field are 400s too, never FastAPI's 422.
    url = f"{server.url}/v1/chat/completions"
    for raw in (b"{not json", json.dumps({"model": F32}).encode()):
        r = httpx.post(url, content=raw, headers={"content-type": "application/json"})
        assert r.status_code == 400 and set(r.json()["error"]) == {"message", "type", "param", "code"}
    assert httpx.get(f"{server.url}/v1/nothing-here").json()["error"]["message"]


def test_unknown_model_is_404_and_paths_are_not_models(client: openai.OpenAI, settings: Settings) -> None:
    for stream in (False, True):
        with pytest.raises(openai.NotFoundError) as nf:
            client.chat.completions.create(model="gpt-4o", messages=HELLO, stream=stream)
        err = _error(nf.value)
        assert err["code"] == "model_not_found" and err["param"] == "model"
    # A server-side path is not a model id for a remote caller, even where one exists.
    converted = next(settings.models_dir.glob("converted/*/f32"))
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model=str(converted), messages=HELLO, max_tokens=1)


def test_more_bad_input(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as bad:
        client.completions.create(model=F32, prompt=[2**40], max_tokens=1, echo=True)
    assert "vocabulary" in _error(bad.value)["message"]
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(
            model=F32, messages=[{"role": "user", "content": "hi", "name": "ada"}], max_tokens=1
        )
    assert _error(bad.value)["param"] == "messages.0.name"
    random = client.chat.completions.create(model=F32, messages=HELLO, max_tokens=2, seed=-1)
    assert random.model_extra["timings"]["seed"] is not None


def test_prompt_longer_than_context_is_400(client: openai.OpenAI) -> None:
    long_text = "word " * 9000  # the embedded model's context is 8192 tokens
    for stream in (False, True):  # a stream fails before its headers: a real 400 too
        with pytest.raises(openai.BadRequestError) as bad:
            client.completions.create(model=F32, prompt=long_text, max_tokens=2, stream=stream)
        error = _error(bad.value)
        assert error["code"] == "context_length_exceeded" and error["n_ctx"] == 8192
        assert error["n_prompt_tokens"] >= 9000


def test_failure_after_headers_is_an_error_event(client: openai.OpenAI, server: LiveServer) -> None:
    # The first prompt streams fine, so headers are out when the second one fails.
    body = {"model": F32, "prompt": ["Hi", "word " * 9000], "max_tokens": 2, "temperature": 0, "stream": True}
    with httpx.stream("POST", f"{server.url}/v1/completions", json=body, timeout=60) as r:
        assert r.status_code == 200
        lines = [line for line in r.iter_lines() if line.startswith("data:")]
    last = json.loads(lines[-1].removeprefix("data:"))
    assert last["error"]["code"] == "context_length_exceeded"
    assert all("[DONE]" not in line for line in lines)
    with pytest.raises(openai.APIError, match="context"):
        list(client.completions.create(**body))


def test_closing_a_stream_stops_generation(client: openai.OpenAI, engine: Engine) -> None:
    with FinishedGenerations(engine) as finished:
        stream = client.chat.completions.create(
            model=F32,
            messages=HELLO,
            max_tokens=4000,
            temperature=0,
            stream=True,
            extra_body={"ignore_eos": True},
        )
        for received, _ in enumerate(stream, start=1):
            if received == 4:
                break
        stream.close()
        closed_at = time.monotonic()
        # It ends as cancelled, far short of its forced length (an outcome, not a clock).
        stats = finished.cancelled(max_tokens=4000)
    print(f"engine idle {time.monotonic() - closed_at:.3f}s after closing ({stats.generation_tokens} tok)")


def test_dropping_a_non_streaming_request_stops_generation(server: LiveServer, engine: Engine) -> None:
    body = json.dumps(
        {"model": F32, "messages": HELLO, "max_tokens": 4000, "ignore_eos": True, "temperature": 0}
    ).encode()
    head = "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    with FinishedGenerations(engine) as finished:
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
            assert wait_until(lambda: engine.active_streams == 1, timeout_s=120)
        finished.cancelled(max_tokens=4000)  # see above


def test_health_reports_engine_models_and_memory(server: LiveServer, engine: Engine) -> None:
    engine.load(F32)
    h = httpx.get(f"{server.url}/health").json()
    assert h["status"] == "ok" and h["engine"]["running"] and h["engine"]["device"] == engine.device
    assert F32 in [m["id"] for m in h["loaded_models"]]
    assert h["memory"]["active_gb"] > 0 and h["memory"]["system_total_gb"] > 0


def test_api_key_guards_v1_but_not_health(settings: Settings, engine: Engine) -> None:
    with LiveServer(create_app(settings.with_(api_key="s3cret"), engine)) as live:

        def sdk(key: str) -> openai.OpenAI:
            return openai.OpenAI(base_url=f"{live.url}/v1", api_key=key, max_retries=0)

        with pytest.raises(openai.AuthenticationError) as denied:
            sdk("wrong").chat.completions.create(model=F32, messages=HELLO, max_tokens=1)
        assert _error(denied.value)["code"] == "invalid_api_key"
        # The SDK refuses to send no key at all, so that case goes over raw HTTP.
        body = {"model": F32, "messages": HELLO, "max_tokens": 1}
        for path, kwargs in (("/v1/models", {}), ("/v1/chat/completions", {"json": body})):
            r = httpx.request("POST" if kwargs else "GET", f"{live.url}{path}", **kwargs)
            assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
        r = sdk("s3cret").chat.completions.create(model=F32, messages=HELLO, max_tokens=1)
        assert r.choices[0].finish_reason in ("stop", "length")
        assert httpx.get(f"{live.url}/health").status_code == 200
