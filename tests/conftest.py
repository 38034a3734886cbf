"""Shared fixtures: one real Engine on the embedded model for the whole session.

The optimized BLAS is loaded before anything imports mlx (test modules may),
exactly as the Engine does in production processes.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from workbench.config import Settings
from workbench.engine import Engine, blas


def pytest_configure(config: pytest.Config) -> None:
    blas.preload(os.environ.get("WORKBENCH_BLAS", "auto"))
    # An empty hub cache of the suite's own: the catalog registers every MLX repo in the
    # cache, and a developer's cache must not change what the tests see.
    os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="workbench-tests-hf-")
    os.environ.pop("HF_HUB_CACHE", None)


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh models directory, so conversion itself is exercised every session."""
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def settings(models_dir: Path) -> Settings:
    return Settings.from_env(models_dir=models_dir, allow_download=False)


@pytest.fixture(scope="session")
def engine(settings: Settings) -> Iterator[Engine]:
    with Engine(settings) as eng:
        yield eng


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """Expose each phase's report on the item (item.rep_call), so fixtures can tell a
    failed test in teardown (the browser tests save a screenshot of it)."""
    outcome = yield
    setattr(item, f"rep_{call.when}", outcome.get_result())
