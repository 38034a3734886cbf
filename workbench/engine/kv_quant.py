"""KVQuant: how a generation stores its KV cache (mlx-lm's kv_bits, kv_group_size and
quantized_kv_start), checked, merged over the server's default; no mlx import."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from workbench.engine.errors import InvalidRequestError

KV_BITS = (2, 3, 4, 5, 6, 8, 16)  # what mx.quantize stores, and 16: float16, not quantized
KV_GROUP_SIZES = (32, 64, 128)
FIELDS = ("kv_bits", "kv_group_size", "quantized_kv_start")


def _fail(param: str, message: str) -> None:
    raise InvalidRequestError(f"{param}: {message}", param=param)


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class KVQuant:
    """`bits` per stored key/value element: 2-8 quantized (mx.quantize) in groups of `group_size`
    along the head dimension (32, 64, 128), from the `start`-th token of the context on (tokens
    before it are quantized too once the context passes it: mlx-lm converts the whole cache); 16
    stores float16 from the first token (for a float32 model: half the memory, not quantized); 0
    the model's own precision. A field left None takes the server's default (`over`)."""

    bits: int | None = None
    group_size: int | None = None
    start: int | None = None

    def __post_init__(self) -> None:
        if self.bits is not None and not (_int(self.bits) and self.bits in (0, *KV_BITS)):
            _fail(
                "kv_bits", f"must be one of {', '.join(map(str, KV_BITS))}, or 0 for none; got {self.bits!r}"
            )
        if self.group_size is not None and not (_int(self.group_size) and self.group_size in KV_GROUP_SIZES):
            sizes = ", ".join(map(str, KV_GROUP_SIZES))
            _fail("kv_group_size", f"must be one of {sizes}; got {self.group_size!r}")
        if self.start is not None and not (_int(self.start) and self.start >= 0):
            _fail("quantized_kv_start", f"must be an integer >= 0; got {self.start!r}")

    @property
    def on(self) -> bool:
        return bool(self.bits)

    def over(self, default: KVQuant) -> KVQuant:
        """This request's fields, the server's `default` where it left them None."""
        return KVQuant(
            self.bits if self.bits is not None else default.bits or 0,
            self.group_size or default.group_size or 64,
            self.start if self.start is not None else default.start or 0,
        )

    def label(self) -> str:
        """How rows and stats name it: '' (the model's precision), 'f16', else 'q8', 'q4:g32',
        'q8:s512' (group size 64 and start 0 are left out)."""
        if not self.on:
            return ""
        if self.bits == 16:
            return "f16"
        group = f":g{self.group_size}" if self.group_size not in (None, 64) else ""
        start = f":s{self.start}" if self.start else ""
        return f"q{self.bits}{group}{start}"

    @property
    def quantized(self) -> bool:
        return self.on and self.bits != 16

    def check_head_dim(self, head_dim: int | None, model: str) -> None:
        """A clear 400 when the group size does not divide the model's head dimension."""
        if self.quantized and head_dim and head_dim % (self.group_size or 64):
            _fail(
                "kv_group_size",
                f"{self.group_size} does not divide {model!r}'s head dimension ({head_dim}); "
                f"use one of {', '.join(str(g) for g in KV_GROUP_SIZES if head_dim % g == 0) or 'none'}",
            )

    @classmethod
    def coerce(cls, value: Any) -> KVQuant | None:
        """From a request's fields: a KVQuant, a mapping with kv_bits / kv_group_size /
        quantized_kv_start, or None (the server default throughout)."""
        if value is None or isinstance(value, KVQuant):
            return value
        if not isinstance(value, Mapping):
            _fail("kv_bits", "expected {kv_bits, kv_group_size, quantized_kv_start}")
        unknown = set(value) - set(FIELDS)
        if unknown:
            _fail(sorted(unknown)[0], f"unknown field (known: {', '.join(FIELDS)})")
        if all(value.get(f) is None for f in FIELDS):
            return None
        return cls(value.get("kv_bits"), value.get("kv_group_size"), value.get("quantized_kv_start"))
