"""OpenBLAS's thread count per batch step (engine/decode_threads.py): the tuner keeps, per batch
size, the count whose steps measured faster, gives prompt work every thread and frees them when the
batch empties; on the real engine the count switches mid-reply and no token changes."""

from __future__ import annotations

import pytest

from workbench.config import Settings
from workbench.engine import Engine, GenerationRequest, Message, blas
from workbench.engine.decode_threads import HOLD, SAMPLES, SKIP, DecodeThreads
from workbench.engine.models.embedded import EMBEDDED_IDS


class Counts:
    """Stands in for OpenBLAS's two C functions (the ctypes boundary): records each count set."""

    def __init__(self, start: int) -> None:
        self.now, self.calls = start, []

    def get(self) -> int:
        return self.now

    def put(self, n: int) -> None:
        self.now = n
        self.calls.append(n)


def decode(tuner: DecodeThreads, counts: Counts, batch: int, step_s: dict[int, float], steps: int) -> None:
    for _ in range(steps):
        tuner.before("m", batch, prompt_work=False)
        tuner.after(step_s[counts.now])


def test_tuner_keeps_the_faster_count_per_batch_size() -> None:
    counts = Counts(4)
    tuner = DecodeThreads((counts.get, counts.put), "auto")
    assert tuner.counts == (4, 2, 1)
    trial = len(tuner.counts) * (SKIP + SAMPLES) + 1
    decode(tuner, counts, 8, {4: 0.10, 2: 0.09, 1: 0.08}, trial)
    decode(tuner, counts, 1, {4: 0.05, 2: 0.06, 1: 0.07}, trial)
    assert tuner.picks() == {"m@8": 1, "m@1": 4}
    tuner.before("m", 8, prompt_work=False)
    assert counts.now == 1
    tuner.before("m", 8, prompt_work=True)  # a prompt chunk in the step: every thread
    assert counts.now == 4
    tuner.before("m", 8, prompt_work=False)
    tuner.rest()
    assert counts.now == 4
    # Batch sizes above 8 share power-of-two buckets; a pick is measured again after HOLD steps.
    decode(tuner, counts, 12, {4: 0.2, 2: 0.1, 1: 0.3}, trial)
    assert tuner.picks()["m@16"] == 2
    decode(tuner, counts, 16, {4: 0.1, 2: 0.2, 1: 0.3}, HOLD + trial)
    assert tuner.picks()["m@16"] == 4
    decode(tuner, counts, 2, {4: 0.100, 2: 0.097, 1: 0.098}, trial)  # within MARGIN: all threads
    assert tuner.picks()["m@2"] == 4


def test_fixed_counts_and_no_openblas() -> None:
    counts = Counts(2)
    fixed = DecodeThreads((counts.get, counts.put), "1")
    fixed.before("m", 3, prompt_work=False)
    assert counts.now == 1
    fixed.before("m", 3, prompt_work=True)
    assert counts.now == 2
    assert DecodeThreads((counts.get, counts.put), "8").fixed == 2  # never above what OpenBLAS has
    off = DecodeThreads(None, "auto")  # Accelerate, the bundled BLAS, a GPU: nothing to set
    assert not off.active
    off.before("m", 8, prompt_work=False)
    off.after(0.1)
    assert off.picks() == {}


def test_settings_reject_a_bad_count() -> None:
    assert Settings.from_env({"WORKBENCH_DECODE_THREADS": "ALL"}).decode_threads == "all"
    with pytest.raises(ValueError, match="auto, all, or a thread count"):
        Settings.from_env({"WORKBENCH_DECODE_THREADS": "0"})


def test_openblas_count_can_be_read_and_set() -> None:
    control = blas.thread_control()
    if control is None:
        pytest.skip(f"no OpenBLAS in this process ({blas.blas_in_use()})")
    get, put = control
    start = get()
    try:
        put(1)
        assert get() == 1
    finally:
        put(start)
    assert get() == start


def test_switching_counts_mid_reply_changes_no_token(settings: Settings) -> None:
    """A fresh engine measures both counts while a batch of 4 and a lone reply decode (each
    pick comes after SKIP + SAMPLES steps per count), and both match a fixed count's tokens."""
    steps = 3 * (SKIP + SAMPLES) + 8
    asks = [
        GenerationRequest(
            messages=(Message("user", f"Count from {i} to {i + 40}, one number per line."),),
            model=EMBEDDED_IDS["f32"],
            max_tokens=steps,
            ignore_eos=True,
            cache=False,
        )
        for i in range(4)
    ]
    with Engine(settings.with_(decode_threads="auto")) as tuned:
        if not tuned.threads.active:
            pytest.skip("no OpenBLAS with more than one thread: nothing to switch")
        together = [c.token_ids for c in tuned.generate_many(asks)]
        alone = tuned.generate(asks[0]).token_ids
        picks = tuned.threads.picks()
    assert any(k.endswith("@4") for k in picks) and any(k.endswith("@1") for k in picks), picks
    with Engine(settings.with_(decode_threads="all")) as fixed:
        assert [c.token_ids for c in fixed.generate_many(asks)] == together
        assert fixed.generate(asks[0]).token_ids == alone
    assert together[0] == alone
