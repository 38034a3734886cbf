"""GGUF vocabulary -> Hugging Face tokenizer files (tokenizer.json, tokenizer_config.json with
the chat template, generation_config.json). Knows llama.cpp's tokenizer metadata; no weights."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlx.core as mx

from workbench.engine.errors import UnsupportedModelError

# llama.cpp pre-tokenizer names -> our pre-tokenizer family.
_DIGITS_THEN_GPT2 = {"smollm", "starcoder", "refact", "codeshell"}
_GPT2 = {"gpt-2", "gpt2", "default", "mpt", "olmo", "jais"}
# Control tokens llama.cpp also treats as end-of-generation, by their text.
_END_OF_GENERATION_TEXTS = {"<|endoftext|>", "<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>"}


def metadata_scalar(meta: dict[str, Any], key: str, default: Any = None) -> Any:
    """A GGUF metadata value as a Python scalar (mx.load gives 0-d arrays)."""
    value = meta.get(key, default)
    if isinstance(value, mx.array):
        return value.item()
    return value


def write_tokenizer(meta: dict[str, Any], out: Path, context_length: int) -> None:
    """tokenizer.json (built with `tokenizers`), tokenizer_config.json, generation_config.json."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

    kind = meta.get("tokenizer.ggml.model")
    if kind != "gpt2":
        raise UnsupportedModelError(
            f"GGUF tokenizer model {kind!r} is not supported (supported: 'gpt2' byte-level BPE)"
        )
    pre = str(meta.get("tokenizer.ggml.pre", "default"))
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if pre in _DIGITS_THEN_GPT2:
        # llama.cpp splits every digit first ("\p{N}"), then applies the GPT-2 regex.
        pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    elif pre in _GPT2:
        pre_tokenizer = byte_level
    else:
        raise UnsupportedModelError(
            f"GGUF pre-tokenizer {pre!r} is not supported "
            f"(supported: {', '.join(sorted(_DIGITS_THEN_GPT2 | _GPT2))})"
        )
    tokens: list[str] = list(meta["tokenizer.ggml.tokens"])
    merges = [tuple(m.split(" ", 1)) for m in meta.get("tokenizer.ggml.merges", [])]
    token_types = meta.get("tokenizer.ggml.token_type")
    token_types = token_types.tolist() if token_types is not None else [1] * len(tokens)
    tokenizer = Tokenizer(
        models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges, fuse_unk=False)
    )
    tokenizer.pre_tokenizer = pre_tokenizer
    tokenizer.decoder = decoders.ByteLevel()
    # ggml token types: 3 = control (special), 4 = user-defined (added, not special).
    tokenizer.add_special_tokens(
        [AddedToken(tokens[i], special=True, normalized=False) for i, t in enumerate(token_types) if t == 3]
    )
    tokenizer.add_tokens(
        [AddedToken(tokens[i], normalized=False) for i, t in enumerate(token_types) if t == 4]
    )

    def token_text(key: str) -> str | None:
        idx = metadata_scalar(meta, f"tokenizer.ggml.{key}_token_id")
        return tokens[int(idx)] if idx is not None and 0 <= int(idx) < len(tokens) else None

    bos, eos = token_text("bos"), token_text("eos")
    add_bos = bool(metadata_scalar(meta, "tokenizer.ggml.add_bos_token", False))
    if add_bos and bos is not None:
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tokens.index(bos))]
        )
    else:
        tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    tokenizer.save(str(out / "tokenizer.json"))

    tokenizer_config: dict[str, Any] = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": bos,
        "eos_token": eos,
        "unk_token": token_text("unknown"),
        "pad_token": token_text("padding") or eos,
        "add_bos_token": add_bos,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": context_length,
    }
    if template := meta.get("tokenizer.chat_template"):
        tokenizer_config["chat_template"] = str(template)
    (out / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2))

    declared = (metadata_scalar(meta, f"tokenizer.ggml.{k}_token_id") for k in ("eos", "eot", "eom"))
    end_ids = {int(i) for i in declared if i is not None}
    end_ids |= {i for i, t in enumerate(token_types) if t == 3 and tokens[i] in _END_OF_GENERATION_TEXTS}
    generation_config = {"eos_token_id": sorted(end_ids)}
    bos_id = metadata_scalar(meta, "tokenizer.ggml.bos_token_id")
    if bos_id is not None:
        generation_config["bos_token_id"] = int(bos_id)
    (out / "generation_config.json").write_text(json.dumps(generation_config, indent=2))
