"""FinetuneSpec: a fine-tuning run from a TOML file in experiments/ (base model, JSONL data in
mlx-lm's formats, the trainer's settings), checked, data files read, before anything trains."""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from workbench.bench.spec import NAME, BenchSpecError, is_int, read_spec_file, require
from workbench.engine import TuneConfig

FORMATS = "each line a JSON object: {'messages': [...]}, {'prompt': ..., 'completion': ...} or {'text': ...}"


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The records of a JSONL file; BenchSpecError naming the line that is not one."""
    if not path.is_file():
        raise BenchSpecError(f"{path}: no such data file")
    records = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise BenchSpecError(f"{path}:{n}: not JSON ({exc}); {FORMATS}") from None
        if not isinstance(record, dict) or not (
            {"messages", "text"} & set(record) or {"prompt", "completion"} <= set(record)
        ):
            raise BenchSpecError(f"{path}:{n}: {FORMATS}")
        records.append(record)
    return records


@dataclass(frozen=True)
class FinetuneSpec:
    """One run: `train` (and `valid`, else `valid_fraction` of `train` held out, seeded)
    are JSONL paths, relative to the spec file; `arena_prompts` names the prompt set the
    Fine-tune tab's "Open in Arena" picks; the rest are TuneConfig's settings."""

    name: str
    base_model: str
    train: str
    valid: str = ""
    valid_fraction: float = 0.2
    method: str = "lora"
    rank: int = 8
    scale: float = 20.0
    dropout: float = 0.0
    layers: int = 8
    learning_rate: float = 1e-4
    iterations: int = 100
    batch_size: int = 4
    max_seq_length: int = 512
    seed: int = 0
    val_interval: int = 20
    val_batches: int = -1
    mask_prompt: bool = True
    question: str = ""
    arena_prompts: str = ""  # the prompt set (experiments/) to judge the variant against its base
    folder: str = "."  # where relative data paths start (the spec file's folder)

    def __post_init__(self) -> None:
        require(isinstance(self.name, str) and NAME.match(self.name), "name", self.name, "a short name")
        require(
            isinstance(self.base_model, str) and self.base_model.strip(),
            "base_model",
            self.base_model,
            "a model id",
        )
        require(isinstance(self.train, str) and self.train, "train", self.train, "a JSONL path")
        require(self.method in ("lora", "dora"), "method", self.method, "lora or dora")
        for key in ("rank", "iterations", "batch_size", "max_seq_length", "val_interval"):
            require(
                is_int(getattr(self, key)) and getattr(self, key) >= 1,
                key,
                getattr(self, key),
                "an integer >= 1",
            )
        require(
            is_int(self.layers) and (self.layers == -1 or self.layers >= 1),
            "layers",
            self.layers,
            "-1 or >= 1",
        )
        require(is_int(self.val_batches) and self.val_batches >= -1, "val_batches", self.val_batches, ">= -1")
        require(is_int(self.seed) and 0 <= self.seed < 2**32, "seed", self.seed, "in [0, 2**32)")
        for key in ("learning_rate", "scale"):
            require(
                isinstance(getattr(self, key), (int, float)) and getattr(self, key) > 0,
                key,
                getattr(self, key),
                "> 0",
            )
        require(0 <= self.dropout < 1, "dropout", self.dropout, "in [0, 1)")
        require(0 < self.valid_fraction < 1, "valid_fraction", self.valid_fraction, "in (0, 1)")
        require(
            isinstance(self.arena_prompts, str), "arena_prompts", self.arena_prompts, "a prompt file name"
        )

    def path(self, raw: str) -> Path:
        p = Path(raw).expanduser()
        return p if p.is_absolute() else Path(self.folder) / p

    def data(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(train, valid) records: the valid file, or a seeded hold-out of train."""
        train = read_jsonl(self.path(self.train))
        if self.valid:
            return train, read_jsonl(self.path(self.valid))
        order = list(range(len(train)))
        random.Random(self.seed).shuffle(order)
        held = set(order[: max(1, round(len(train) * self.valid_fraction))])
        return [r for i, r in enumerate(train) if i not in held], [
            r for i, r in enumerate(train) if i in held
        ]

    def config(self) -> TuneConfig:
        train, valid = self.data()
        settings = {f.name: getattr(self, f.name) for f in fields(TuneConfig) if hasattr(self, f.name)}
        settings |= {"train": tuple(train), "valid": tuple(valid), "details": self.as_dict()}
        return TuneConfig(**settings)  # type: ignore[arg-type]

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "folder"}

    def sha(self) -> str:
        """Content hash of the settings and the data they read (not the question or the
        arena prompts: they do not change what trains)."""
        trains = {k: v for k, v in self.as_dict().items() if k not in ("question", "arena_prompts")}
        h = hashlib.sha256(json.dumps(trains, sort_keys=True).encode())
        for part in (self.train, self.valid):
            if part:
                h.update(self.path(part).read_bytes())
        return h.hexdigest()[:16]

    @classmethod
    def from_dict(
        cls, data: dict[str, Any], *, default_name: str | None = None, folder: Path | None = None
    ) -> FinetuneSpec:
        if "base_model" not in data or "train" not in data:
            raise BenchSpecError("not a fine-tuning spec: it needs 'base_model' and 'train' (a JSONL path)")
        known = {f.name for f in fields(cls)} - {"folder"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise BenchSpecError(f"unknown keys {unknown}; a fine-tuning spec has {sorted(known)}")
        data = dict(data)
        if "name" not in data and default_name is not None:
            data["name"] = default_name
        return cls(**data, folder=str(folder or Path(".")))

    @classmethod
    def from_file(cls, path: str | Path) -> FinetuneSpec:
        """Load experiments/<name>.toml; the name defaults to the file's stem."""
        file, data = read_spec_file(path)
        try:
            spec = cls.from_dict(data, default_name=file.stem, folder=file.parent)
            spec.data()  # the data files are read and checked now
            return spec
        except BenchSpecError as exc:
            raise BenchSpecError(f"{file}: {exc}") from None
