"""Every float32 bit pattern (2**32 gates) through the engine's fused (lean) SwiGLU and mlx-lm's
swiglu; prints the chunks whose bits differ (NaN counts equal to NaN) and exits 1 if any do.

    python scripts/check_lean_swiglu.py      # ~5 min on 2 CPU cores
"""

from __future__ import annotations

import sys
import time

from workbench.engine.models.lean_swiglu import check_every_gate


def main() -> int:
    t0 = time.time()
    bad = check_every_gate(lambda line: print(line, flush=True))
    print(f"{bad} of {1 << 32} float32 gates differ ({time.time() - t0:.0f} s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
