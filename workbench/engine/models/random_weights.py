"""Random-weight model folders of a real shape (qwen2-shaped, float32, a given tokenizer) for speed
and memory work without a hub, and for tests; their replies are noise."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

SHAPES = {
    # Qwen2-0.5B's shape (14 heads, 2 KV heads: tensor parallel over 2 ranks), SmolLM2's vocabulary.
    "qwen2-0.5b": dict(hidden_size=896, num_hidden_layers=24, intermediate_size=4864,
                       num_attention_heads=14, num_key_value_heads=2),
    "tiny": dict(hidden_size=64, num_hidden_layers=2, intermediate_size=128,
                 num_attention_heads=4, num_key_value_heads=2),
}  # fmt: skip
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def write_random_model(out: Path, shape: str, tokenizer: Path, seed: int = 7) -> Path:
    """A new folder `out` with `shape` (SHAPES), random float32 weights and `tokenizer`'s files."""
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm.models import qwen2

    config = dict(
        model_type="qwen2",
        rms_norm_eps=1e-6,
        vocab_size=49152,
        max_position_embeddings=8192,
        rope_theta=10000.0,
        tie_word_embeddings=True,
        **SHAPES[shape],
    )
    mx.random.seed(seed)
    model = qwen2.Model(qwen2.ModelArgs.from_dict(config))
    model.set_dtype(mx.float32)
    out.mkdir(parents=True)
    weights = dict(tree_flatten(model.parameters()))
    mx.save_safetensors(str(out / "model.safetensors"), weights)
    # The index mlx-lm's own folders have (its pipeline-parallel loading reads it).
    index = {"metadata": {}, "weight_map": {name: "model.safetensors" for name in weights}}
    (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    (out / "config.json").write_text(json.dumps(config, indent=2))
    for name in TOKENIZER_FILES:
        if (tokenizer / name).exists():
            shutil.copy(tokenizer / name, out / name)
    return out
