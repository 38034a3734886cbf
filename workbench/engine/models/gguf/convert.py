"""GGUF -> MLX model folder (weights, config.json, tokenizer) that `mlx_lm.load` reads, in
this process (convert_gguf) or a child one (convert_gguf_apart). Knows nothing of registries
or requests; docs/architecture.md has the details (name mapping, Q/K permutation, why a child)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import mlx.core as mx

from workbench.engine.errors import ModelLoadError, UnsupportedModelError
from workbench.engine.models.gguf.reader import check_tensor_types, read_tensor_infos
from workbench.engine.models.gguf.tokenizer import metadata_scalar, write_tokenizer

# Bump when the output layout changes, so cached conversions are redone.
CONVERTER_VERSION = 1
GROUP_SIZE = 32  # every block format mx.load maps to MLX (Q4_0, Q4_1, Q8_0) uses 32

SUPPORTED_ARCHITECTURES = ("llama",)

_LAYER_PARTS = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
}
_TOP_LEVEL = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}


def fingerprint(path: Path) -> str:
    """A cheap content key: size plus the first and last MiB (files are immutable in practice)."""
    size = os.path.getsize(path)
    h = hashlib.sha256(f"{size}:{CONVERTER_VERSION}".encode())
    with open(path, "rb") as f:
        h.update(f.read(1 << 20))
        f.seek(max(0, size - (1 << 20)))
        h.update(f.read(1 << 20))
    return h.hexdigest()[:12]


def convert_gguf(src: Path, dst: Path, *, dequantize: bool, float32: bool) -> Path:
    """Write an MLX model folder for `src` at `dst` (atomically); return `dst`.

    dequantize: expand quantized tensors to dense (the float32 variant).
    float32: store scales/biases and dense weights as float32 (the CPU backend's
    fast path; half precision is ~30x slower there). Otherwise float16.
    """
    src, dst = Path(src), Path(dst)
    infos = read_tensor_infos(src)
    check_tensor_types(src, infos)
    weights, meta = mx.load(str(src), return_metadata=True)
    arch = str(meta.get("general.architecture", "unknown"))
    if arch not in SUPPORTED_ARCHITECTURES:
        raise UnsupportedModelError(
            f"{src.name}: architecture {arch!r} is not supported by the GGUF importer "
            f"(supported: {', '.join(SUPPORTED_ARCHITECTURES)})"
        )
    config = _config_from_metadata(meta, arch, tied="output.weight" not in weights)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", dir=dst.parent))
    try:
        # The tokenizer first: it is cheap and may refuse the file before the tensor work.
        write_tokenizer(meta, tmp, config["max_position_embeddings"])
        tensors = _map_llama_tensors(src, weights, config)
        dense_dtype = mx.float32 if float32 else mx.float16
        tensors, quantization = _finish_tensors(tensors, dequantize=dequantize, dtype=dense_dtype)
        if quantization:
            config["quantization"] = quantization
            config["quantization_config"] = quantization
        config["torch_dtype"] = "float32" if float32 else "float16"
        mx.save_safetensors(str(tmp / "model.safetensors"), tensors, metadata={"format": "mlx"})
        (tmp / "config.json").write_text(json.dumps(config, indent=2))
        (tmp / "workbench_source.json").write_text(
            json.dumps(
                {
                    "source": str(src),
                    "fingerprint": fingerprint(src),
                    "converter_version": CONVERTER_VERSION,
                    "dequantized": dequantize,
                    "dtype": "float32" if float32 else "float16",
                },
                indent=2,
            )
        )
        if dst.exists():
            shutil.rmtree(dst)
        os.replace(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dst


def convert_gguf_apart(src: Path, dst: Path, *, dequantize: bool, float32: bool) -> Path:
    """convert_gguf in a child process, waited for without the GIL: `mx.load` of a GGUF
    holds the GIL for as long as it reads the file (0.5 s for the 135M model here, seconds
    for bigger ones), which would stall /health and every stream of a serving process.
    The child's UnsupportedModelError comes back as one; anything else as ModelLoadError."""
    args = {"src": str(src), "dst": str(dst), "dequantize": dequantize, "float32": float32}
    done = subprocess.run(
        [sys.executable, "-m", "workbench.engine.models.gguf.convert", json.dumps(args)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode == 0:
        return Path(dst)
    try:
        failure = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        failure = {"kind": "crash", "message": f"exit code {done.returncode}: {' / '.join(tail)}"}
    if failure.get("kind") == "unsupported":
        raise UnsupportedModelError(failure["message"])
    raise ModelLoadError(f"converting {Path(src).name} failed: {failure['message']}")


def _main(argv: list[str]) -> int:
    """The child side of convert_gguf_apart: one JSON argument in, one JSON line out on
    failure (exit code 2)."""
    args = json.loads(argv[0])
    try:
        convert_gguf(
            Path(args["src"]), Path(args["dst"]), dequantize=args["dequantize"], float32=args["float32"]
        )
    except UnsupportedModelError as exc:
        print(json.dumps({"kind": "unsupported", "message": str(exc)}))
        return 2
    except Exception as exc:  # reported to the parent, which raises ModelLoadError
        print(json.dumps({"kind": "error", "message": f"{type(exc).__name__}: {exc}"}))
        return 2
    return 0


def _config_from_metadata(meta: dict[str, Any], arch: str, tied: bool) -> dict[str, Any]:
    def need(key: str) -> Any:
        value = metadata_scalar(meta, f"{arch}.{key}")
        if value is None:
            raise UnsupportedModelError(f"GGUF metadata lacks {arch}.{key}")
        return value

    heads = int(need("attention.head_count"))
    hidden = int(need("embedding_length"))
    config: dict[str, Any] = {
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "hidden_size": hidden,
        "intermediate_size": int(need("feed_forward_length")),
        "num_hidden_layers": int(need("block_count")),
        "num_attention_heads": heads,
        "num_key_value_heads": int(metadata_scalar(meta, f"{arch}.attention.head_count_kv", heads)),
        "rms_norm_eps": float(need("attention.layer_norm_rms_epsilon")),
        "rope_theta": float(metadata_scalar(meta, f"{arch}.rope.freq_base", 10000.0)),
        "max_position_embeddings": int(metadata_scalar(meta, f"{arch}.context_length", 2048)),
        "head_dim": int(
            metadata_scalar(
                meta,
                f"{arch}.attention.key_length",
                metadata_scalar(meta, f"{arch}.rope.dimension_count", hidden // heads),
            )
        ),
        "tie_word_embeddings": tied,
        "attention_bias": False,
        "mlp_bias": False,
    }
    vocab = meta.get("tokenizer.ggml.tokens")
    config["vocab_size"] = int(metadata_scalar(meta, f"{arch}.vocab_size", len(vocab) if vocab else 0))
    scaling = metadata_scalar(meta, f"{arch}.rope.scaling.type")
    if scaling not in (None, "none"):
        if scaling != "linear":
            raise UnsupportedModelError(f"GGUF rope scaling {scaling!r} is not supported")
        config["rope_scaling"] = {
            "type": "linear",
            "factor": float(metadata_scalar(meta, f"{arch}.rope.scaling.factor")),
        }
    for name in ("bos", "eos"):
        token = metadata_scalar(meta, f"tokenizer.ggml.{name}_token_id")
        if token is not None:
            config[f"{name}_token_id"] = int(token)
    return config


def _unpermute(x: mx.array, n_heads: int) -> mx.array:
    """Undo llama.cpp's convert-time permutation of Q/K rows (per head: interleaved
    rotary halves). The forward permute reshapes (heads, 2, dim/2); we reshape
    (heads, dim/2, 2) and swap back. Done the other way, the model emits only newlines."""
    rows = x.shape[0]
    return x.reshape(n_heads, rows // n_heads // 2, 2, *x.shape[1:]).swapaxes(1, 2).reshape(x.shape)


def _map_llama_tensors(
    src: Path, weights: dict[str, mx.array], config: dict[str, Any]
) -> dict[str, mx.array]:
    out: dict[str, mx.array] = {}
    for key, value in weights.items():
        base, part = key.rsplit(".", 1)
        if base.startswith("blk."):
            _, layer, kind = base.split(".", 2)
            if kind not in _LAYER_PARTS:
                raise UnsupportedModelError(f"{src.name}: unexpected tensor {key!r} for a llama model")
            if kind == "attn_q":
                value = _unpermute(value, config["num_attention_heads"])
            elif kind == "attn_k":
                value = _unpermute(value, config["num_key_value_heads"])
            name = f"model.layers.{layer}.{_LAYER_PARTS[kind]}"
        elif base in _TOP_LEVEL:
            name = _TOP_LEVEL[base]
        else:
            raise UnsupportedModelError(f"{src.name}: unexpected tensor {key!r} for a llama model")
        out[f"{name}.{part}"] = value
    return out


def _finish_tensors(
    tensors: dict[str, mx.array], *, dequantize: bool, dtype: mx.Dtype
) -> tuple[dict[str, mx.array], dict[str, Any]]:
    """Cast to `dtype`; dequantize or record per-tensor bits. Returns (tensors, quantization)."""
    out: dict[str, mx.array] = {}
    bits_by_module: dict[str, int] = {}
    for key, value in tensors.items():
        if key.endswith((".scales", ".biases")):
            continue
        module = key.rsplit(".", 1)[0]
        scales = tensors.get(f"{module}.scales")
        if key.endswith(".weight") and scales is not None:
            biases = tensors[f"{module}.biases"]
            bits = value.shape[-1] * 32 // (scales.shape[-1] * GROUP_SIZE)
            scales, biases = scales.astype(dtype), biases.astype(dtype)
            if dequantize:
                out[key] = mx.dequantize(value, scales, biases, group_size=GROUP_SIZE, bits=bits).astype(
                    dtype
                )
            else:
                out[key], out[f"{module}.scales"], out[f"{module}.biases"] = value, scales, biases
                bits_by_module[module] = bits
        else:
            out[key] = value.astype(dtype) if mx.issubdtype(value.dtype, mx.floating) else value
    mx.eval(out)
    if not bits_by_module:
        return out, {}
    default_bits = Counter(bits_by_module.values()).most_common(1)[0][0]
    quantization: dict[str, Any] = {"group_size": GROUP_SIZE, "bits": default_bits, "mode": "affine"}
    for module, bits in sorted(bits_by_module.items()):
        if bits != default_bits:
            quantization[module] = {"group_size": GROUP_SIZE, "bits": bits}
    return out, quantization


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
