"""OpenMP's waiting policy for the command lines and benchmarks: an explicit, process-wide opt-in.

PyTorch's CPU kernels run in OpenMP parallel regions; at the end of each, libgomp's threads spin
(by default ~300,000 iterations, up to ~0.1-1 ms) waiting for the slowest one. On a CPU shared with
other busy programs one of our threads is often descheduled, and the others then burn their time
slices spinning for it: with two other busy threads on a 2-core CPU, a 1024x1024 stylize took ~2x
longer than with a short spin (scripts/bench_stylize.py --load). A short spin (GOMP_SPINCOUNT=1000)
then sleeping in the kernel keeps quiet-machine speed while yielding the CPU under load.

libgomp reads this once, when torch loads, so it must be set before ``import torch``: the
``python -m fastnst.<command>`` shims call it first. Never done by a library call; a user's own
OMP_WAIT_POLICY / GOMP_SPINCOUNT always wins. Builds with Intel's OpenMP read KMP_BLOCKTIME instead
(not set here: unmeasured).
"""

from __future__ import annotations

import os
import sys

SPIN_COUNT = "1000"


def prefer_short_spin() -> bool:
    """Set GOMP_SPINCOUNT for this process unless the user set a policy or torch is already loaded
    (then it could no longer take effect). Returns whether it was set."""
    if "torch" in sys.modules or "OMP_WAIT_POLICY" in os.environ or "GOMP_SPINCOUNT" in os.environ:
        return False
    os.environ["GOMP_SPINCOUNT"] = SPIN_COUNT
    return True
