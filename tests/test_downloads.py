"""Hub search and downloads against a Hugging Face-compatible endpoint served on loopback
(tests/fake_hub.py, the transport boundary): search with sizes, `workbench pull` (progress,
a no-op second pull), cancel and resume in a fresh process, dropped connections, a full disk,
and a downloaded model registered, answering and deleted on a real Engine."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fake_hub import FakeHub, write_tiny_model
from tests.helpers import wait_until
from workbench.config import Settings
from workbench.engine import (
    Engine,
    GenerationRequest,
    ModelBusyError,
    cached_models,
    fits,
    repo_files,
    search_models,
)
from workbench.engine.models.downloads import Downloads
from workbench.engine.models.embedded import EMBEDDED_IDS, embedded_gguf_path

REPO, GGUF_REPO, SMOL_GGUF = "test/tiny-mlx", "test/tiny-gguf", "test/smollm2-gguf"
WEIGHTS = "model.safetensors"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="module")
def tiny(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    source = Path(engine.load(EMBEDDED_IDS["f32"]).path or "")
    folder = tmp_path_factory.mktemp("tiny") / "tiny-mlx"
    return folder, write_tiny_model(source, folder)


@pytest.fixture
def hub(tiny: tuple[Path, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    """A fresh endpoint and an empty hub cache (HF_HOME) for each test."""
    folder, params = tiny
    gguf = tmp_path / "gguf"
    gguf.mkdir()
    (gguf / "tiny.Q4_0.gguf").write_bytes(os.urandom(300_000))
    (gguf / "tiny.Q8_0.gguf").write_bytes(os.urandom(500_000))
    with FakeHub() as fake:
        fake.add_repo(REPO, folder, params=params)
        fake.add_repo(GGUF_REPO, gguf, tags=("gguf",))
        smol = tmp_path / "smol"
        smol.mkdir()
        (smol / GGUF_FILE).symlink_to(embedded_gguf_path())
        fake.add_repo(SMOL_GGUF, smol, tags=("gguf",))
        monkeypatch.setenv("HF_ENDPOINT", fake.url)
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
        monkeypatch.delenv("HF_HUB_CACHE", raising=False)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        yield fake


def weights_size(tiny: tuple[Path, int]) -> int:
    return (tiny[0] / WEIGHTS).stat().st_size


def test_search_gives_sizes_and_whether_they_fit(hub: FakeHub, tiny: tuple[Path, int]) -> None:
    found = search_models("tiny", "mlx", float32=True)
    assert [m.id for m in found] == [REPO]
    assert found[0].size_bytes == tiny[1] * 4 and found[0].memory_bytes == tiny[1] * 4
    assert fits(found[0].memory_bytes, budget_gb=1.0, loaded_gb=0.0).startswith("fits (0.01 GB)")
    assert fits(found[0].memory_bytes, budget_gb=1.0, loaded_gb=0.999).startswith("fits after unloading")
    assert fits(found[0].memory_bytes, budget_gb=0.001, loaded_gb=0.0).startswith("too big")
    assert [m.id for m in search_models("tiny", "gguf", float32=True)] == [GGUF_REPO]
    assert search_models("nothing-like-this", "mlx", float32=True) == []
    assert repo_files(GGUF_REPO, ".gguf") == [("tiny.Q4_0.gguf", 300_000), ("tiny.Q8_0.gguf", 500_000)]


def pull(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "workbench", "pull", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=dict(os.environ))


def test_pull_shows_progress_and_a_second_pull_fetches_nothing(hub: FakeHub, tiny: tuple[Path, int]) -> None:
    first = pull(REPO)
    assert first.returncode == 0, first.stderr
    folder = Path(first.stdout.strip())
    assert (folder / WEIGHTS).read_bytes() == (tiny[0] / WEIGHTS).read_bytes()
    assert "100%" in first.stderr and "16.4M/16.4M" in first.stderr, first.stderr
    assert f"{REPO}: fetched 16.4 MB" in first.stderr
    assert len(hub.gets(WEIGHTS)) == 1
    second = pull(REPO)
    assert second.returncode == 0 and Path(second.stdout.strip()) == folder
    assert "already in the cache, nothing to fetch" in second.stderr
    assert len(hub.gets(WEIGHTS)) == 1  # no byte of the weights fetched again
    # One file of a GGUF repo; a repo that is not there and a malformed id are one-line errors.
    one = pull(GGUF_REPO, "tiny.Q4_0.gguf")
    assert one.returncode == 0 and (Path(one.stdout.strip()) / "tiny.Q4_0.gguf").stat().st_size == 300_000
    missing = pull("test/not-there")
    assert missing.returncode == 1 and "no such repo or file on the hub" in missing.stderr
    assert "Traceback" not in missing.stderr
    bad = pull("../../etc")
    assert bad.returncode == 2 and "is not a hub id" in bad.stderr
    no_mlx = pull(GGUF_REPO)
    assert no_mlx.returncode == 1 and "no MLX weights" in no_mlx.stderr and "tiny.Q4_0.gguf" in no_mlx.stderr


def test_a_cancelled_download_resumes_in_a_new_process(hub: FakeHub, tiny: tuple[Path, int]) -> None:
    size = weights_size(tiny)
    hub.hold_after[WEIGHTS] = size // 2
    download = Downloads().start(REPO)
    assert hub.held.wait(120)
    # The bytes before the hold point arrive in 1 MB pieces: progress shows the last whole one.
    assert wait_until(lambda: download.progress().done_bytes >= (size // 2) // (1 << 20) * (1 << 20), 60)
    partway = download.progress()
    assert partway.state == "downloading" and 0 < partway.fraction < 1
    assert "of 16.4 MB" in partway.describe()
    download.cancel()
    ended = download.wait(60)
    assert ended.state == "cancelled" and "download it again to resume" in ended.describe()
    (partial,) = [c for c in cached_models() if c.repo == REPO]
    assert partial.partial_bytes > 0 and not partial.complete and not partial.mlx
    hub.release()
    # A new manager (as after a restart) picks up the partial file with a Range request.
    again = Downloads().start(REPO).wait(120)
    assert again.state == "done", again.error
    ranges = hub.gets(WEIGHTS)
    assert ranges[0] is None and ranges[1] == f"bytes={partial.partial_bytes}-"
    blob = Path(again.folder or "") / WEIGHTS
    assert (
        hashlib.sha256(blob.read_bytes()).digest()
        == hashlib.sha256((tiny[0] / WEIGHTS).read_bytes()).digest()
    )
    (done,) = [c for c in cached_models() if c.repo == REPO]
    assert done.complete and done.mlx


def test_dropped_connections_are_resumed_then_reported(
    hub: FakeHub, tiny: tuple[Path, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    size = weights_size(tiny)
    hub.drop_after[WEIGHTS], hub.drops = size // 3, 1
    once = Downloads().start(REPO).wait(120)
    assert once.state == "done", once.error  # one drop: resumed within the same download
    first, resumed = hub.gets(WEIGHTS)
    assert first is None and resumed is not None and resumed.startswith("bytes=")
    assert (Path(once.folder or "") / WEIGHTS).read_bytes() == (tiny[0] / WEIGHTS).read_bytes()
    # Every response dropped before a whole piece arrives: the download fails, saying why.
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-again"))
    hub.requests.clear()
    hub.drop_after[WEIGHTS], hub.drops = 100_000, 99
    failed = Downloads().start(REPO).wait(120)
    assert failed.state == "failed" and failed.error, failed
    assert "failed at" in failed.describe() and "Traceback" not in failed.error
    assert len(hub.gets(WEIGHTS)) == 5  # the tries per file, each resuming


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MB tmpfs, the hub cache's disk (mount needs root, as the test machines run)."""
    where = tmp_path / "small"
    where.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(where)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {made.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_a_full_disk_is_a_clear_failure(
    hub: FakeHub, small_disk: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(small_disk / "hub"))
    refused = Downloads().start(REPO).wait(120)  # the sizes say it cannot fit: refused up front
    assert refused.state == "failed" and refused.error is not None
    assert refused.error.startswith("disk full: needs 16.4 MB more but"), refused.error
    assert hub.gets(WEIGHTS) == []
    hub.lie_sizes = True  # the sizes say it fits: the disk fills during the download
    filled = Downloads().start(REPO).wait(120)
    assert filled.state == "failed" and filled.error is not None
    assert filled.error.startswith("disk full"), filled.error


def test_a_downloaded_model_is_registered_answers_and_is_deleted(
    hub: FakeHub, tmp_path: Path, settings: Settings
) -> None:
    with Engine(settings.with_(models_dir=tmp_path / "models")) as engine:
        assert REPO not in [m.id for m in engine.models()]
        progress = engine.downloads.start(REPO).wait(120)
        assert progress.state == "done", progress.error
        assert wait_until(lambda: REPO in [m.id for m in engine.models()], 60)
        info = engine.model_info(REPO)
        assert info.source == "hub" and "in the Hugging Face cache" in info.description
        reply = engine.generate(GenerationRequest(prompt="Hello", model=REPO, max_tokens=5, ignore_eos=True))
        assert reply.stats.generation_tokens == 5 and reply.stats.model == REPO
        with pytest.raises(ModelBusyError, match="unload it first"):
            engine.delete_cached(REPO)
        engine.unload(REPO)
        assert engine.delete_cached(REPO) is True
        assert REPO not in [m.id for m in engine.models()]
        assert [c for c in cached_models() if c.repo == REPO] == []
        # One GGUF file of a GGUF repo: registered as a GGUF model, converted on first use.
        gguf = engine.downloads.start(SMOL_GGUF, [GGUF_FILE]).wait(300)
        assert gguf.state == "done", gguf.error
        stem = GGUF_FILE.removesuffix(".gguf")
        assert wait_until(lambda: stem in [m.id for m in engine.models()], 60)
        assert engine.model_info(stem).source == "gguf"
        reply = engine.generate(GenerationRequest(prompt="Hello", model=stem, max_tokens=3, ignore_eos=True))
        assert reply.stats.generation_tokens == 3
