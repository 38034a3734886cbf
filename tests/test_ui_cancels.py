"""Stop in the browser tabs: SessionCancels reaches running replies and queued ones."""

from __future__ import annotations

from workbench.ui.common import SessionCancels


def test_stop_cancels_the_running_reply_and_those_posted_before_it_not_yet_started() -> None:
    cancels = SessionCancels()
    first, second = cancels.ticket(), cancels.ticket()
    with cancels.track("page", ticket=first) as (running,):
        assert not running.cancelled
        # Stop with the last posted ticket: the running reply and the queued one.
        assert cancels.cancel("page", upto=second) == 1
        assert running.cancelled
    with cancels.track("page", ticket=second) as (queued,):
        assert queued.cancelled  # it starts already stopped: the engine does no work for it
    later = cancels.ticket()  # posted after the Stop: it runs
    with cancels.track("page", ticket=later) as (fresh,):
        assert not fresh.cancelled
    # Another page's replies, and callers without tickets, are not touched.
    with cancels.track("other", ticket=first) as (theirs,), cancels.track("page") as (untracked,):
        assert not theirs.cancelled and not untracked.cancelled
    assert cancels.cancel("page") == 0  # nothing runs any more
