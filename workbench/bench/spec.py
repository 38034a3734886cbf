"""BenchSpec: what one experiment measures (models, lengths, batch sizes, trials, seed), loaded
from a TOML file in experiments/ and validated before any model loads. Knows the file format
and the grid of configurations, not how a trial runs."""

from __future__ import annotations

import hashlib
import json
import re
import sys
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

SPEC_SUFFIX = ".toml"
KV_CHOICES = (0, 2, 3, 4, 5, 6, 8, 16)  # engine.kv_quant.KV_BITS and 0
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class BenchSpecError(ValueError):
    """A spec that cannot run: unknown keys, wrong types, out-of-range values."""


@dataclass(frozen=True)
class BenchConfig:
    """One cell of the grid: a model at one batch size, prompt and generation length, KV bits."""

    model: str
    batch_size: int
    prompt_tokens: int
    generation_tokens: int
    kv_bits: int = 0

    def label(self) -> str:
        kv = f" kv{self.kv_bits}" if self.kv_bits else ""
        return f"{self.model} b{self.batch_size} p{self.prompt_tokens} g{self.generation_tokens}{kv}"


@dataclass(frozen=True)
class BenchSpec:
    """One experiment. Every model id (a variant is its own id, e.g. smollm2-135m-instruct-4bit
    and -f32; see `workbench models`) runs every batch size x prompt length x generation
    length, `warmup` unrecorded times, then `trials` recorded times. Generation is greedy
    with end-of-sequence ignored, so each trial reaches its length; `seed` fixes the
    sampler anyway, and `cooldown_s` sleeps before each recorded trial. `output = "json"`
    constrains generation to an endless stream of JSON records of a small schema
    (runner.JSON_RECORDS), so every trial still reaches its length and the tok/s show what
    constrained decoding costs against the same spec with `output = "text"`. `kv_bits` stores
    the KV cache quantized (engine.kv_quant: 2-8 bits in groups of 64 from the first token, 16
    float16, 0 the model's precision), each a dimension of the grid; such generations decode
    outside the batch (a batch size above 1 then runs that many streams side by side).
    """

    name: str
    models: tuple[str, ...]
    prompt_tokens: tuple[int, ...]
    generation_tokens: tuple[int, ...]
    batch_sizes: tuple[int, ...] = (1,)
    trials: int = 3
    warmup: int = 1
    seed: int = 0
    cooldown_s: float = 0.0
    question: str = ""
    output: str = "text"
    kv_bits: tuple[int, ...] = (0,)

    def __post_init__(self) -> None:
        require(isinstance(self.name, str) and NAME.match(self.name), "name", self.name, "a short name")
        require(isinstance(self.question, str), "question", self.question, "a string")
        require(self.output in ("text", "json"), "output", self.output, "'text' or 'json'")
        models = as_list(self.models, "models")
        for m in models:
            require(isinstance(m, str) and m.strip(), "models", m, "non-empty model ids")
        require(len(set(models)) == len(models), "models", models, "distinct ids")
        object.__setattr__(self, "models", models)
        for name, low, high in (
            ("prompt_tokens", 1, 1_000_000),
            ("generation_tokens", 1, 1_000_000),
            ("batch_sizes", 1, 1024),
        ):
            values = as_list(getattr(self, name), name)
            for v in values:
                require(is_int(v) and low <= v <= high, name, v, f"integers in [{low}, {high}]")
            require(len(set(values)) == len(values), name, values, "distinct values")
            object.__setattr__(self, name, values)
        kv_bits = as_list(self.kv_bits, "kv_bits")
        for v in kv_bits:
            require(is_int(v) and v in KV_CHOICES, "kv_bits", v, f"one of {list(KV_CHOICES)}")
        require(len(set(kv_bits)) == len(kv_bits), "kv_bits", kv_bits, "distinct values")
        object.__setattr__(self, "kv_bits", kv_bits)
        require(is_int(self.trials) and 1 <= self.trials <= 1000, "trials", self.trials, "in [1, 1000]")
        require(is_int(self.warmup) and 0 <= self.warmup <= 100, "warmup", self.warmup, "in [0, 100]")
        require(is_int(self.seed) and 0 <= self.seed < 2**63, "seed", self.seed, "in [0, 2**63)")
        cool = self.cooldown_s
        require(
            isinstance(cool, (int, float)) and not isinstance(cool, bool) and 0 <= cool <= 3600,
            "cooldown_s",
            cool,
            "seconds in [0, 3600]",
        )
        object.__setattr__(self, "cooldown_s", float(cool))

    # ---- the grid --------------------------------------------------------
    def configurations(self) -> list[BenchConfig]:
        """Every cell, in the spec's order: model, then KV bits, batch size, prompt, generation length."""
        return [
            BenchConfig(model, batch, prompt, gen, kv)
            for model in self.models
            for kv in self.kv_bits
            for batch in self.batch_sizes
            for prompt in self.prompt_tokens
            for gen in self.generation_tokens
        ]

    @property
    def total_trials(self) -> int:
        return len(self.configurations()) * self.trials

    # ---- identity and files ----------------------------------------------
    def as_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def sha(self) -> str:
        """Content hash of everything that shapes the measurements (the question text
        excluded), so --resume can tell the same spec from an edited one."""
        measured = {k: v for k, v in self.as_dict().items() if k != "question"}
        if measured["output"] == "text":  # the default: specs from before it existed keep their hash
            del measured["output"]
        if measured["kv_bits"] == [0]:  # likewise
            del measured["kv_bits"]
        return hashlib.sha256(json.dumps(measured, sort_keys=True).encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, default_name: str | None = None) -> BenchSpec:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if "recipes" in unknown:
            raise BenchSpecError("this is a quantization sweep: run `workbench quantize --sweep <file>`")
        if unknown:
            raise BenchSpecError(f"unknown keys {unknown}; a spec has {sorted(known)}")
        data = dict(data)
        if "name" not in data and default_name is not None:
            data["name"] = default_name
        missing = [k for k in ("name", "models", "prompt_tokens", "generation_tokens") if k not in data]
        if missing:
            raise BenchSpecError(f"missing keys {missing}")
        return cls(**data)

    @classmethod
    def from_file(cls, path: str | Path) -> BenchSpec:
        """Load experiments/<name>.toml (the '.toml' may be left off); the name defaults
        to the file's stem."""
        file, data = read_spec_file(path)
        try:
            return cls.from_dict(data, default_name=file.stem)
        except BenchSpecError as exc:
            raise BenchSpecError(f"{file}: {exc}") from None


def read_spec_file(path: str | Path) -> tuple[Path, dict[str, Any]]:
    """(the file found by find_spec_file, its TOML table)."""
    file = find_spec_file(path)
    try:
        return file, tomllib.loads(file.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise BenchSpecError(f"{file}: not valid TOML ({exc})") from None


def experiments_dir() -> Path:
    """The checkout's experiments/ folder (beside the workbench package), else ./experiments."""
    beside = Path(__file__).resolve().parents[2] / "experiments"
    return beside if beside.is_dir() else Path("experiments")


def spec_files(*, sweeps: bool = False, kind: str | None = None) -> list[str]:
    """File names in experiments/ of one kind: benchmark specs, quantization sweeps (those
    with `recipes`; `sweeps` or kind 'sweep') or fine-tuning specs (`base_model`; kind
    'finetune'). Unreadable files are listed with the benchmarks, whose loader then says
    what is wrong with them."""
    wanted = kind or ("sweep" if sweeps else "bench")
    folder = experiments_dir()
    names = []
    for path in sorted(folder.glob(f"*{SPEC_SUFFIX}")) if folder.is_dir() else []:
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
            data = {}
        found = "sweep" if "recipes" in data else "finetune" if "base_model" in data else "bench"
        if found == wanted:
            names.append(path.name)
    return names


def find_spec_file(path: str | Path) -> Path:
    """The spec file a user meant: the path itself, or with '.toml' added."""
    given = Path(path).expanduser()
    for candidate in (given, given.with_name(given.name + SPEC_SUFFIX)):
        if candidate.is_file():
            return candidate
    raise BenchSpecError(f"no experiment spec at {given} (nor {given.name}{SPEC_SUFFIX})")


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def as_list(value: Any, name: str) -> tuple[Any, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        value = (value,)
    require(len(value) > 0, name, value, "a non-empty list")
    return tuple(value)


def require(ok: Any, name: str, value: Any, what: str) -> None:
    if not ok:
        raise BenchSpecError(f"{name}: expected {what}, got {value!r}")
