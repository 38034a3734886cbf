"""Every float32 bit pattern (2**32 gates) through the engine's fused (lean) SwiGLU and mlx-lm's swiglu;
prints the patterns whose bits differ (NaN counts equal to NaN) and exits 1 if any do.

    python scripts/check_lean_swiglu.py      # ~5-10 min on 2 CPU cores
"""

from __future__ import annotations

import sys
import time

import mlx.core as mx
import numpy as np

from workbench.engine.models.lean_swiglu import fused_swiglu, mlx_swiglu

CHUNK = 1 << 24


def main() -> int:
    t0, bad = time.time(), 0
    for k in range((1 << 32) // CHUNK):
        gate = mx.arange(k * CHUNK, (k + 1) * CHUNK, dtype=mx.uint32).view(mx.float32)
        x = mx.full(gate.shape, 1.5, mx.float32)
        a, b = fused_swiglu(gate, x), mlx_swiglu(gate, x)
        diff = (a.view(mx.int32) != b.view(mx.int32)) & ~(mx.isnan(a) & mx.isnan(b))
        n = int(diff.sum().item())
        if n:
            first = [hex(k * CHUNK + int(i)) for i in np.nonzero(np.array(diff))[0][:3]]
            print(f"chunk {k}: {n} differ, e.g. {first}", flush=True)
        bad += n
    print(f"{bad} of {1 << 32} float32 gates differ ({time.time() - t0:.0f} s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
