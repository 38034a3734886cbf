"""Lean SwiGLU (engine.models.lean_swiglu): mlx-lm's swiglu bit for bit on the CPU backend, on
exp's edges and a spread of shapes, and through a whole model's prefill, decode and batch."""

from __future__ import annotations

import io
import random
import re
from dataclasses import replace
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from mlx_lm.models.activations import swiglu
from mlx_lm.models.cache import BatchKVCache

from tests.test_lean_rope import _batch, _plain_logits
from workbench.config import Settings
from workbench.engine import Engine
from workbench.engine.models import lean_swiglu
from workbench.engine.models.registry import ModelRegistry

pytestmark = pytest.mark.skipif(mx.default_device() != mx.cpu, reason="lean SwiGLU: CPU backend only")


def _same_bits(a: mx.array, b: mx.array) -> bool:
    return bool(mx.all((a.view(mx.int32) == b.view(mx.int32)) | (mx.isnan(a) & mx.isnan(b))).item())


@pytest.mark.parametrize("shape", [(1, 1, 1536), (8, 1, 1536), (3, 37, 576), (7,), (2, 5, 3, 11)])
def test_lean_swiglu_gives_mlx_lms_bits(shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(len(shape))
    gate = mx.array(rng.normal(0.0, 6.0, shape).astype(np.float32))
    x = mx.array(rng.normal(0.0, 1.0, shape).astype(np.float32))
    assert _same_bits(lean_swiglu.fused_swiglu(gate, x), swiglu(gate, x))


def test_exps_edges_and_other_dtypes() -> None:
    assert lean_swiglu.agrees()  # 0, ±88 and past it, inf, nan, subnormals, 4k spread values
    gate = lean_swiglu._probe()
    assert _same_bits(lean_swiglu.fused_swiglu(gate, gate), swiglu(gate, gate))
    half = gate.astype(mx.float16)  # not float32: mlx-lm's own path
    assert mx.array_equal(lean_swiglu.lean_swiglu(half, half), swiglu(half, half), equal_nan=True).item()


def test_prompt_sized_gates_take_the_fused_path() -> None:
    """A decode step's gates (batch x 1536) stay on mlx-lm's swiglu; a prompt chunk's are fused.
    Seen in the graph: mlx-lm's is one compiled node, the fused path two and a view."""

    def nodes(n: int) -> int:
        gate = mx.random.normal((1, n, 1536))
        dot = io.StringIO()
        mx.export_to_dot(dot, lean_swiglu.lean_swiglu(gate, gate))
        return len(re.findall(r'label ="?[A-Za-z]', dot.getvalue()))

    assert 8 * 1536 < lean_swiglu.MIN_ELEMENTS <= 64 * 1536
    assert nodes(64) > nodes(8)


class _Mlp(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gate, self.up, self.down = nn.Linear(8, 16), nn.Linear(8, 16), nn.Linear(16, 8)

    def __call__(self, x: mx.array) -> mx.array:
        return self.down(swiglu(self.gate(x), self.up(x)))


class _Gelu(nn.Module):
    def __call__(self, x: mx.array) -> mx.array:
        return nn.gelu(x)


def test_install_rebinds_only_swiglu_callers_once() -> None:
    model = nn.Sequential(_Mlp(), _Gelu(), _Mlp())
    x = mx.random.normal((2, 3, 8))
    before = model(x)
    assert lean_swiglu.install(model) == 2
    assert lean_swiglu.install(model) == 0  # already lean
    assert [type(m).__name__ for m in model.layers] == ["_Mlp", "_Gelu", "_Mlp"]
    assert isinstance(model.layers[0], _Mlp) and type(model.layers[1]) is _Gelu
    assert type(model.layers[0]).__call__.__globals__["swiglu"] is lean_swiglu.lean_swiglu
    assert _Mlp.__call__.__globals__["swiglu"] is swiglu  # the module itself is untouched
    assert _same_bits(model(x), before)


def test_the_engines_model_is_lean_with_the_same_logits(engine: Engine, settings: Settings) -> None:
    rng = random.Random(1)

    def compare() -> dict[str, Any]:
        lean = engine.registry.load(None)[0].model
        # The same model with --cpu-swiglu mlx: mlx-lm's swiglu, MLX's scalar exp.
        ref = ModelRegistry(replace(settings, cpu_swiglu="mlx"), float32=True).load(None)[0].model
        prompt = [rng.randrange(1000, 20000) for _ in range(150)]
        prompts = [[rng.randrange(1000, 20000) for _ in range(n)] for n in (37, 128, 5, 90)]
        prefill = []
        for m in (lean, ref):
            cache = [BatchKVCache([0]) for _ in m.layers]
            prefill.append(m(mx.array([prompt] * 2), cache=cache))
        mx.eval(prefill)
        return {
            "mlps": {type(m.model.layers[0].mlp).__call__ for m in (lean, ref)},
            "prefill": prefill,
            "plain": [_plain_logits(m, prompt, 12) for m in (lean, ref)],
            "batch": [_batch(m, prompts, 16) for m in (lean, ref)],
        }

    got = engine._worker.call(compare)
    assert len(got["mlps"]) == 2  # the engine's model is lean, the reference is not
    assert mx.array_equal(*got["prefill"]).item()
    lean_plain, ref_plain = got["plain"]
    assert all(mx.array_equal(a, b).item() for a, b in zip(lean_plain, ref_plain, strict=True))
    (lean_tokens, lean_lps), (ref_tokens, ref_lps) = got["batch"]
    assert lean_tokens == ref_tokens
    pairs = [(a, b) for la, ra in zip(lean_lps, ref_lps, strict=True) for a, b in zip(la, ra, strict=True)]
    assert all(mx.array_equal(a, b).item() for a, b in pairs)
