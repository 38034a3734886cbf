"""RoPE on the CPU backend with the same bits and a fifth of the graph: mx.fast.rope's CPU path
rebuilds its cosines and sines in every call (~29 graph nodes, twice per layer per step); here a
forward builds them once, and every layer's call is a gather, two products and a sum."""

from __future__ import annotations

import inspect
import threading
from typing import Any

import mlx.core as mx
import mlx.nn as nn


class _Forward(threading.local):
    """What the forward running on this thread shares with its RoPE layers: the position offset
    every layer's cache starts from, and the rotation tables built from it on first use."""

    def __init__(self) -> None:
        self.offset: Any = None
        self.tables: tuple[tuple[int, int], mx.array, mx.array] | None = None


class LeanRoPE(nn.Module):
    """Drop-in for an `nn.RoPE`: out = x * C + x[perm] * S, with C = [cos, cos] and S = [-sin, sin]
    taken from mx.fast.rope itself applied to a unit vector, so every product and sum is the one
    the fallback computes (a - b is a + (-b) exactly). Outside a lean forward, or for a shape it
    was not built for, it is mx.fast.rope."""

    def __init__(self, rope: nn.RoPE, forward: _Forward) -> None:
        super().__init__()
        self.dims, self.traditional = rope.dims, rope.traditional
        self.base, self.scale = rope.base, rope.scale
        self._forward = forward
        half = self.dims // 2
        if self.traditional:
            perm = [i + 1 if i % 2 == 0 else i - 1 for i in range(self.dims)]
        else:
            perm = list(range(half, self.dims)) + list(range(half))
        self._perm = mx.array(perm, dtype=mx.uint32)

    def _extra_repr(self) -> str:
        return f"{self.dims}, traditional={self.traditional}, lean"

    def _fast(self, x: mx.array, offset: Any) -> mx.array:
        return mx.fast.rope(
            x, self.dims, traditional=self.traditional, base=self.base, scale=self.scale, offset=offset
        )

    def _tables(self, x: mx.array) -> tuple[mx.array, mx.array]:
        fw = self._forward
        B, T = x.shape[0], x.shape[2]
        if fw.tables is not None and fw.tables[0] == (B, T):
            return fw.tables[1], fw.tables[2]
        offset = fw.offset
        rows = B if isinstance(offset, mx.array) and offset.size > 1 else 1
        half = self.dims // 2
        # The unit vector (x1 = 1, x2 = 0) that mx.fast.rope turns into [cos, sin].
        first = [i % 2 == 0 if self.traditional else i < half for i in range(self.dims)]
        unit = mx.array(first, dtype=mx.float32)
        cos_sin = self._fast(mx.broadcast_to(unit, (rows, 1, T, self.dims)), offset)
        if self.traditional:
            cos, sin = cos_sin[..., ::2], cos_sin[..., 1::2]
            C = mx.stack([cos, cos], axis=-1).reshape(rows, 1, T, self.dims)
            S = mx.stack([-sin, sin], axis=-1).reshape(rows, 1, T, self.dims)
        else:
            cos, sin = cos_sin[..., :half], cos_sin[..., half:]
            C, S = mx.concatenate([cos, cos], axis=-1), mx.concatenate([-sin, sin], axis=-1)
        fw.tables = ((B, T), C, S)
        return C, S

    def __call__(self, x: mx.array, offset: Any = 0) -> mx.array:
        fw = self._forward
        if fw.offset is None or x.ndim != 4 or x.shape[-1] != self.dims or x.dtype != mx.float32:
            return self._fast(x, offset)
        if isinstance(offset, int) and isinstance(fw.offset, int) and offset != fw.offset:
            return self._fast(x, offset)
        C, S = self._tables(x)
        return x * C + mx.take(x, self._perm, axis=-1) * S


def _start_offset(cache: Any) -> Any:
    if cache is None:
        return 0
    for c in cache:
        if hasattr(c, "offset"):
            return c.offset
    return None


_LEAN_CLASSES: dict[type, type] = {}


def _lean_class(cls: type) -> type:
    if cls not in _LEAN_CLASSES:
        inner = cls.__call__

        def __call__(self: Any, inputs: mx.array, cache: Any = None, *args: Any, **kwargs: Any) -> Any:
            fw = self._lean_forward
            saved = fw.offset, fw.tables
            fw.offset, fw.tables = _start_offset(cache), None
            try:
                return inner(self, inputs, cache, *args, **kwargs)
            finally:
                fw.offset, fw.tables = saved

        _LEAN_CLASSES[cls] = type(cls.__name__, (cls,), {"__call__": __call__, "__module__": cls.__module__})
    return _LEAN_CLASSES[cls]


def install(model: nn.Module) -> int:
    """Give a model on the CPU backend lean RoPE layers; the number replaced (0: left as it was,
    e.g. on a GPU, where mx.fast.rope is one kernel, or when its RoPE layers differ)."""
    if mx.default_device() != mx.cpu or type(model) in _LEAN_CLASSES.values():
        return 0
    params = list(inspect.signature(type(model).__call__).parameters)
    if params[2:3] != ["cache"]:
        return 0
    found = [
        (parent, key, child)
        for _, parent in model.named_modules()
        for key, child in parent.children().items()
        if type(child) is nn.RoPE
    ]
    if not found or len({(r.dims, r.traditional, r.base, r.scale) for *_, r in found}) != 1:
        return 0
    forward = _Forward()
    for parent, key, rope in found:
        parent[key] = LeanRoPE(rope, forward)
    object.__setattr__(model, "_lean_forward", forward)
    model.__class__ = _lean_class(type(model))
    return len(found)
