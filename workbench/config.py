"""Settings: built once from the environment and CLI flags, then passed down; each setting is
declared once (variable, flag, help, parser) and from_env, the flags and errors derive from it."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal, get_args

from workbench.config_parsers import (
    _budget,
    _cap,
    _choice,
    _comma_list,
    _decode_threads,
    _int_at_least,
    _int_in,
    _number,
    _optional_path,
    _optional_text,
    _parse_bool,
    _path_list,
    _port,
    _prefill_step,
    _speculation,
    _text,
    check_value,
)

DEFAULT_MODEL_ALIAS = "default"
# What a remote caller may name as a model: registered ids only, or hub ids too, or
# also paths on this machine (engine.models.catalog resolve's scopes).
ApiModels = Literal["registered", "hub", "any"]
API_MODELS: tuple[str, ...] = get_args(ApiModels)
# What a max_tokens beyond the context's room means (WORKBENCH_MAX_TOKENS).
MaxTokensPolicy = Literal["clamp", "reject"]
MAX_TOKENS_POLICIES: tuple[str, ...] = get_args(MaxTokensPolicy)
# Where a setting's CLI flag lives: on every engine command, on `serve` only, or nowhere.
FlagScope = Literal["common", "serve", "none"]


@dataclass(frozen=True)
class SettingSpec:
    """How one Settings field is read: its variable, its flag, what it is, its parser."""

    env: str
    help: str
    parse: Callable[[str], Any]
    scope: FlagScope = "serve"
    flag: str = ""  # default: --<field-name>

    @property
    def is_flag(self) -> bool:
        """A switch (--allow-download) rather than a flag with a value."""
        return self.parse is _parse_bool

    @property
    def repeatable(self) -> bool:
        """Given once per item (--model-path A --model-path B)."""
        return self.parse is _path_list


def setting(
    default: Any,
    help: str,
    parse: Callable[[str], Any],
    *,
    scope: FlagScope = "serve",
    env: str = "",
    flag: str = "",
) -> Any:
    """A Settings field with its SettingSpec (env defaults to WORKBENCH_<FIELD>, flag to
    --<field-name>; filled in by Settings.specs)."""
    spec = {"help": help, "parse": parse, "scope": scope, "env": env, "flag": flag}
    if callable(default):
        return field(default_factory=default, metadata={"setting": spec})
    return field(default=default, metadata={"setting": spec})


def _default_models_dir(env: Mapping[str, str]) -> Path:
    cache = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "mlx-workbench" / "models"


@dataclass(frozen=True)
class Settings:
    """Everything configurable. `workbench serve --help` and docs/settings.md list each
    setting with its variable; `Settings.specs()` is the table they come from."""

    models_dir: Path = setting(
        lambda: _default_models_dir(os.environ),
        "converted models and user model folders (default ~/.cache/mlx-workbench/models)",
        Path,
        scope="common",
    )
    default_model: str = setting(
        DEFAULT_MODEL_ALIAS, "id used when a request names no model or says 'default'", _text
    )
    model_paths: tuple[str, ...] = setting(
        (),
        f"extra MLX model folders, .gguf files or hub ids to register ('{os.pathsep}'-separated; "
        "the flag is repeatable)",
        _path_list,
        scope="common",
        flag="--model-path",
    )
    allow_download: bool = setting(
        False,
        "let a request (or a command) that names a hub id not in the local cache fetch it (HF_HUB_OFFLINE=1 "
        "forces off); `workbench pull` and the Models tab download regardless",
        _parse_bool,
        scope="common",
    )
    memory_budget_gb: float | None = setting(
        None, "memory budget for loaded models in GB, or 'auto' (60% of system RAM)", _budget, scope="common"
    )
    blas: str = setting(
        "auto", "'auto' (an optimized BLAS when found), 'off', or a BLAS library path", _text, scope="common"
    )
    results_dir: Path = setting(Path("results"), "where CSV reports go", Path, scope="none")
    host: str = setting("127.0.0.1", "interface `workbench serve` listens on", _text)
    port: int = setting(8080, "port `workbench serve` listens on", _port)
    api_key: str | None = setting(
        None,
        "require 'Authorization: Bearer KEY' (or 'x-api-key: KEY') on /v1 routes, and KEY as the UI's "
        "sign-in password (prefer the variable: command lines are visible to other users)",
        _optional_text,
    )
    max_batch: int = setting(
        8, "generations decoded together per model (1 = one at a time)", _int_at_least(1)
    )
    max_queue: int = setting(
        64,
        "generations that may wait beyond max_batch before requests get 429 (Retry-After)",
        _int_at_least(0),
    )
    prefill_step: int | None = setting(
        None,
        "prompt tokens processed per engine step, or 'auto' (256 on the CPU backend, 2048 on a GPU): "
        "a long prompt is processed in chunks this long, each taking turns with a token for every "
        "running stream (smaller: those streams keep flowing; on a GPU larger chunks process it sooner)",
        _prefill_step,
    )
    prefill_share: float = setting(
        1.0,
        "while streams decode, a prompt longer than prefill_step has its chunks cut to take about "
        "this many of their decode steps' time (measured, so they shrink as its context deepens), "
        "keeping their tokens flowing while it is processed; 0: always prefill_step tokens (its "
        "first token sooner, the streams frozen meanwhile)",
        _number("decode steps", positive=False),
    )
    decode_threads: str = setting(
        "auto",
        "OpenBLAS threads for decode steps on the CPU backend (prompt work uses all): auto (per model "
        "and batch size, the count its steps measure fastest), all, or a count",
        _decode_threads,
    )
    cpu_rope: str = setting(
        "lean",
        "rotary embeddings on the CPU backend: 'lean' (each forward builds its cosines and sines once "
        "and every layer reuses them; the same bits as mx.fast.rope, a few % faster a step) or 'fast' "
        "(mx.fast.rope in every layer, as mlx-lm does; its CPU path rebuilds them each call)",
        _choice(("lean", "fast")),
        scope="common",
    )
    cpu_swiglu: str = setting(
        "lean",
        "SwiGLU activations on the CPU backend: 'lean' (prompt chunks run MLX's own exp polynomial "
        "fused: the same bits, about 2x faster; decode steps keep mlx-lm's) or 'mlx' (mlx-lm's "
        "swiglu throughout; MLX's CPU exp is scalar, ~20 ns an element)",
        _choice(("lean", "mlx")),
        scope="common",
    )
    speculative: str = setting(
        "off",
        "speculative decoding for requests that do not ask: off, prompt_lookup[:N] (drafts from the "
        "prompt and the output so far) or draft:MODEL[:N] (a registered model with the same "
        "tokenizer drafts); N draft tokens per step (default 8 for prompt_lookup, 3 for a draft model)",
        _speculation,
    )
    kv_bits: int = setting(
        0,
        "how the KV cache is stored for requests that do not say (their kv_bits): 2-8 bits quantized "
        "(mx.quantize's 2, 3, 4, 5, 6, 8), 16 float16, or 0 the model's precision; such generations "
        "decode outside the batch (benchmarks use their spec's kv_bits instead)",
        _int_in((0, 2, 3, 4, 5, 6, 8, 16), " (0 = the model's precision, 16 = float16)"),
    )
    kv_group_size: int = setting(
        64,
        "KV cache quantization's group size (32, 64 or 128; it must divide the head dimension)",
        _int_in((32, 64, 128)),
    )
    quantized_kv_start: int = setting(
        0,
        "quantize the KV cache once the context passes this many tokens (0: from the start; "
        "mlx_lm.generate's default is 5000)",
        _int_at_least(0),
    )
    prompt_cache_entries: int = setting(
        8, "prompt prefixes kept per model for reuse across requests (0 = no prompt cache)", _int_at_least(0)
    )
    prompt_cache_gb: float = setting(
        1.0, "the prompt cache's size bound per model, GB", _number("GB", positive=True)
    )
    prompt_cache_dir: Path | None = setting(
        None,
        "a folder for the prompt cache's disk tier (unset: memory only): each reply's KV cache is "
        "written there (mlx-lm's prompt-cache files) when the engine is idle and at shutdown, and a "
        "prompt that extends one reuses it, after a restart too",
        _optional_path,
    )
    prompt_cache_disk_gb: float = setting(
        4.0,
        "the disk tier's size bound, GB (least recently used files go first)",
        _number("GB", positive=True),
    )
    allowed_hosts: tuple[str, ...] = setting(
        (), "Host headers served, comma-separated ('*' = any; default: loopback names and host)", _comma_list
    )
    cors_origins: tuple[str, ...] = setting(
        (), "browser origins allowed cross-origin, comma-separated (default none)", _comma_list
    )
    max_body_mb: float = setting(
        8.0, "largest /v1 request body in MB (413 beyond it)", _number("MB", positive=True)
    )
    api_models: ApiModels = setting(
        "registered",
        "what a request may name as its model: 'registered' ids and aliases only, also 'hub' ids, "
        "or 'any' (also paths on this machine)",
        _choice(API_MODELS),
    )
    max_tokens_policy: MaxTokensPolicy = setting(
        "clamp",
        "a max_tokens above what the context has left: 'clamp' generates until the context is full "
        "and stops with finish_reason 'length' (as llama.cpp, Ollama and LM Studio do: agents send "
        "their own model's output limit), 'reject' answers 400",
        _choice(MAX_TOKENS_POLICIES),
        env="WORKBENCH_MAX_TOKENS",
        flag="--max-tokens-policy",
    )
    max_output_tokens: int | None = setting(
        None,
        "most tokens one reply may generate, whatever its max_tokens asks (it then stops with "
        "finish_reason 'length', as llama.cpp's --n-predict); 0 or unset: up to the context",
        _cap,
    )
    responses_stored: int = setting(
        256,
        "Responses API responses kept in memory for previous_response_id and GET /v1/responses/{id} "
        "(least recently used out first; 0 = none)",
        _int_at_least(0),
    )
    request_timeout_s: float = setting(
        600.0,
        "longest a /v1 generation may take, queueing included: 504 (or a stream error event) "
        "beyond it (0 = no limit)",
        _number("seconds", positive=False),
    )
    parallel: str = setting(
        "tensor",
        "how a distributed engine (serve --ranks / --hostfile) splits a model: 'tensor' (each layer "
        "over every rank) or 'pipeline' (layers in stages; families with mlx-lm's PipelineMixin)",
        _choice(("tensor", "pipeline")),
        scope="none",
    )
    rank_timeout_s: float = setting(
        5.0,
        "a distributed engine's rank that sends no heartbeat for this long counts as stalled: the "
        "server then answers 503 rank_lost",
        _number("seconds", positive=True),
        scope="none",
    )
    drain_s: float = setting(
        30.0,
        "on SIGTERM, how long requests in flight may finish while new ones get 503",
        _number("seconds", positive=False),
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "models_dir", Path(self.models_dir).expanduser())
        object.__setattr__(self, "results_dir", Path(self.results_dir).expanduser())
        if self.api_key is not None and not self.api_key.strip():
            object.__setattr__(self, "api_key", None)  # an empty key means "no key"
        for name in ("allowed_hosts", "cors_origins"):
            items = tuple(str(i).strip().lower() for i in getattr(self, name) if str(i).strip())
            object.__setattr__(self, name, items)
        # Values given in code (not parsed from text) meet the same rules, named by field.
        for name, spec in self.specs().items():
            check_value(name, spec.parse, getattr(self, name))

    def served_hosts(self) -> tuple[str, ...]:
        """Host header names the server answers ('*' = any): `allowed_hosts` when set; else
        the loopback names and `host`, or any host when `host` binds every interface."""
        if self.allowed_hosts:
            return self.allowed_hosts
        if self.host in ("0.0.0.0", "::", ""):
            return ("*",)
        return tuple(dict.fromkeys(("127.0.0.1", "localhost", "::1", self.host.lower())))

    @classmethod
    def specs(cls) -> dict[str, SettingSpec]:
        """Field name -> SettingSpec, in declaration order."""
        return dict(_specs(cls))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read WORKBENCH_* variables; keyword overrides (typed values) win when not None.
        A bad value raises ValueError naming the variable and what it accepts."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {"models_dir": _default_models_dir(env)}
        for name, spec in cls.specs().items():
            raw = env.get(spec.env)
            if raw is not None and raw.strip():  # an empty variable counts as unset
                values[name] = parse_setting(spec, spec.env, raw)
        if _parse_bool(env.get("HF_HUB_OFFLINE", "0") or "0"):
            values["allow_download"] = False
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def with_(self, **changes: Any) -> Settings:
        """A copy with some fields changed (settings stay immutable)."""
        return replace(self, **changes)


def _specs(cls: type) -> Iterator[tuple[str, SettingSpec]]:
    for f in fields(cls):
        spec = dict(f.metadata["setting"])
        spec["env"] = spec["env"] or f"WORKBENCH_{f.name.upper()}"
        spec["flag"] = spec["flag"] or "--" + f.name.replace("_", "-")
        yield f.name, SettingSpec(**spec)


def parse_setting(spec: SettingSpec, source: str, raw: str) -> Any:
    """`raw` parsed for `spec`; a bad value is a one-line ValueError naming `source` (the
    variable or flag it came from) and what it accepts."""
    try:
        return spec.parse(raw)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{source}={raw!r}: {exc}") from None


# ---- the command line: flags derived from the same specs ----------------------------
def add_setting_flags(parser: argparse.ArgumentParser, scope: FlagScope) -> None:
    """One flag per setting of `scope`, taking text that the setting's own parser reads
    (so a bad flag gets the same message as a bad variable)."""
    for name, spec in Settings.specs().items():
        if spec.scope != scope:
            continue
        default = Settings.__dataclass_fields__[name].default
        shown = "" if default in (None, (), MISSING) or spec.is_flag else f"default {default}; "
        text = f"{spec.help} ({shown}{spec.env})".replace("%", "%%")
        if spec.is_flag:
            parser.add_argument(spec.flag, dest=name, action="store_true", default=None, help=text)
        elif spec.repeatable:
            parser.add_argument(spec.flag, dest=name, action="append", metavar="PATH", help=text)
        else:
            parser.add_argument(spec.flag, dest=name, metavar=name.split("_")[-1].upper(), help=text)


def flags_given(args: argparse.Namespace) -> dict[str, str]:
    """Setting field -> the text its flag was given (flags left out are absent)."""
    given = {}
    for name, spec in Settings.specs().items():
        value = getattr(args, name, None)
        if value is None:
            continue
        if spec.is_flag:
            value = "1" if value else "0"
        elif spec.repeatable:
            value = os.pathsep.join(value)
        given[name] = value
    return given


def settings_from_args(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> Settings:
    """Settings from the environment, with the flags in `args` winning; a bad flag is a
    one-line ValueError naming the flag and what it accepts."""
    specs = Settings.specs()
    parsed = {
        name: parse_setting(specs[name], specs[name].flag, raw) for name, raw in flags_given(args).items()
    }
    return Settings.from_env(env, **parsed)


def env_from_args(args: argparse.Namespace) -> dict[str, str]:
    """The WORKBENCH_* variables that carry `args`' flags to a process that reads only its
    environment (uvicorn's app factory). Check them with settings_from_args first."""
    specs = Settings.specs()
    return {specs[name].env: raw for name, raw in flags_given(args).items()}
