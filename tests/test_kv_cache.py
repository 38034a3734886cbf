"""KV-cache precision and the prompt cache's disk tier: quantized (8, 4 bits) and float16 caches
shrink the KV memory as expected at a long context and keep a short greedy reply (8-bit, float16);
both APIs take kv_bits; the KV-quality lab; a restarted engine reuses the disk cache."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anthropic
import openai
import pytest

from api.app import create_app
from tests.helpers import LiveServer, wait_until
from workbench.bench.runner import run_to_csv
from workbench.bench.spec import BenchSpec
from workbench.config import Settings
from workbench.engine import Engine, GenerationRequest, InvalidRequestError, SamplingParams
from workbench.engine.kv_quant import KVQuant
from workbench.engine.models.embedded import EMBEDDED_IDS
from workbench.quant.kv_lab import kv_quality, long_text
from workbench.reports.schema import KV_QUALITY_COLUMNS
from workbench.reports.store import read_results

F32 = EMBEDDED_IDS["f32"]
GREEDY = SamplingParams(temperature=0.0)
QUESTION = [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]


def _reply(engine: Engine, kv: dict | None, **kw: object) -> tuple[str, object]:
    defaults = {"messages": QUESTION, "max_tokens": 16}
    request = GenerationRequest(model=F32, sampling=GREEDY, kv=kv, **(defaults | kw))  # type: ignore[arg-type]
    done = engine.generate(request)
    return done.text, done.stats


def test_kv_fields_are_checked_and_named() -> None:
    for bad, param in (({"kv_bits": 7}, "kv_bits"), ({"kv_group_size": 48}, "kv_group_size")):
        with pytest.raises(InvalidRequestError) as caught:
            GenerationRequest(prompt="x", kv=bad)
        assert caught.value.param == param
    with pytest.raises(InvalidRequestError):
        GenerationRequest(prompt="x", kv={"quantized_kv_start": -1})
    assert KVQuant(8).over(KVQuant(0, 64, 0)).label() == "q8"
    assert KVQuant(None, 32).over(KVQuant(4, 64, 100)).label() == "q4:g32:s100"
    assert KVQuant(0).over(KVQuant(8, 64, 0)).on is False  # a request can turn the default off
    assert GenerationRequest(prompt="x", kv={"kv_bits": None}).kv is None


def test_kv_memory_shrinks_as_expected_at_a_long_context(engine: Engine) -> None:
    """~1.2k prompt tokens: each precision's KV bytes per stored token against the model's own
    (float32): f16 half; 8 and 4 bits plus a float32 scale and bias per group of 64 elements."""
    prompt = long_text()[:6000]
    per_token = {}
    for kv in (None, {"kv_bits": 16}, {"kv_bits": 8}, {"kv_bits": 4}):
        _, stats = _reply(
            engine, kv, messages=None, prompt=prompt, max_tokens=4, ignore_eos=True, cache=False
        )
        assert stats.prompt_tokens > 1100 and stats.generation_tokens == 4
        stored = stats.prompt_tokens + stats.generation_tokens - 1  # (give or take the last token)
        # The batch's float32 cache comes out cut to its tokens; the others grow by 256 tokens.
        slots = stored if not stats.kv_cache else -(-stored // 256) * 256
        per_token[stats.kv_cache] = stats.kv_cache_gb / slots
    full = per_token[""]
    assert full * 1e9 == pytest.approx(30 * 2 * 3 * 64 * 4, rel=0.01)  # layers x K,V x KV heads x dim x 4 B
    expected = {"f16": 0.5, "q8": (8 + 2 * 32 / 64) / 32, "q4": (4 + 2 * 32 / 64) / 32}
    for name, ratio in expected.items():
        assert per_token[name] / full == pytest.approx(ratio, rel=0.01), name


def test_short_greedy_reply_is_kept_by_8bit_and_float16(engine: Engine) -> None:
    full, stats = _reply(engine, None)
    assert stats.kv_cache == "" and full
    for kv in ({"kv_bits": 8}, {"kv_bits": 16}, {"kv_bits": 8, "kv_group_size": 32}):
        text, stats = _reply(engine, kv)
        assert text == full, kv
        assert stats.kv_cache and stats.batch_size == 1  # decoded outside the batch
    # 4-bit is not asked to agree (the lab's KL is ~0.1-0.2 nats): it runs and says so.
    _, stats = _reply(engine, {"kv_bits": 4})
    assert stats.kv_cache == "q4" and stats.generation_tokens > 0


def test_a_group_size_that_does_not_divide_the_head_is_refused(engine: Engine) -> None:
    with pytest.raises(InvalidRequestError, match="head dimension") as caught:
        _reply(engine, {"kv_bits": 8, "kv_group_size": 128})  # SmolLM2-135M: heads of 64
    assert caught.value.param == "kv_group_size"


@pytest.fixture(scope="module")
def server(settings: Settings, engine: Engine) -> Iterator[str]:
    with LiveServer(create_app(settings, engine, with_ui=False)) as live:
        yield live.url


def test_both_apis_take_kv_bits_and_refuse_bad_ones(server: str) -> None:
    client = openai.OpenAI(base_url=server + "/v1", api_key="x", max_retries=0, timeout=120)
    reply = client.chat.completions.create(
        model=F32, messages=QUESTION, max_tokens=4, temperature=0, extra_body={"kv_bits": 8}
    )
    assert reply.model_extra["timings"]["kv_cache"] == "q8"
    assert reply.model_extra["timings"]["kv_cache_gb"] > 0
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(model=F32, prompt="Hi", max_tokens=2, extra_body={"kv_bits": 7})
    assert "kv_bits" in str(caught.value)
    claude = anthropic.Anthropic(base_url=server, api_key="x", max_retries=0, timeout=120)
    message = claude.messages.create(
        model=F32, messages=QUESTION, max_tokens=4, extra_body={"kv_bits": 4, "kv_group_size": 32}
    )
    assert message.model_extra["timings"]["kv_cache"] == "q4:g32"
    with pytest.raises(anthropic.BadRequestError, match="kv_group_size"):
        claude.messages.create(model=F32, messages=QUESTION, max_tokens=4, extra_body={"kv_group_size": 100})


def test_the_kv_lab_writes_rows_and_a_plot(engine: Engine, tmp_path: Path) -> None:
    from workbench.reports.plots import kv_quality_plot

    csv = tmp_path / "kv.csv"
    rows = kv_quality(engine, F32, [KVQuant(8, 64, 0)], [64, 160], csv_path=csv, window=8)
    df = read_results(csv, KV_QUALITY_COLUMNS)
    assert len(rows) == len(df) == 4 and set(df["kv_cache"]) == {"float32", "q8"}
    q8 = df[df["kv_cache"] == "q8"]
    assert (q8["kl_mean"] < 1e-2).all() and (q8["kv_ratio"] < 0.3).all()
    assert (df[df["kv_cache"] == "float32"]["kl_mean"] == 0).all()
    kv_quality_plot(df).savefig(tmp_path / "kv.png")
    assert (tmp_path / "kv.png").stat().st_size > 10_000


def test_kv_bits_is_a_benchmark_dimension(engine: Engine, tmp_path: Path) -> None:
    spec = BenchSpec("kv", (F32,), (32,), (4,), trials=1, warmup=0, kv_bits=(0, 8))
    run = run_to_csv(engine, spec, tmp_path / "kv.csv")
    df = read_results(run.csv_path)
    assert sorted(df["kv_bits"]) == [0, 8] and (df["kv_cache_gb"] > 0).all()


def test_a_restarted_engine_reuses_the_disk_cache(settings: Settings, tmp_path: Path) -> None:
    disk = settings.with_(prompt_cache_dir=tmp_path / "prompt-cache")
    history = [{"role": "user", "content": "Summarize:\n" + long_text()[:2500]}]
    with Engine(disk) as first:
        _, stats = _reply(first, None, messages=history, max_tokens=6)
        assert stats.cached_tokens == 0
        # Written when the engine goes idle after the reply, not only at stop.
        assert wait_until(lambda: any((tmp_path / "prompt-cache").glob("*.safetensors")), timeout_s=60)
        answer = _reply(first, None, messages=history, max_tokens=6)[0]
    turn = [*history, {"role": "assistant", "content": answer}, {"role": "user", "content": "Shorter."}]
    with Engine(disk) as second:
        _, stats = _reply(second, None, messages=turn, max_tokens=4)
    assert stats.cached_tokens > stats.prompt_tokens // 2 and stats.cache_miss is None


def test_the_disk_tier_keeps_its_byte_bound_and_supersedes_prefixes(engine: Engine, tmp_path: Path) -> None:
    def work() -> tuple[list[tuple[int, ...]], int, int]:
        import mlx.core as mx
        from mlx_lm.models.cache import KVCache

        from workbench.engine.disk_cache import DiskTier

        def cache(n: int) -> list[KVCache]:
            c = KVCache()
            c.update_and_fetch(mx.ones((1, 3, n, 64)), mx.ones((1, 3, n, 64)))
            return [c]

        one = 2 * 3 * 256 * 64 * 4  # a 256-slot buffer of keys and values, float32
        tier = DiskTier(tmp_path / "tier", int(2.5 * one))
        tier.put("m", range(10), cache(10))
        tier.put("m", range(20), cache(20))  # extends the first: replaces it, queued or written
        tier.flush()
        first = [e.tokens for e in tier.entries]
        for start in (100, 200, 300):  # three more, each ~one buffer: the oldest goes
            tier.put("m", range(start, start + 30), cache(30))
            tier.flush()
        again = DiskTier(tmp_path / "tier", int(2.5 * one))  # what a restart finds
        found, length = again.best("m", [*range(200, 230), 7])
        loaded = again.load(found, length) if found else None
        return [*first, *(e.tokens[:1] for e in again.entries)], length, loaded[0].offset if loaded else -1

    seen, length, offset = engine._worker.call(work)
    assert seen[0] == tuple(range(20)) and len(seen) == 3  # one after superseding; two kept of the rest
    assert sorted(seen[1:]) == [(200,), (300,)]
    assert length == offset == 30
