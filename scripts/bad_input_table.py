"""Print the README's bad-input table: each bad input tried against a live server.

Usage: .venv/bin/workbench serve --port 8080 &  then  .venv/bin/python scripts/bad_input_table.py http://127.0.0.1:8080
"""

import json
import sys

import httpx

base = sys.argv[1]
H = {"Content-Type": "application/json"}
hi = [{"role": "user", "content": "Hi"}]


def chat(**kw):
    return ("POST", "/v1/chat/completions", {"model": "default", "messages": hi, **kw})


cases = [
    ("body is not JSON", ("POST", "/v1/chat/completions", "{not json")),
    ("`messages` missing", ("POST", "/v1/chat/completions", {"model": "default"})),
    ("`messages: []`", chat(messages=[])),
    ("`temperature: 3`", chat(temperature=3)),
    ("`max_tokens: 0`", chat(max_tokens=0)),
    ("prompt of 9,000 words", chat(messages=[{"role": "user", "content": "word " * 9000}])),
    ("`n: 17`", chat(n=17)),
    ("17 stop strings", chat(stop=[str(i) for i in range(17)])),
    ("a 1,001-character stop string", chat(stop="x" * 1001)),
    ("301 `logit_bias` entries", chat(logit_bias={str(i): 1 for i in range(301)})),
    ("`logit_bias` token outside the vocabulary", chat(logit_bias={"999999": 5})),
    ("`top_logprobs: 21`", chat(logprobs=True, top_logprobs=21)),
    (
        "`tool_choice` naming a tool not offered",
        chat(
            tools=[{"type": "function", "function": {"name": "f"}}],
            tool_choice={"type": "function", "function": {"name": "g"}},
        ),
    ),
    (
        "`response_format` schema llguidance cannot enforce",
        chat(response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "no"}}}),
    ),
    (
        "image content",
        chat(
            messages=[
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}
            ]
        ),
    ),
    ('`model: "no-such-model"`', chat(model="no-such-model")),
    ('`model: "../../etc/passwd"`', chat(model="../../etc/passwd")),
    ('`model: "/etc/passwd"`', chat(model="/etc/passwd")),
    ("unregistered hub id `someone/some-model`", chat(model="someone/some-model")),
    (
        "`prompt_ids` token outside the vocabulary",
        ("POST", "/v1/completions", {"model": "default", "prompt": [999999]}),
    ),
    ("Anthropic: `max_tokens` missing", ("POST", "/v1/messages", {"model": "default", "messages": hi})),
    (
        "Anthropic: image block",
        (
            "POST",
            "/v1/messages",
            {
                "model": "default",
                "max_tokens": 8,
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "image",
                                "source": {"type": "base64", "media_type": "image/png", "data": "AA=="},
                            }
                        ],
                    }
                ],
            },
        ),
    ),
    (
        "body over 8 MB",
        (
            "POST",
            "/v1/chat/completions",
            {"model": "default", "messages": [{"role": "user", "content": "x" * 8_100_000}]},
        ),
    ),
    ("unknown route `/v1/nope`", ("GET", "/v1/nope", None)),
]
rows = []
with httpx.Client(base_url=base, timeout=60) as c:
    for label, (method, path, body) in cases:
        if isinstance(body, str):
            r = c.request(method, path, content=body, headers=H)
        else:
            r = c.request(method, path, json=body) if body is not None else c.request(method, path)
        j = r.json()
        msg = j["error"]["message"] if "error" in j else json.dumps(j)[:120]
        rows.append((label, r.status_code, msg))
    r = c.get("/v1/models", headers={"Host": "attacker.example"})
    rows.append(("`Host: attacker.example` (DNS rebinding)", r.status_code, r.json()["error"]["message"]))
print("| input | status | message |")
print("|---|---|---|")
for label, status, msg in rows:
    msg = msg.replace("|", "\\|").replace("\n", " ")
    if len(msg) > 180:
        msg = msg[:177] + "..."
    print(f"| {label} | {status} | {msg} |")
