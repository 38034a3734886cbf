"""A follower rank's engine (`python -m workbench.cli.follower`, run by `workbench serve` under
mlx.launch): it joins the group and runs rank 0's rounds until rank 0 stops or is gone."""

from __future__ import annotations

import logging
import os
import signal
import sys


def main() -> int:
    """Follow rank 0; the settings come from the WORKBENCH_* variables rank 0 was given too."""
    from workbench import Engine, Settings

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)  # rank 0 stops the group
    rank = os.environ.get("MLX_RANK", "?")
    level = os.environ.get("WORKBENCH_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(level=level, format=f"%(levelname)s rank {rank} %(name)s: %(message)s")
    engine = Engine(Settings.from_env())
    if engine.ranks is None:
        print("workbench.cli.follower: not started as a rank of a group (mlx.launch)", file=sys.stderr)
        engine.stop()
        return 2
    engine.follow()
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # a thread left in a collective by a lost rank must not hold the exit
