"""A Hugging Face-compatible endpoint on 127.0.0.1 for download tests (the transport boundary):
list_models, model_info with file sizes, resolve with HEAD and Range; it can hold a file at a
byte offset until released, drop connections, and misreport sizes. Plus a tiny model writer."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

CHUNK = 64 * 1024


class FakeHub:
    """Repos served from folders. `hold_after[file] = n`: a GET of `file` sends bytes up to
    offset n, then waits for release(). `drop_after[file] = n`: a response closes its
    connection after n bytes (`drops` times). `requests`: (method, path, Range header) of every request."""

    def __init__(self) -> None:
        self.repos: dict[str, dict[str, Any]] = {}
        self.hold_after: dict[str, int] = {}
        self.drop_after: dict[str, int] = {}
        self.drops = 1
        self.lie_sizes = False  # model_info reports 1 byte per file (the disk check passes)
        self.requests: list[tuple[str, str, str | None]] = []
        self.held = threading.Event()  # set while a GET waits at its hold point
        self._release = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def add_repo(self, repo: str, folder: Path, tags: tuple[str, ...] = ("mlx",), params: int = 0) -> None:
        files = {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*")) if p.is_file()}
        sha = hashlib.sha1(repo.encode()).hexdigest()
        digests = {name: hashlib.sha256(path.read_bytes()).hexdigest() for name, path in files.items()}
        self.repos[repo] = {
            "files": files,
            "sha": sha,
            "tags": list(tags),
            "params": params,
            "sha256": digests,
        }

    def release(self) -> None:
        self._release.set()

    def gets(self, suffix: str) -> list[str | None]:
        """The Range headers of the GETs of files ending with `suffix`."""
        return [r for m, p, r in self.requests if m == "GET" and "/resolve/" in p and p.endswith(suffix)]

    def __enter__(self) -> FakeHub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()

    # ---- the hub's JSON ----------------------------------------------------
    def model_json(self, repo: str) -> dict[str, Any]:
        r = self.repos[repo]
        siblings = []
        for name, path in r["files"].items():
            size = 1 if self.lie_sizes else path.stat().st_size
            digest = r["sha256"][name]
            siblings.append(
                {"rfilename": name, "size": size, "lfs": {"sha256": digest, "size": size, "pointerSize": 134}}
            )
        info: dict[str, Any] = {
            "_id": r["sha"][:24],
            "id": repo,
            "modelId": repo,
            "sha": r["sha"],
            "private": False,
            "downloads": 1234,
            "likes": 5,
            "lastModified": "2026-11-30T12:00:00.000Z",
            "tags": r["tags"],
            "library_name": r["tags"][0],
            "siblings": siblings,
        }
        if r["params"]:
            info["safetensors"] = {"parameters": {"F32": r["params"]}, "total": r["params"]}
        return info


def _handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _json(self, body: object, status: int = 200) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._serve(body=True)

        def do_HEAD(self) -> None:
            self._serve(body=False)

        def _serve(self, body: bool) -> None:
            url = urlparse(self.path)
            path = unquote(url.path)
            hub.requests.append((self.command, path, self.headers.get("Range")))
            if path == "/api/models":
                self._list(parse_qs(url.query))
            elif m := re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/revision/[^/]+)?", path):
                if m.group(1) in hub.repos:
                    self._json(hub.model_json(m.group(1)))
                else:
                    self._json({"error": "Repository not found"}, 404)
            elif m := re.fullmatch(r"/([^/]+/[^/]+)/resolve/[^/]+/(.+)", path):
                self._file(m.group(1), m.group(2), body)
            else:
                self._json({"error": f"no route {path}"}, 404)

        def _list(self, query: dict[str, list[str]]) -> None:
            wanted = set(query.get("filter", []))
            search = (query.get("search") or [""])[0].lower()
            found = [
                hub.model_json(repo)
                for repo, r in hub.repos.items()
                if wanted <= set(r["tags"]) and search in repo.lower()
            ]
            self._json(found)

        def _file(self, repo: str, name: str, body: bool) -> None:
            r = hub.repos.get(repo)
            if r is None or name not in r["files"]:
                self.send_response(404)
                self.send_header("X-Error-Code", "EntryNotFound")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            data = r["files"][name].read_bytes() if body else b"\0" * r["files"][name].stat().st_size
            start = 0
            if m := re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or ""):
                start = int(m.group(1))
            self.send_response(206 if start else 200)
            self.send_header("X-Repo-Commit", r["sha"])
            self.send_header("ETag", f'"{r["sha256"][name]}"')
            self.send_header("Content-Length", str(len(data) - start))
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.end_headers()
            if body:
                self._send(name, data, start)

        def _send(self, name: str, data: bytes, at: int) -> None:
            hold, drop = hub.hold_after.get(name), hub.drop_after.get(name)
            drop = at + drop if drop is not None and hub.drops > 0 else None  # per response
            while at < len(data):
                end = min(at + CHUNK, len(data))
                for mark in (hold, drop):
                    if mark is not None and at < mark < end:
                        end = mark
                self.wfile.write(data[at:end])
                self.wfile.flush()
                at = end
                if at == drop and hub.drops > 0:
                    hub.drops -= 1
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if at == hold and not hub._release.is_set():
                    hub.held.set()
                    hub._release.wait(120)

    return Handler


def write_tiny_model(source: Path, folder: Path, hidden: int = 64) -> int:
    """A 2-layer llama with random float32 weights under the embedded model's tokenizer
    (its files copied from `source`): about 13 MB. Returns its parameter count."""
    import numpy as np
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (source / name).exists():
            shutil.copy(source / name, folder / name)
    vocab = json.loads((source / "config.json").read_text())["vocab_size"]
    config = {
        "model_type": "llama",
        "hidden_size": hidden,
        "intermediate_size": 2 * hidden,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "vocab_size": vocab,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "max_position_embeddings": 2048,
        "tie_word_embeddings": True,
        "torch_dtype": "float32",
    }
    (folder / "config.json").write_text(json.dumps(config))
    rng = np.random.default_rng(0)
    shapes = {"model.embed_tokens.weight": (vocab, hidden), "model.norm.weight": (hidden,)}
    kv = hidden // 4 * 2
    for i in range(2):
        p = f"model.layers.{i}."
        shapes |= {
            p + "self_attn.q_proj.weight": (hidden, hidden),
            p + "self_attn.k_proj.weight": (kv, hidden),
            p + "self_attn.v_proj.weight": (kv, hidden),
            p + "self_attn.o_proj.weight": (hidden, hidden),
            p + "mlp.gate_proj.weight": (2 * hidden, hidden),
            p + "mlp.up_proj.weight": (2 * hidden, hidden),
            p + "mlp.down_proj.weight": (hidden, 2 * hidden),
            p + "input_layernorm.weight": (hidden,),
            p + "post_attention_layernorm.weight": (hidden,),
        }
    tensors = {
        k: (np.ones(s) if len(s) == 1 else rng.normal(0, 0.02, s)).astype(np.float32)
        for k, s in shapes.items()
    }
    save_file(tensors, str(folder / "model.safetensors"))
    return sum(t.size for t in tensors.values())
