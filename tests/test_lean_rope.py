"""Lean RoPE (engine.models.lean_rope): the same bits as mx.fast.rope on the CPU backend, in every
layout it serves, through a whole model's prefill, decode and batch; and a smaller graph a step."""

from __future__ import annotations

import io
import random
import re
from dataclasses import replace
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import pytest
from mlx.utils import tree_flatten
from mlx_lm.generate import BatchGenerator
from mlx_lm.models.cache import BatchKVCache, make_prompt_cache
from mlx_lm.sample_utils import make_sampler

from workbench.config import Settings
from workbench.engine import Engine
from workbench.engine.models import lean_rope
from workbench.engine.models.registry import ModelRegistry

pytestmark = pytest.mark.skipif(mx.default_device() != mx.cpu, reason="lean RoPE is for the CPU backend only")


class _TwoRopes(nn.Module):
    """Attention-shaped enough for install: a model called (inputs, cache) with RoPE layers."""

    def __init__(self, second_base: float) -> None:
        super().__init__()
        self.a, self.b = nn.RoPE(8, base=10000), nn.RoPE(8, base=second_base)

    def __call__(self, inputs: mx.array, cache: Any = None) -> mx.array:
        offset = 0 if cache is None else cache[0].offset
        return self.b(self.a(inputs, offset=offset), offset=offset)


@pytest.mark.parametrize("traditional", [False, True])
@pytest.mark.parametrize("scale", [1.0, 0.25])
@pytest.mark.parametrize("offset", [0, 37, "per-row"])
def test_lean_rope_gives_mx_fast_ropes_bits(traditional: bool, scale: float, offset: Any) -> None:
    rope = nn.RoPE(64, traditional=traditional, base=1e6, scale=scale)
    forward = lean_rope._Forward()
    lean = lean_rope.LeanRoPE(rope, forward)
    B, T = 3, 7
    off = mx.array([3, 50, 0]) if offset == "per-row" else offset
    forward.offset = off
    for heads in (9, 3):  # queries, then keys with fewer heads: one set of tables serves both
        x = mx.random.normal((B, heads, T, 64), key=mx.random.key(heads))
        want = mx.fast.rope(x, 64, traditional=traditional, base=1e6, scale=scale, offset=off)
        assert mx.array_equal(lean(x, offset=off), want).item()
    assert forward.tables is not None and forward.tables[0] == (B, T)
    # Outside a lean forward (no offset shared) it is mx.fast.rope for any input.
    forward.offset, forward.tables = None, None
    x = mx.random.normal((1, 2, 5, 64))
    got = lean(x, offset=11)
    assert mx.array_equal(got, mx.fast.rope(x, 64, traditional=traditional, base=1e6, scale=scale, offset=11))


def test_install_declines_models_it_cannot_serve() -> None:
    assert lean_rope.install(_TwoRopes(second_base=500.0)) == 0  # two RoPE configurations
    same = _TwoRopes(second_base=10000.0)
    assert lean_rope.install(same) == 2
    assert lean_rope.install(same) == 0  # already lean
    x = mx.random.normal((1, 2, 4, 8))
    ref = _TwoRopes(second_base=10000.0)
    assert mx.array_equal(same(x), ref(x)).item()
    assert isinstance(same, _TwoRopes) and type(same).__name__ == "_TwoRopes"


def _graph_nodes(model: Any, cache: list[Any], batch: int) -> int:
    out = model(mx.array([[1234]] * batch), cache=cache)
    dot = io.StringIO()
    mx.export_to_dot(dot, out)
    return len(re.findall(r'label ="?[A-Za-z]', dot.getvalue()))


def _plain_logits(model: Any, prompt: list[int], steps: int) -> list[mx.array]:
    cache = make_prompt_cache(model)
    logits = [model(mx.array([prompt]), cache=cache)[:, -1]]
    for _ in range(steps):
        logits.append(model(mx.argmax(logits[-1], -1)[:, None], cache=cache)[:, -1])
    mx.eval(logits)
    return logits


def _batch(model: Any, prompts: list[list[int]], n: int) -> tuple[list[list[int]], list[list[mx.array]]]:
    gen = BatchGenerator(model, max_tokens=n, stop_tokens=[], sampler=make_sampler(0.0))
    uids = gen.insert(prompts, max_tokens=[n] * len(prompts))
    tokens: dict[int, list[int]] = {u: [] for u in uids}
    logprobs: dict[int, list[mx.array]] = {u: [] for u in uids}
    while responses := gen.next_generated():
        for r in responses:
            tokens[r.uid].append(r.token)
            logprobs[r.uid].append(r.logprobs)
    gen.close()
    return [tokens[u] for u in uids], [logprobs[u] for u in uids]


def test_the_engines_model_is_lean_with_the_same_logits_and_a_smaller_graph(
    engine: Engine, settings: Settings
) -> None:
    rng = random.Random(0)

    def compare() -> dict[str, Any]:
        lean = engine.registry.load(None)[0].model
        # The same model with --cpu-rope fast: mx.fast.rope in every layer, as mlx-lm runs it.
        ref = ModelRegistry(replace(settings, cpu_rope="fast"), float32=True).load(None)[0].model
        prompt = [rng.randrange(1000, 20000) for _ in range(100)]
        prompts = [[rng.randrange(1000, 20000) for _ in range(n)] for n in (37, 128, 5, 90)]
        caches = {}
        for name, m in (("lean", lean), ("ref", ref)):
            caches[name] = [BatchKVCache([0]) for _ in m.layers]
            mx.eval(m(mx.array([prompt]), cache=caches[name]))
        return {
            "ropes": {type(m.model.layers[0].self_attn.rope) for m in (lean, ref)},
            "params": [len(tree_flatten(m.parameters())) for m in (lean, ref)],
            "plain": [_plain_logits(m, prompt, 12) for m in (lean, ref)],
            "batch": [_batch(m, prompts, 16) for m in (lean, ref)],
            "nodes": [_graph_nodes(m, caches[k], 1) for k, m in (("lean", lean), ("ref", ref))],
        }

    got = engine._worker.call(compare)
    assert got["ropes"] == {lean_rope.LeanRoPE, nn.RoPE}
    assert got["params"][0] == got["params"][1]  # no new parameters (saved weights stay the same)
    lean_plain, ref_plain = got["plain"]
    assert all(mx.array_equal(a, b).item() for a, b in zip(lean_plain, ref_plain, strict=True))
    (lean_tokens, lean_lps), (ref_tokens, ref_lps) = got["batch"]
    assert lean_tokens == ref_tokens  # left-padded rows: per-row offsets
    pairs = [(a, b) for la, ra in zip(lean_lps, ref_lps, strict=True) for a, b in zip(la, ra, strict=True)]
    assert all(mx.array_equal(a, b).item() for a, b in pairs)
    lean_nodes, ref_nodes = got["nodes"]
    # A decode step's graph: ~4200 nodes with mx.fast.rope's CPU path, ~3000 lean.
    assert lean_nodes < 0.8 * ref_nodes, got["nodes"]
