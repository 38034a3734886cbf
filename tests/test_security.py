"""Safe defaults at the HTTP edge against a live server on 127.0.0.1: the Host-header
allowlist (DNS rebinding), CORS only for configured origins, the request body bound."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import pytest

from api.app import create_app
from api.security import host_name
from tests.helpers import LiveServer
from workbench.config import Settings
from workbench.engine import Engine


@pytest.fixture(scope="module")
def server(settings: Settings, engine: Engine) -> Iterator[LiveServer]:
    with LiveServer(create_app(settings.with_(max_body_mb=0.01), engine, with_ui=False)) as live:
        yield live


def test_host_names_are_parsed_like_browsers_send_them() -> None:
    assert host_name("LocalHost:8080") == "localhost"
    assert host_name("[::1]:8080") == "::1"
    assert host_name("127.0.0.1") == "127.0.0.1"
    assert host_name("::1") == "::1"
    assert Settings().served_hosts() == ("127.0.0.1", "localhost", "::1")
    assert Settings(host="0.0.0.0").served_hosts() == ("*",)
    assert Settings(allowed_hosts=("Box.lan",)).served_hosts() == ("box.lan",)


def test_a_foreign_host_header_is_refused_before_any_route(server: LiveServer) -> None:
    for host in ("127.0.0.1", f"127.0.0.1:{server.port}", f"localhost:{server.port}", f"[::1]:{server.port}"):
        assert httpx.get(f"{server.url}/health", headers={"Host": host}).status_code == 200, host
    # A rebinding page: its own name, resolved to 127.0.0.1.
    for path in ("/health", "/v1/models"):
        r = httpx.get(f"{server.url}{path}", headers={"Host": "attacker.example:8080"})
        assert r.status_code == 403, (path, r.text)
        assert (
            r.json()["error"]["code"] == "host_not_allowed"
            and "attacker.example" in r.json()["error"]["message"]
        )
    r = httpx.post(f"{server.url}/v1/messages", headers={"Host": "evil.test"}, json={})
    assert r.status_code == 403 and r.json()["type"] == "error"  # Anthropic's shape there
    # Without any Host header at all (HTTP/1.0 style) it is refused too.
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"GET /health HTTP/1.0\r\n\r\n")
        assert sock.recv(64).startswith(b"HTTP/1.1 403")


def test_no_cors_unless_origins_are_configured(
    settings: Settings, engine: Engine, server: LiveServer
) -> None:
    origin = {"Origin": "http://page.example", "Access-Control-Request-Method": "POST"}
    r = httpx.options(f"{server.url}/v1/chat/completions", headers=origin)
    assert "access-control-allow-origin" not in r.headers
    r = httpx.get(f"{server.url}/v1/models", headers={"Origin": "http://page.example"})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
    configured = settings.with_(cors_origins=("http://app.example",))
    with LiveServer(create_app(configured, engine, with_ui=False)) as live:
        r = httpx.options(
            f"{live.url}/v1/chat/completions",
            headers={"Origin": "http://app.example", "Access-Control-Request-Method": "POST"},
        )
        assert r.headers["access-control-allow-origin"] == "http://app.example"
        assert r.headers.get("access-control-allow-credentials") == "true"
        r = httpx.get(f"{live.url}/v1/models", headers={"Origin": "http://page.example"})
        assert "access-control-allow-origin" not in r.headers
    anyone = settings.with_(cors_origins=("*",))
    with LiveServer(create_app(anyone, engine, with_ui=False)) as live:
        r = httpx.get(f"{live.url}/v1/models", headers={"Origin": "http://page.example"})
        assert r.headers["access-control-allow-origin"] == "*"
        assert "access-control-allow-credentials" not in r.headers  # never a wildcard with credentials


def test_bodies_over_the_limit_get_413_declared_or_not(server: LiveServer) -> None:
    big = {"model": "default", "messages": [{"role": "user", "content": "x" * 20_000}]}
    r = httpx.post(f"{server.url}/v1/chat/completions", json=big)
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
    assert "limit is 10,000 bytes" in r.json()["error"]["message"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: chunked transfer
        yield b'{"model": "default", "messages": [{"role": "user", "content": "'
        for _ in range(30):
            yield b"y" * 1000
        yield b'"}]}'

    r = httpx.post(
        f"{server.url}/v1/messages", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 413 and r.json()["error"]["type"] == "request_too_large"  # Anthropic's shape
    # Small bodies pass through untouched.
    ok = httpx.post(
        f"{server.url}/v1/chat/completions",
        json={"model": "default", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2},
        timeout=120,
    )
    assert ok.status_code == 200, ok.text


def test_limits_answer_400_naming_the_parameter(server: LiveServer) -> None:
    url = f"{server.url}/v1/chat/completions"
    hi = [{"role": "user", "content": "Hi"}]
    too_long = [{"role": "user", "content": "1" * 9000}]  # 9000 tokens (one a digit) in < 10 kB
    cases = [
        # A prompt past the context (max_tokens past it is cut to fit: tests/test_agents.py).
        ({"messages": too_long}, "messages", "context of 8192"),
        ({"n": 17}, "n", "less than or equal to 16"),
        ({"stop": [str(i) for i in range(17)]}, "stop", "at most 16"),
        ({"stop": "x" * 1001}, "stop", "at most 1000 characters"),
        ({"logit_bias": {str(i): 1 for i in range(301)}}, "logit_bias", "at most 300"),
        ({"top_logprobs": 21, "logprobs": True}, "top_logprobs", "less than or equal to 20"),
    ]
    for extra, param, words in cases:
        r = httpx.post(url, json={"model": "default", "messages": hi, "max_tokens": 4, **extra}, timeout=60)
        assert r.status_code == 400, (extra, r.text)
        error = r.json()["error"]
        assert error["param"] == param and words in error["message"], (extra, error)
    r = httpx.post(
        f"{server.url}/v1/messages",
        json={"model": "default", "max_tokens": 4, "messages": too_long},
        timeout=60,
    )
    assert r.status_code == 400 and "context of 8192" in r.json()["error"]["message"]
    assert r.json()["error"]["n_ctx"] == 8192 and r.json()["error"]["n_prompt_tokens"] > 9000
