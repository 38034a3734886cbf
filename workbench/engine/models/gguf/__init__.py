"""GGUF import: header reader, conversion to an MLX folder, tokenizer from GGUF metadata."""

from workbench.engine.models.gguf.convert import (
    CONVERTER_VERSION,
    GROUP_SIZE,
    SUPPORTED_ARCHITECTURES,
    convert_gguf,
    convert_gguf_apart,
    fingerprint,
)
from workbench.engine.models.gguf.reader import (
    SUPPORTED_TENSOR_TYPES,
    GGUFTensorInfo,
    check_tensor_types,
    read_tensor_infos,
    weight_bits,
)

__all__ = [
    "CONVERTER_VERSION",
    "GROUP_SIZE",
    "SUPPORTED_ARCHITECTURES",
    "SUPPORTED_TENSOR_TYPES",
    "GGUFTensorInfo",
    "check_tensor_types",
    "convert_gguf",
    "convert_gguf_apart",
    "fingerprint",
    "read_tensor_infos",
    "weight_bits",
]
