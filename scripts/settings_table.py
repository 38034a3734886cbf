"""Print docs/settings.md's settings table (markdown) from `workbench.config.Settings.specs()`.

Every Settings field gets a row: its environment variable, its CLI flag, its default and its
help text. tests/test_docs.py checks that the block between the settings markers in
docs/settings.md equals this output, so a new setting fails the tests until the page is
regenerated:  .venv/bin/python scripts/settings_table.py
"""

from __future__ import annotations

from dataclasses import MISSING
from pathlib import Path
from typing import Any

from workbench.config import Settings, SettingSpec

BEGIN = "<!-- settings:begin -->"
END = "<!-- settings:end -->"


def default_of(name: str) -> Any:
    """The field's default: its value, or what its default_factory makes."""
    field = Settings.__dataclass_fields__[name]
    if field.default is not MISSING:
        return field.default
    return field.default_factory()  # type: ignore[misc]


def show_default(value: Any) -> str:
    """A default as the page shows it: the text the variable would take, home as `~`."""
    if value is None or value == ():
        return "unset"
    if isinstance(value, bool):
        return "`1`" if value else "`0`"
    if isinstance(value, float):
        return f"`{value:g}`"
    if isinstance(value, Path):
        home = Path.home()
        text = "~/" + str(value.relative_to(home)) if value.is_relative_to(home) else str(value)
        return f"`{text}`"
    return f"`{value}`"


def show_flag(spec: SettingSpec) -> str:
    """The flag and where it is taken: every engine command, `serve` only, or nowhere."""
    if spec.scope == "none":
        return "–"
    where = "" if spec.scope == "common" else " (serve)"
    return f"`{spec.flag}`{where}"


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def settings_table() -> str:
    """The markdown table, one row per Settings field in declaration order."""
    lines = ["| variable | flag | default | meaning |", "|---|---|---|---|"]
    for name, spec in Settings.specs().items():
        row = (f"`{spec.env}`", show_flag(spec), show_default(default_of(name)), cell(spec.help))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(settings_table())
