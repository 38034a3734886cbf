"""Settings: built once from the environment (and CLI flags), then passed down.

Nothing reads os.environ after this; there is no global settings object.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, get_args

DEFAULT_MODEL_ALIAS = "default"
TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off", ""}
# What a remote caller may name as a model: registered ids only, or hub ids too, or
# also paths on this machine (engine.registry.resolve's scopes).
ApiModels = Literal["registered", "hub", "any"]
API_MODELS: tuple[str, ...] = get_args(ApiModels)


def _default_models_dir(env: Mapping[str, str]) -> Path:
    cache = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "mlx-workbench" / "models"


def _parse_bool(name: str, raw: str) -> bool:
    word = raw.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError(f"{name}={raw!r}: expected one of 1/0, true/false, yes/no, on/off")


def _parse_budget(name: str, raw: str) -> float | None:
    if raw.strip().lower() in {"", "auto"}:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r}: expected a number of GB or 'auto'") from None
    if not value > 0:
        raise ValueError(f"{name}={raw!r}: must be > 0")
    return value


@dataclass(frozen=True)
class Settings:
    """Everything configurable, with the environment variable that sets it.

    models_dir      WORKBENCH_MODELS_DIR      converted models and user model folders
    default_model   WORKBENCH_DEFAULT_MODEL   id used when a request names no model
    model_paths     WORKBENCH_MODEL_PATHS     extra MLX folders / GGUF files (os.pathsep list)
    allow_download  WORKBENCH_ALLOW_DOWNLOAD  fetch hub ids (off by default; HF_HUB_OFFLINE=1 forces off)
    memory_budget_gb WORKBENCH_MEMORY_BUDGET_GB loaded-model budget; 'auto' = 60% of system RAM
    blas            WORKBENCH_BLAS            'auto' (optimized BLAS if found), 'off', or a library path
    results_dir     WORKBENCH_RESULTS_DIR     CSV reports
    host, port      WORKBENCH_HOST/PORT       where `workbench serve` listens
    api_key         WORKBENCH_API_KEY         when set, every /v1 route needs the key (Bearer or x-api-key)
    max_batch       WORKBENCH_MAX_BATCH       generations decoded together per model (1 = one at a time)
    max_queue       WORKBENCH_MAX_QUEUE       generations waiting beyond max_batch before 429 (Retry-After)
    prompt_cache_entries WORKBENCH_PROMPT_CACHE_ENTRIES cached prompt prefixes per model (0 = no cache)
    prompt_cache_gb WORKBENCH_PROMPT_CACHE_GB the prompt cache's size bound per model
    allowed_hosts   WORKBENCH_ALLOWED_HOSTS   Host headers served (comma list; '*' = any); default:
                                              loopback names and `host` (any, when it binds all)
    cors_origins    WORKBENCH_CORS_ORIGINS    browser origins allowed cross-origin (comma list; none)
    max_body_mb     WORKBENCH_MAX_BODY_MB     largest /v1 request body (413 beyond it)
    api_models      WORKBENCH_API_MODELS      what an HTTP request may name: 'registered' ids and
                                              aliases only (default), also 'hub' ids, or 'any'
                                              (also this machine's paths)
    request_timeout_s WORKBENCH_REQUEST_TIMEOUT_S longest a /v1 generation may take, queue included
                                              (504 / a stream error beyond it; 0 = no limit)
    drain_s         WORKBENCH_DRAIN_S         on SIGTERM, how long in-flight requests may finish
                                              while new ones get 503
    """

    models_dir: Path = field(default_factory=lambda: _default_models_dir(os.environ))
    default_model: str = DEFAULT_MODEL_ALIAS
    model_paths: tuple[str, ...] = ()
    allow_download: bool = False
    memory_budget_gb: float | None = None
    blas: str = "auto"
    results_dir: Path = Path("results")
    host: str = "127.0.0.1"
    port: int = 8080
    api_key: str | None = field(default=None, repr=False)
    max_batch: int = 8
    max_queue: int = 64
    prompt_cache_entries: int = 8
    prompt_cache_gb: float = 1.0
    allowed_hosts: tuple[str, ...] = ()
    cors_origins: tuple[str, ...] = ()
    max_body_mb: float = 8.0
    api_models: ApiModels = "registered"
    request_timeout_s: float = 600.0
    drain_s: float = 30.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "models_dir", Path(self.models_dir).expanduser())
        object.__setattr__(self, "results_dir", Path(self.results_dir).expanduser())
        if self.memory_budget_gb is not None and not self.memory_budget_gb > 0:
            raise ValueError(f"memory_budget_gb must be > 0, got {self.memory_budget_gb}")
        if self.api_key is not None and not self.api_key.strip():
            object.__setattr__(self, "api_key", None)  # an empty key means "no key"
        if not (0 < self.port < 65536):
            raise ValueError(f"port must be in 1..65535, got {self.port}")
        for name, low in (("max_batch", 1), ("max_queue", 0), ("prompt_cache_entries", 0)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if not self.prompt_cache_gb > 0:
            raise ValueError(f"prompt_cache_gb must be > 0, got {self.prompt_cache_gb}")
        if self.api_models not in API_MODELS:
            raise ValueError(f"api_models must be one of {', '.join(API_MODELS)}, got {self.api_models!r}")
        for name in ("request_timeout_s", "drain_s"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and value >= 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a number of seconds >= 0, got {value!r}")
        if not self.max_body_mb > 0:
            raise ValueError(f"max_body_mb must be > 0, got {self.max_body_mb}")
        for name in ("allowed_hosts", "cors_origins"):
            items = tuple(str(i).strip().lower() for i in getattr(self, name) if str(i).strip())
            object.__setattr__(self, name, items)

    def served_hosts(self) -> tuple[str, ...]:
        """Host header names the server answers ('*' = any): `allowed_hosts` when set; else
        the loopback names and `host`, or any host when `host` binds every interface."""
        if self.allowed_hosts:
            return self.allowed_hosts
        if self.host in ("0.0.0.0", "::", ""):
            return ("*",)
        return tuple(dict.fromkeys(("127.0.0.1", "localhost", "::1", self.host.lower())))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read WORKBENCH_* variables; keyword overrides (CLI flags) win when not None."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {"models_dir": _default_models_dir(env)}
        if raw := env.get("WORKBENCH_MODELS_DIR"):
            values["models_dir"] = Path(raw)
        if raw := env.get("WORKBENCH_DEFAULT_MODEL"):
            values["default_model"] = raw.strip()
        if raw := env.get("WORKBENCH_MODEL_PATHS"):
            values["model_paths"] = tuple(p for p in raw.split(os.pathsep) if p.strip())
        if (raw := env.get("WORKBENCH_ALLOW_DOWNLOAD")) is not None:
            values["allow_download"] = _parse_bool("WORKBENCH_ALLOW_DOWNLOAD", raw)
        if _parse_bool("HF_HUB_OFFLINE", env.get("HF_HUB_OFFLINE", "0")):
            values["allow_download"] = False
        if (raw := env.get("WORKBENCH_MEMORY_BUDGET_GB")) is not None:
            values["memory_budget_gb"] = _parse_budget("WORKBENCH_MEMORY_BUDGET_GB", raw)
        if raw := env.get("WORKBENCH_BLAS"):
            values["blas"] = raw.strip()
        if raw := env.get("WORKBENCH_RESULTS_DIR"):
            values["results_dir"] = Path(raw)
        if raw := env.get("WORKBENCH_HOST"):
            values["host"] = raw.strip()
        if raw := env.get("WORKBENCH_PORT"):
            try:
                values["port"] = int(raw)
            except ValueError:
                raise ValueError(f"WORKBENCH_PORT={raw!r}: expected an integer") from None
        if raw := env.get("WORKBENCH_API_KEY"):
            values["api_key"] = raw.strip()
        for name in ("max_batch", "max_queue", "prompt_cache_entries"):
            if raw := env.get(f"WORKBENCH_{name.upper()}"):
                try:
                    values[name] = int(raw)
                except ValueError:
                    raise ValueError(f"WORKBENCH_{name.upper()}={raw!r}: expected an integer") from None
        if raw := env.get("WORKBENCH_PROMPT_CACHE_GB"):
            values["prompt_cache_gb"] = _parse_budget("WORKBENCH_PROMPT_CACHE_GB", raw)
        for name in ("allowed_hosts", "cors_origins"):
            if raw := env.get(f"WORKBENCH_{name.upper()}"):
                values[name] = tuple(raw.split(","))
        if raw := env.get("WORKBENCH_MAX_BODY_MB"):
            values["max_body_mb"] = _parse_budget("WORKBENCH_MAX_BODY_MB", raw)
        if raw := env.get("WORKBENCH_API_MODELS"):
            values["api_models"] = raw.strip().lower()
        for name in ("request_timeout_s", "drain_s"):
            if raw := env.get(f"WORKBENCH_{name.upper()}"):
                try:
                    values[name] = float(raw)
                except ValueError:
                    raise ValueError(f"WORKBENCH_{name.upper()}={raw!r}: expected seconds") from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def with_(self, **changes: Any) -> Settings:
        """A copy with some fields changed (settings stay immutable)."""
        return replace(self, **changes)
