"""The UI inside the app: mounted once at /ui next to /v1, / redirects there, and an
API key guards the UI as it guards /v1 (real servers on 127.0.0.1, plain HTTP)."""

from __future__ import annotations

import httpx

from api.app import create_app
from tests.helpers import LiveServer
from workbench.config import Settings
from workbench.engine import Engine


def test_ui_and_api_share_one_server(settings: Settings, engine: Engine) -> None:
    with (
        LiveServer(create_app(settings, engine)) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        home = client.get("/", follow_redirects=False)
        assert home.status_code in (302, 307) and home.headers["location"] == "/ui/"
        page = client.get("/ui/")
        assert page.status_code == 200 and "<html" in page.text
        config = client.get("/ui/config").json()
        ids = {c["props"].get("elem_id") for c in config["components"]}
        assert {"chat-input", "chat-schema", "chat-parsed", "compare-run", "models-table", "vote-A"} <= ids
        assert client.get("/v1/models").status_code == 200
        # /v1 keeps OpenAI's error shape; the UI mount does not swallow its 404s.
        missing = client.get("/v1/nope")
        assert missing.status_code == 404 and "error" in missing.json()


def test_an_api_key_guards_the_ui_too(settings: Settings, engine: Engine) -> None:
    keyed = settings.with_(api_key="sekret")
    with (
        LiveServer(create_app(keyed, engine)) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        assert client.get("/ui/config").status_code == 401
        assert client.get("/ui/gradio_api/info").status_code == 401
        assert client.post("/ui/login", data={"username": "me", "password": "wrong"}).status_code == 400
        assert client.post("/ui/login", data={"username": "me", "password": "sekret"}).status_code == 200
        assert client.get("/ui/config").status_code == 200  # signed in (cookie)
        assert client.get("/v1/models").status_code == 401  # the API still wants its header
        assert client.get("/health").status_code == 200
