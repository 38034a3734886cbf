"""House rules a machine can check: ruff clean; the import contracts (import-linter, in
pyproject: layers, mlx only in the engine, no circles); `import workbench` and building the
app stay free of mlx; size limits (modules, functions, tab builders); every module named in
docs/architecture.md with a docstring."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("workbench", "api")
MODULE_LINES = 400
FUNCTION_LINES = 80
TAB_BUILDER_LINES = 120  # Gradio tab builders lay out widgets and wire events in one place


def _modules() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def test_ruff_lint_and_format_are_clean() -> None:
    ruff = [sys.executable, "-m", "ruff"]
    check = subprocess.run([*ruff, "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    fmt = subprocess.run([*ruff, "format", "--check", "."], cwd=ROOT, capture_output=True, text=True)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


def test_the_import_contracts_hold() -> None:
    """pyproject's [tool.importlinter] contracts, checked by import-linter itself."""
    lint = Path(sys.executable).with_name("lint-imports")
    out = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert " 0 broken" in out.stdout, out.stdout[-2000:]


def test_importing_workbench_or_building_the_app_does_not_import_mlx() -> None:
    # mlx is imported on the engine thread only, after the optimized BLAS is loaded.
    loaded = "print(any(m.split('.')[0] in ('mlx', 'mlx_lm') for m in sys.modules))"
    # create_app() builds and mounts the whole UI too: still no mlx until the engine starts.
    for setup in ("import workbench", "from api.app import create_app; create_app()"):
        code = f"import sys; {setup}; {loaded}"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        assert out.stdout.strip() == "False", setup


def test_modules_and_functions_stay_within_their_size() -> None:
    too_long = []
    for path in _modules():
        text = path.read_text()
        name = path.relative_to(ROOT).as_posix()
        if len(text.splitlines()) > MODULE_LINES:
            too_long.append(f"{name}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                builder = name.startswith("workbench/ui/") and re.fullmatch(r"build_\w+_tab", node.name)
                if lines > (TAB_BUILDER_LINES if builder else FUNCTION_LINES):
                    too_long.append(f"{name}:{node.lineno} {node.name}: {lines} lines")
    assert too_long == []


def test_every_module_has_a_short_docstring_and_is_named_in_the_architecture_doc() -> None:
    doc = (ROOT / "docs" / "architecture.md").read_text()
    unnamed, undocumented = [], []
    for path in _modules():
        name = path.relative_to(ROOT).as_posix()
        if not path.read_text().strip():
            continue  # an empty __init__.py
        docstring = ast.get_docstring(ast.parse(path.read_text()))
        if not docstring or len(docstring.splitlines()) > 3:
            undocumented.append(name)
        if path.name != "__init__.py" and f"`{name}`" not in doc:
            unnamed.append(name)
    assert undocumented == [], "modules without a docstring of 1-3 lines"
    assert unnamed == [], "modules docs/architecture.md does not name"
