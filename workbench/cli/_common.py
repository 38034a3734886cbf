"""What the verbs share: the progress bar, choosing a run in a results file, and the one way a
long run is cancelled: Ctrl-C and SIGTERM alike cancel it, the lab marks it stopped, exit 130."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from workbench.engine import CancelToken
from workbench.runs import ProgressFn

if TYPE_CHECKING:
    import pandas as pd

T = TypeVar("T")
INTERRUPTED = 130  # the exit status of a command stopped by Ctrl-C or SIGTERM (128 + SIGINT)


def progress_bar(desc: str, unit: str, disable: bool = False, scale: bool = False) -> tuple[Any, ProgressFn]:
    """A tqdm bar on stderr and the (done, total, what) callback that moves it (the
    runners' on_progress); `scale`: show k/M/G multiples (bytes). Close the bar at the end."""
    from tqdm import tqdm

    bar = tqdm(unit=unit, desc=desc, file=sys.stderr, disable=disable, unit_scale=scale, unit_divisor=1000)

    def progress(done: int, total: int, what: str) -> None:
        bar.total = total
        bar.n = done
        bar.set_postfix_str(what[-60:], refresh=False)
        bar.refresh()

    return bar, progress


def select_run(df: pd.DataFrame, run: str) -> pd.DataFrame:
    """The rows of run `run` ('latest': the file's last run; 'all': every row)."""
    if df.empty:
        raise ValueError("the results file has no rows")
    if run == "all":
        return df
    run_id = str(df["run_id"].iloc[-1]) if run == "latest" else run
    chosen = df[df["run_id"] == run_id]
    if chosen.empty:
        known = ", ".join(dict.fromkeys(df["run_id"].astype(str)))
        raise ValueError(f"no run {run_id!r} in the file (runs: {known})")
    return chosen


def sigterm_as_ctrl_c() -> None:
    """Make SIGTERM raise KeyboardInterrupt in the main thread, as Ctrl-C does, so both stop
    a command the same way (completed rows stay; sidecars say "stopped")."""
    signal.signal(signal.SIGTERM, _interrupt)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run_cancellable(
    work: Callable[[CancelToken, ProgressFn], T],
    *,
    desc: str,
    unit: str,
    no_progress: bool,
    interrupted: str,
    scale: bool = False,
) -> T | None:
    """Run a lab: `work(cancel, on_progress)` with a progress bar of `unit`s. Ctrl-C or
    SIGTERM cancels it (the lab has marked its run stopped by then); prints "interrupted:
    <interrupted>" and returns None, and the command exits INTERRUPTED."""
    bar, progress = progress_bar(desc, unit, no_progress, scale)
    cancel = CancelToken()
    try:
        result = work(cancel, progress)
    except KeyboardInterrupt:
        cancel.cancel()
        bar.close()
        print(f"\ninterrupted: {interrupted}", file=sys.stderr)
        return None
    bar.close()
    return result
