"""Quantization recipes: what can be asked for, by name ('q4-g64', 'mixed_3_6', 'mxfp4',
'f32'), checked before anything is written. No mlx import: consumers (CLI, UI, specs)
parse and validate recipes before the engine runs them (engine.quantize does that).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from workbench.engine.errors import InvalidRequestError

# mode -> (bits, group sizes) that mlx's quantize accepts for it.
QUANT_MODES: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "affine": ((2, 3, 4, 5, 6, 8), (32, 64, 128)),
    "mxfp4": ((4,), (32,)),
    "nvfp4": ((4,), (16,)),
    "mxfp8": ((8,), (32,)),
}
# mlx-lm's mixed-precision recipes (mlx_lm.convert.QUANT_RECIPES): name -> (low, high) bits.
# Most layers get the low bits; v_proj/down_proj in some layers and lm_head get the high.
MIXED_RECIPES: dict[str, tuple[int, int]] = {
    "mixed_2_6": (2, 6),
    "mixed_3_4": (3, 4),
    "mixed_3_6": (3, 6),
    "mixed_4_6": (4, 6),
}
DEQUANTIZE = "f32"
DEFAULT_GROUP_SIZE = 64
RECIPE_HELP = (
    "q<bits>[-g<group>] (affine: bits 2,3,4,5,6,8; group 32,64,128; default 64), "
    "mixed_2_6 | mixed_3_4 | mixed_3_6 | mixed_4_6 [-g<group>], mxfp4, nvfp4, mxfp8, "
    "or f32 (dequantize to dense weights: float32 on the CPU backend, float16 on Metal/CUDA)"
)
_AFFINE = re.compile(r"^q(\d+)(?:-g(\d+))?$")
_MIXED = re.compile(r"^(mixed_\d_\d)(?:-g(\d+))?$")


@dataclass(frozen=True)
class QuantRecipe:
    """One way to make a variant. kind: a QUANT_MODES mode, a MIXED_RECIPES name, or
    'f32' (dequantize). bits: the bits of most weights (32 for f32). Invalid -> error."""

    kind: str
    bits: int
    group_size: int | None

    def __post_init__(self) -> None:
        if self.kind == DEQUANTIZE:
            _check(self.bits == 32 and self.group_size is None, "f32 (dequantize) takes no bits or group")
            return
        if self.kind in MIXED_RECIPES:
            bits_ok, groups_ok = (MIXED_RECIPES[self.kind][0],), QUANT_MODES["affine"][1]
        elif self.kind in QUANT_MODES:
            bits_ok, groups_ok = QUANT_MODES[self.kind]
        else:
            raise InvalidRequestError(f"unknown quantization {self.kind!r}; recipes: {RECIPE_HELP}", "recipe")
        problems = []  # both at once, so one correction is enough
        if self.bits not in bits_ok:
            problems.append(f"{self.bits}-bit weights are not supported (choose from {_join(bits_ok)})")
        if self.group_size not in groups_ok:
            problems.append(f"group size {self.group_size} is not supported (choose from {_join(groups_ok)})")
        _check(not problems, f"{self.kind}: {'; '.join(problems)}")

    @classmethod
    def parse(cls, text: str) -> QuantRecipe:
        """'q4' / 'q4-g32' / 'mixed_3_6' / 'mixed_3_6-g32' / 'mxfp4' / 'f32' -> recipe."""
        name = str(text).strip().lower()
        if name in (DEQUANTIZE, "dequantize"):
            return cls(DEQUANTIZE, 32, None)
        if name in QUANT_MODES and name != "affine":
            bits, groups = QUANT_MODES[name]
            return cls(name, bits[0], groups[0])
        if m := _AFFINE.match(name):
            return cls("affine", int(m[1]), int(m[2] or DEFAULT_GROUP_SIZE))
        if (m := _MIXED.match(name)) and m[1] in MIXED_RECIPES:
            return cls(m[1], MIXED_RECIPES[m[1]][0], int(m[2] or DEFAULT_GROUP_SIZE))
        raise InvalidRequestError(f"cannot read recipe {text!r}; recipes: {RECIPE_HELP}", "recipe")

    @property
    def name(self) -> str:
        """The canonical spelling, also the suffix of the variant's model id."""
        if self.kind == DEQUANTIZE:
            return DEQUANTIZE
        if self.kind == "affine":
            return f"q{self.bits}-g{self.group_size}"
        if self.kind in MIXED_RECIPES:
            return f"{self.kind}-g{self.group_size}"
        return self.kind

    @property
    def mode(self) -> str:
        """mlx's quantization mode ('affine' for mixed recipes; 'none' for f32)."""
        if self.kind == DEQUANTIZE:
            return "none"
        return "affine" if self.kind in MIXED_RECIPES else self.kind


@dataclass(frozen=True)
class QuantResult:
    """What engine.quantize made: the new variant's id, its recipe, whether it came from
    the cache, and how long quantizing took when it was made."""

    model: str
    source_model: str
    recipe: str
    cached: bool
    quantize_s: float
    bits_per_weight: float | None


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise InvalidRequestError(message, "recipe")


def _join(values: tuple[int, ...]) -> str:
    return ", ".join(map(str, values))
