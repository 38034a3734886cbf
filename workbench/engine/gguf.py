"""GGUF -> MLX model folder (weights, config.json, tokenizer) that `mlx_lm.load` reads.

`mx.load` reads Q4_0 / Q4_1 / Q8_0 / F16 / F32 tensors directly as MLX affine
quantized (group size 32) or dense arrays; this module checks the tensor types
first, maps llama.cpp names to Hugging Face llama names, undoes llama.cpp's
Q/K row permutation, writes config.json (with a per-tensor quantization block)
and builds the tokenizer (gguf_tokenizer.py). It knows
nothing of registries or requests. `convert_gguf_apart` runs the conversion in a child
process (`python -m workbench.engine.gguf`), so a serving process's event loop is never
stalled by the long calls that hold the GIL (reading the whole GGUF, building the vocabulary).
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import shutil
import struct
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlx.core as mx

from workbench.engine.errors import ModelLoadError, UnsupportedModelError
from workbench.engine.gguf_tokenizer import metadata_scalar, write_tokenizer

# Bump when the output layout changes, so cached conversions are redone.
CONVERTER_VERSION = 1
GROUP_SIZE = 32  # every block format mx.load maps to MLX (Q4_0, Q4_1, Q8_0) uses 32

# ggml type id -> bits per weight, for the types mx.load reads faithfully.
_NATIVE_TYPES = {0: ("F32", 32), 1: ("F16", 16), 2: ("Q4_0", 4), 3: ("Q4_1", 4), 8: ("Q8_0", 8)}
SUPPORTED_TENSOR_TYPES = tuple(name for name, _ in _NATIVE_TYPES.values())
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


@dataclass(frozen=True)
class GGUFTensorInfo:
    name: str
    shape: tuple[int, ...]
    type_id: int

    @property
    def type_name(self) -> str:
        if self.type_id in _NATIVE_TYPES:
            return _NATIVE_TYPES[self.type_id][0]
        try:
            from gguf import GGMLQuantizationType

            return GGMLQuantizationType(self.type_id).name
        except (ImportError, ValueError):
            return f"ggml type {self.type_id}"


# GGUF metadata value types: id -> struct format (fixed-size ones).
_SCALAR_FORMATS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9


def read_tensor_infos(path: Path) -> list[GGUFTensorInfo]:
    """Walk the GGUF header (skipping metadata values) and return each tensor's
    name, shape and ggml type. Much faster than a full reader for big vocabularies."""
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        if buf[:4] != b"GGUF":
            raise UnsupportedModelError(f"{path}: not a GGUF file (bad magic)")
        (version,) = struct.unpack_from("<I", buf, 4)
        if version < 2:
            raise UnsupportedModelError(f"{path}: GGUF version {version} is too old (need 2+)")
        n_tensors, n_kv = struct.unpack_from("<QQ", buf, 8)
        pos = 24

        def read_string(p: int) -> tuple[str, int]:
            (n,) = struct.unpack_from("<Q", buf, p)
            return buf[p + 8 : p + 8 + n].decode("utf-8", errors="replace"), p + 8 + n

        def skip_value(p: int, vtype: int) -> int:
            if vtype in _SCALAR_FORMATS:
                return p + struct.calcsize(_SCALAR_FORMATS[vtype])
            if vtype == _STRING:
                (n,) = struct.unpack_from("<Q", buf, p)
                return p + 8 + n
            if vtype == _ARRAY:
                etype, count = struct.unpack_from("<IQ", buf, p)
                p += 12
                if etype in _SCALAR_FORMATS:
                    return p + count * struct.calcsize(_SCALAR_FORMATS[etype])
                for _ in range(count):
                    p = skip_value(p, etype)
                return p
            raise UnsupportedModelError(f"{path}: unknown GGUF metadata value type {vtype}")

        for _ in range(n_kv):
            _, pos = read_string(pos)
            (vtype,) = struct.unpack_from("<I", buf, pos)
            pos = skip_value(pos + 4, vtype)
        infos = []
        for _ in range(n_tensors):
            name, pos = read_string(pos)
            (n_dims,) = struct.unpack_from("<I", buf, pos)
            dims = struct.unpack_from(f"<{n_dims}Q", buf, pos + 4)
            type_id, _offset = struct.unpack_from("<IQ", buf, pos + 4 + 8 * n_dims)
            pos += 4 + 8 * n_dims + 12
            # GGUF lists dims fastest-first; MLX / numpy shapes are the reverse.
            infos.append(GGUFTensorInfo(name, tuple(reversed(dims)), type_id))
        return infos


def check_tensor_types(path: Path, infos: list[GGUFTensorInfo]) -> None:
    """Raise UnsupportedModelError naming the first tensor whose type we cannot read."""
    for info in infos:
        if info.type_id not in _NATIVE_TYPES:
            raise UnsupportedModelError(
                f"{Path(path).name}: tensor {info.name!r} has type {info.type_name}, which the "
                f"GGUF importer cannot read (supported: {', '.join(SUPPORTED_TENSOR_TYPES)}). "
                "Use a Q4_0 / Q4_1 / Q8_0 / F16 / F32 GGUF, or the model's MLX (safetensors) version."
            )


def weight_bits(infos: list[GGUFTensorInfo]) -> int:
    """Bits of the most common matrix tensor type (what a user calls the quantization)."""
    counts = Counter(_NATIVE_TYPES.get(i.type_id, ("?", 0))[1] for i in infos if len(i.shape) == 2)
    return counts.most_common(1)[0][0] if counts else 32


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
        [sys.executable, "-m", "workbench.engine.gguf", json.dumps(args)],
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
