"""QuantSweepSpec: which recipes of which model, measured how (evaluation tokens,
divergence prompts, speed trials), loaded from a TOML file in experiments/ and
validated (recipes included) before anything is quantized. Knows no engine.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from workbench.bench.spec import NAME, BenchSpecError, as_list, is_int, read_spec_file, require
from workbench.engine import InvalidRequestError, QuantRecipe
from workbench.quant.quality import DIVERGENCE_PROMPTS


@dataclass(frozen=True)
class QuantSweepSpec:
    """One sweep: every recipe of `model` (an unquantized variant, e.g.
    smollm2-135m-instruct-f32), plus `reference` itself (default: `model`) as the first
    row. Quality: the first `eval_tokens` tokens of the shipped evaluation text in windows
    of `window` tokens, and greedy continuations of `divergence_tokens` tokens for the
    first `divergence_prompts` built-in prompts. Speed: the benchmark runner at one
    prompt and generation length, `trials` recorded after `warmup`."""

    name: str
    recipes: tuple[str, ...]
    model: str = "default"
    reference: str = ""
    eval_tokens: int = 512
    window: int = 128
    divergence_prompts: int = 6
    divergence_tokens: int = 24
    prompt_tokens: int = 64
    generation_tokens: int = 16
    trials: int = 3
    warmup: int = 1
    seed: int = 0
    question: str = ""

    def __post_init__(self) -> None:
        require(isinstance(self.name, str) and NAME.match(self.name), "name", self.name, "a short name")
        require(isinstance(self.question, str), "question", self.question, "a string")
        for key in ("model", "reference"):
            require(isinstance(getattr(self, key), str), key, getattr(self, key), "a model id")
        require(self.model.strip(), "model", self.model, "a model id")
        recipes = []
        for text in as_list(self.recipes, "recipes"):
            try:
                recipes.append(QuantRecipe.parse(text).name)
            except InvalidRequestError as exc:
                raise BenchSpecError(f"recipes: {exc}") from None
        require(len(set(recipes)) == len(recipes), "recipes", recipes, "distinct recipes")
        object.__setattr__(self, "recipes", tuple(recipes))
        for key, low, high in (
            ("window", 8, 8192),
            ("divergence_prompts", 0, len(DIVERGENCE_PROMPTS)),
            ("divergence_tokens", 1, 1024),
            ("prompt_tokens", 1, 100_000),
            ("generation_tokens", 1, 100_000),
            ("trials", 1, 1000),
            ("warmup", 0, 100),
        ):
            value = getattr(self, key)
            require(is_int(value) and low <= value <= high, key, value, f"an integer in [{low}, {high}]")
        require(
            is_int(self.eval_tokens) and self.window <= self.eval_tokens <= 1_000_000,
            "eval_tokens",
            self.eval_tokens,
            f"an integer >= window ({self.window})",
        )
        require(is_int(self.seed) and 0 <= self.seed < 2**63, "seed", self.seed, "in [0, 2**63)")

    @property
    def reference_model(self) -> str:
        return self.reference or self.model

    def as_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def sha(self) -> str:
        """Content hash of everything that shapes the results (not the question)."""
        measured = {k: v for k, v in self.as_dict().items() if k != "question"}
        return hashlib.sha256(json.dumps(measured, sort_keys=True).encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, default_name: str | None = None) -> QuantSweepSpec:
        if "recipes" not in data:
            raise BenchSpecError('not a quantization sweep: no \'recipes\' key (e.g. recipes = ["q8", "q4"])')
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise BenchSpecError(f"unknown keys {unknown}; a quantization sweep has {sorted(known)}")
        data = dict(data)
        if "name" not in data and default_name is not None:
            data["name"] = default_name
        return cls(**data)

    @classmethod
    def from_file(cls, path: str | Path) -> QuantSweepSpec:
        """Load experiments/<name>.toml; the name defaults to the file's stem."""
        file, data = read_spec_file(path)
        try:
            return cls.from_dict(data, default_name=file.stem)
        except BenchSpecError as exc:
            raise BenchSpecError(f"{file}: {exc}") from None
