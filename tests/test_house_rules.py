"""House rules from ARCHITECTURE.md that a machine can check: ruff clean, mlx only
inside workbench/engine, imports point down, and `import workbench` stays light."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MLX_IMPORT = re.compile(r"^\s*(import|from)\s+mlx(_lm)?(\.|\s|$)", re.MULTILINE)
API_IMPORT = re.compile(r"^\s*(import|from)\s+api(\.|\s|$)", re.MULTILINE)
GRADIO_IMPORT = re.compile(r"^\s*(import|from)\s+gradio(_client)?(\.|\s|$)", re.MULTILINE)


def _python_files(*parts: str) -> list[Path]:
    return [p for part in parts for p in (ROOT / part).rglob("*.py")] if parts else []


def test_ruff_lint_and_format_are_clean() -> None:
    ruff = [sys.executable, "-m", "ruff"]
    check = subprocess.run([*ruff, "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    fmt = subprocess.run([*ruff, "format", "--check", "."], cwd=ROOT, capture_output=True, text=True)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


def test_only_the_engine_imports_mlx() -> None:
    offenders = [
        str(p.relative_to(ROOT))
        for p in _python_files("workbench", "api", "notebooks")
        if MLX_IMPORT.search(p.read_text()) and "workbench/engine/" not in p.as_posix()
    ]
    assert offenders == []


def test_workbench_never_imports_api() -> None:
    assert [p for p in _python_files("workbench") if API_IMPORT.search(p.read_text())] == []


def test_gradio_stays_in_the_ui() -> None:
    # The API knows no Gradio (it calls workbench.ui.mount_ui); the engine knows neither.
    offenders = [
        str(p.relative_to(ROOT))
        for p in _python_files("workbench", "api")
        if GRADIO_IMPORT.search(p.read_text()) and "workbench/ui/" not in p.as_posix()
    ]
    assert offenders == []


def test_the_engine_knows_no_pandas_or_matplotlib() -> None:
    # Engine results are plain dataclasses; DataFrames and figures begin in bench/reports.
    offenders = [
        str(p.relative_to(ROOT))
        for p in _python_files("workbench/engine")
        if re.search(r"^\s*(import|from)\s+(pandas|matplotlib)\b", p.read_text(), re.M)
    ]
    assert offenders == []


def test_importing_workbench_or_building_the_app_does_not_import_mlx() -> None:
    # mlx is imported on the engine thread only, after the optimized BLAS is loaded.
    loaded = "print(any(m.split('.')[0] in ('mlx', 'mlx_lm') for m in sys.modules))"
    # create_app() builds and mounts the whole UI too: still no mlx until the engine starts.
    for setup in ("import workbench", "from api.app import create_app; create_app()"):
        code = f"import sys; {setup}; {loaded}"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        assert out.stdout.strip() == "False", setup
