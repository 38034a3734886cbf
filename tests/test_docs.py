"""The docs stay true to the code and to each other: the settings table is the one the code
prints, every relative link (and #anchor) resolves, and the README stays a page.
No model, no server."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 200

FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
CODE_SPAN = re.compile(r"`+[^`]*`+")
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks."""
    out, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            out.append(line)
    return out


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup dropped, lower case, punctuation other than
    '-' and '_' removed, spaces as '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").replace("*", "")
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a markdown file; repeated headings get -1, -2, ..."""
    seen: dict[str, int] = {}
    found = set()
    for line in prose_lines(path.read_text(encoding="utf-8")):
        match = HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return found


def relative_links(path: Path) -> list[str]:
    """Link targets in prose (code blocks and code spans left out), web links excluded."""
    targets = []
    for line in prose_lines(path.read_text(encoding="utf-8")):
        for target in LINK.findall(CODE_SPAN.sub("", line)):
            if not re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, mailto: ...
                targets.append(target)
    return targets


def load_settings_table():
    spec = importlib.util.spec_from_file_location("settings_table", ROOT / "scripts" / "settings_table.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_settings_page_holds_the_table_the_code_prints(monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/settings.md's marked block is scripts/settings_table.py's output: a setting
    added to workbench.config.Settings fails here until its row is on the page."""
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)  # the page shows the plain default
    table = load_settings_table()
    page = (ROOT / "docs" / "settings.md").read_text(encoding="utf-8")
    assert page.count(table.BEGIN) == 1 and page.count(table.END) == 1, "settings markers missing"
    block = page.split(table.BEGIN, 1)[1].split(table.END, 1)[0].strip()
    assert block == table.settings_table().strip(), (
        "docs/settings.md is out of date: paste the output of "
        "`.venv/bin/python scripts/settings_table.py` between its settings markers"
    )


def test_every_setting_has_a_row() -> None:
    from workbench.config import Settings

    table = load_settings_table().settings_table()
    for spec in Settings.specs().values():
        assert f"| `{spec.env}` |" in table, spec.env


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path) -> None:
    broken = []
    for target in relative_links(page):
        file_part, _, anchor = target.partition("#")
        dest = (page.parent / file_part).resolve() if file_part else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading #{anchor} in {dest.relative_to(ROOT)}")
    assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)


def test_the_link_checker_knows_githubs_anchors() -> None:
    assert slug("The `timings` extension") == "the-timings-extension"
    assert slug("A/B arena") == "ab-arena"
    assert slug("Load testing and the comparison with mlx_lm.server") == (
        "load-testing-and-the-comparison-with-mlx_lmserver"
    )
    assert slug("Multi-turn chat: TTFT with and without the prompt cache") == (
        "multi-turn-chat-ttft-with-and-without-the-prompt-cache"
    )


def test_the_readme_is_a_page() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines (at most {README_MAX_LINES})"
