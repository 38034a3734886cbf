"""SwiGLU on the CPU backend, the same bits about twice as fast on prompt chunks: MLX's CPU exp
(in sigmoid) is scalar code with a libm fma per polynomial step (~20 ns an element); here the same
polynomial runs fused by mx.compile, each fma done in float64 (every float32 gate checked)."""

from __future__ import annotations

import shutil
import types
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx_lm.models.activations import swiglu as mlx_swiglu

# mlx/backend/cpu/simd/math.h: exp(x) = 2**i * P(f), y = x*log2(e), i = floor(y + 0.5), f = y - i.
_P = [float(np.float32(c)) for c in (1.535336188319500e-4, 1.339887440266574e-3, 9.618437357674640e-3)]
_P += [float(np.float32(c)) for c in (5.550332471162809e-2, 2.402264791363012e-1, 6.931472028550421e-1)]
_ROUND = 12582912.0  # 1.5 * 2**23: (v + R) - R rounds |v| < 2**22 to an integer without a libm call
# Below this many elements (a decode step: batch x intermediate size) the two compiled calls'
# fixed cost outweighs the faster exp: measured, batch 1 decode ~3% slower lean, batch 8 even.
MIN_ELEMENTS = 1 << 16


def _poly(gate: mx.array) -> tuple[mx.array, mx.array, mx.array]:
    """|gate|, the bits of 2**i and P(f) of exp(|gate|), as MLX's CPU exp computes them."""
    a = mx.abs(gate)
    y = a * 1.442695
    v = y + 0.5
    t = (v + _ROUND) - _ROUND
    i = t - (t > v).astype(mx.float32)  # floor(v)
    f = (y - i).astype(mx.float64)
    p = mx.array(_P[0], mx.float32)
    for c in [*_P[1:], 1.0]:
        # fma(p, f, c): p*f is exact in float64, the sum rounds once there, then to float32.
        p = (p.astype(mx.float64) * f + c).astype(mx.float32)
    return a, mx.left_shift(i.astype(mx.int32) + 127, 23), p


def _tail(gate: mx.array, x: mx.array, a: mx.array, two_i: mx.array, p: mx.array) -> mx.array:
    """silu(gate) * x from exp(|gate|)'s parts: MLX's sigmoid is y = 1 / (1 + exp(|g|)), then y
    where g < 0 and 1 - y elsewhere (a 0/1 blend here: exact, and no branch per element)."""
    e = two_i * p
    e = mx.where(a != a, a, e)
    e = mx.where(a > 88.0, float("inf"), e)
    y = 1.0 / (1.0 + e)
    neg = (gate < 0).astype(mx.float32)
    return gate * (y * neg + (1.0 - y) * (1.0 - neg)) * x


_poly_c = mx.compile(_poly, shapeless=True)
_tail_c = mx.compile(_tail, shapeless=True)


def fused_swiglu(gate: mx.array, x: mx.array) -> mx.array:
    """silu(gate) * x for float32 arrays of one shape on the CPU backend, from MLX's exp
    polynomial run fused: mlx-lm's `swiglu` bit for bit (scripts/check_lean_swiglu.py checks
    every float32 gate)."""
    a, bits, p = _poly_c(gate)
    return _tail_c(gate, x, a, bits.view(mx.float32), p)


def lean_swiglu(gate: mx.array, x: mx.array) -> mx.array:
    """mlx-lm's `swiglu(gate, x)`: fused_swiglu for float32 on the CPU backend from MIN_ELEMENTS
    up (prompt processing), mlx-lm's own for anything else."""
    if gate.dtype != mx.float32 or x.dtype != mx.float32 or gate.shape != x.shape:
        return mlx_swiglu(gate, x)
    if gate.size < MIN_ELEMENTS or mx.default_device() != mx.cpu:
        return mlx_swiglu(gate, x)
    return fused_swiglu(gate, x)


def _probe() -> mx.array:
    """Gates that cover exp's edges: 0, ±88 and beyond, inf, nan, subnormals, and a spread."""
    edges = [0.0, -0.0, 88.0, -88.0, 88.1, -88.1, 89.0, -100.0, 1e-40, -1e-40, 0.5, -0.5, 1e30, -1e30]
    edges += [float("inf"), float("-inf"), float("nan")]
    spread = np.random.default_rng(0).normal(0.0, 8.0, 4096 - len(edges))
    return mx.array(np.concatenate([np.array(edges), spread]).astype(np.float32)).reshape(2, 4, 512)


def agrees() -> bool:
    """Whether fused_swiglu gives this MLX build's bits (its exp or sigmoid may change): checked
    on the probe before a model is given it."""
    gate = _probe()
    x = mx.ones_like(gate) * 1.5
    ours, theirs = fused_swiglu(gate, x), mlx_swiglu(gate, x)
    same = (ours.view(mx.int32) == theirs.view(mx.int32)) | (mx.isnan(ours) & mx.isnan(theirs))
    return bool(mx.all(same).item())


def check_every_gate(report: Any = print, chunk: int = 1 << 24) -> int:
    """Every float32 bit pattern (2**32 gates) through fused_swiglu and mlx-lm's swiglu; the
    number whose bits differ (NaN equals NaN), each differing chunk passed to `report`."""
    bad = 0
    for k in range((1 << 32) // chunk):
        gate = mx.arange(k * chunk, (k + 1) * chunk, dtype=mx.uint32).view(mx.float32)
        x = mx.full(gate.shape, 1.5, mx.float32)
        a, b = fused_swiglu(gate, x), mlx_swiglu(gate, x)
        diff = (a.view(mx.int32) != b.view(mx.int32)) & ~(mx.isnan(a) & mx.isnan(b))
        n = int(diff.sum().item())
        if n:
            first = [hex(k * chunk + int(i)) for i in np.nonzero(np.array(diff))[0][:3]]
            report(f"chunk {k}: {n} differ, e.g. {first}")
        bad += n
    return bad


_LEAN: dict[type, type] = {}


def _lean_class(cls: type) -> type:
    """cls with a `__call__` that sees `swiglu` as lean_swiglu (the same code, other globals)."""
    if cls not in _LEAN:
        f = cls.__call__
        names = dict(f.__globals__, swiglu=lean_swiglu)
        call = types.FunctionType(f.__code__, names, f.__name__, f.__defaults__, f.__closure__)
        call.__kwdefaults__ = f.__kwdefaults__
        _LEAN[cls] = type(cls.__name__, (cls,), {"__call__": call, "__module__": cls.__module__})
    return _LEAN[cls]


def _uses_swiglu(module: Any) -> bool:
    call = type(module).__dict__.get("__call__") or type(module).__call__
    code = getattr(call, "__code__", None)
    return code is not None and "swiglu" in code.co_names and call.__globals__.get("swiglu") is mlx_swiglu


def install(model: nn.Module) -> int:
    """Give a model on the CPU backend lean SwiGLU in every module whose `__call__` calls mlx-lm's
    `swiglu`; the number of modules changed (0: left as it was, e.g. on a GPU, without the C++
    compiler MLX's CPU compile needs, or where this MLX build's bits differ)."""
    if mx.default_device() != mx.cpu or shutil.which("g++") is None:
        return 0
    found = [m for _, m in model.named_modules() if type(m) not in _LEAN.values() and _uses_swiglu(m)]
    if not found or not agrees():
        return 0
    for module in found:
        module.__class__ = _lean_class(type(module))
    return len(found)
