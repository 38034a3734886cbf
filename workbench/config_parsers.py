"""How a setting's text becomes its value: one parser per kind of setting, each raising a
ValueError that says what it accepts. No settings, no environment."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off", ""}


def _parse_bool(raw: str) -> bool:
    word = raw.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError("expected one of 1/0, true/false, yes/no, on/off")


def _int_at_least(low: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise ValueError(f"expected an integer >= {low}") from None
        return _check(value >= low, value, f"expected an integer >= {low}")

    return parse


def _prefill_step(raw: str) -> int | None:
    """WORKBENCH_PREFILL_STEP: tokens >= 16, or auto / empty (None)."""
    if raw.strip().lower() in ("", "auto"):
        return None
    try:
        return _int_at_least(16)(raw)
    except ValueError:
        raise ValueError("expected an integer >= 16, or 'auto'") from None


def _decode_threads(raw: str) -> str:
    """WORKBENCH_DECODE_THREADS: auto, all, or a thread count >= 1."""
    value = raw.strip().lower()
    if value in ("auto", "all"):
        return value
    try:
        return str(_int_at_least(1)(value))
    except ValueError:
        raise ValueError("expected auto, all, or a thread count >= 1") from None


def _port(raw: str) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        value = 0
    return _check(0 < value < 65536, value, "expected a port number in 1..65535")


def _number(what: str, *, positive: bool) -> Callable[[str], float]:
    bound = "> 0" if positive else ">= 0"

    def parse(raw: str) -> float:
        try:
            value = float(raw.strip())
        except ValueError:
            raise ValueError(f"expected a number of {what} {bound}") from None
        ok = math.isfinite(value) and (value > 0 if positive else value >= 0)
        return _check(ok, value, f"expected a number of {what} {bound}")

    return parse


def _budget(raw: str) -> float | None:
    if raw.strip().lower() in {"", "auto"}:
        return None
    try:
        return _number("GB", positive=True)(raw)
    except ValueError:
        raise ValueError("expected a number of GB > 0, or 'auto' (60% of system RAM)") from None


def _cap(raw: str) -> int | None:
    """A positive limit, or none (0 or empty)."""
    if not raw.strip() or raw.strip() == "0":
        return None
    try:
        value = int(raw.strip())
    except ValueError:
        raise ValueError("expected an integer >= 1, or 0 for no limit") from None
    return _check(value >= 1, value, "expected an integer >= 1, or 0 for no limit")


def _choice(choices: tuple[str, ...]) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        return _check(value in choices, value, f"expected one of {', '.join(choices)}")

    return parse


def _int_in(choices: tuple[int, ...], note: str = "") -> Callable[[str], int]:
    def parse(raw: str) -> int:
        value = int(raw) if raw.strip().isdigit() else None
        return _check(value in choices, raw, f"expected one of {', '.join(map(str, choices))}{note}")

    return parse


def _text(raw: str) -> str:
    value = raw.strip()
    return _check(bool(value), raw, "expected a non-empty value")


def _optional_text(raw: str) -> str | None:
    return raw.strip() or None


def _optional_path(raw: str) -> Path | None:
    return Path(raw.strip()).expanduser() if raw.strip() else None


def _comma_list(raw: str) -> tuple[str, ...]:
    return tuple(item for item in raw.split(",") if item.strip())


def _path_list(raw: str) -> tuple[str, ...]:
    return tuple(p for p in raw.split(os.pathsep) if p.strip())


def _check(ok: bool, value: Any, accepts: str) -> Any:
    if not ok:
        raise ValueError(accepts)
    return value


SPECULATION_FORMS = "off, prompt_lookup[:N] or draft:MODEL[:N] (N draft tokens, 1-32)"


def _speculation(raw: str) -> str:
    """WORKBENCH_SPECULATIVE, checked (speculation_parts reads it)."""
    speculation_parts(raw)
    return raw.strip()


def speculation_parts(raw: str) -> tuple[str, str | None, int | None]:
    """(mode, draft model, draft tokens) of a WORKBENCH_SPECULATIVE value: off,
    prompt_lookup[:N] or draft:MODEL[:N]; ValueError for anything else."""
    parts = raw.strip().split(":")
    mode, rest = parts[0].lower(), parts[1:]
    count: int | None = None
    if rest and rest[-1].isdigit() and (mode == "prompt_lookup" or len(rest) == 2):
        count = int(rest.pop())
        _check(1 <= count <= 32, raw, f"expected {SPECULATION_FORMS}")
    if mode == "off" and not rest and count is None:
        return ("off", None, None)
    if mode == "prompt_lookup" and not rest:
        return (mode, None, count)
    if mode == "draft" and len(rest) == 1 and rest[0].strip():
        return (mode, rest[0].strip(), count)
    raise ValueError(f"expected {SPECULATION_FORMS}")


def check_value(name: str, parse: Callable[[str], Any], value: Any) -> None:
    """A setting's value given in code (not parsed from text): of the kind the setting holds
    (a flag's True or False), and one its parser `parse` accepts; else a ValueError naming it."""
    if isinstance(value, (Path, tuple)):
        return
    if value is None:
        try:
            empty = parse("")
        except ValueError as exc:
            raise ValueError(f"{name}=None: {exc}") from None
        if empty is not None:
            raise ValueError(f"{name}=None: a value is needed")
        return
    if isinstance(value, bool) != (parse is _parse_bool):
        raise ValueError(
            f"{name}={value!r}: {'expected True or False' if parse is _parse_bool else 'not a flag'}"
        )
    try:
        parse(str(value))
    except ValueError as exc:
        raise ValueError(f"{name}={value!r}: {exc}") from None
