"""The metric window of a training run: loss terms averaged since the last log line, and throughput.

After torchvision's ``MetricLogger``: the loop ``update``s it after every step; a log line reads the
window's means and its exact images/s, then ``reset``s it. A smoothed per-step rate feeds progress bars.
"""

from __future__ import annotations

import time
from collections.abc import Mapping


class MetricWindow:
    def __init__(self, smoothing: float = 0.9) -> None:
        self.smoothing = smoothing
        self.smoothed_rate = 0.0  # images/s, exponential moving average over steps
        self.restart()

    def restart(self) -> None:
        """Start timing now (call when the loop starts, so setup time does not count)."""
        self.last_step_end = time.perf_counter()
        self.reset()

    def reset(self) -> None:
        """Empty the window (after a log line)."""
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}  # steps that had each term (the warm-up and perceptual phases differ)
        self.images = 0
        self.start = time.perf_counter()

    def update(self, values: Mapping[str, float], images: int) -> None:
        """Add one step's loss terms and the images it processed (all processes together)."""
        for name, value in values.items():
            self.sums[name] = self.sums.get(name, 0.0) + value
            self.counts[name] = self.counts.get(name, 0) + 1
        self.images += images
        now = time.perf_counter()
        step_rate = images / max(now - self.last_step_end, 1e-9)
        self.last_step_end = now
        s = self.smoothing
        self.smoothed_rate = step_rate if self.smoothed_rate == 0.0 else s * self.smoothed_rate + (1 - s) * step_rate

    def means(self) -> dict[str, float]:
        return {name: total / self.counts[name] for name, total in self.sums.items()}

    def rate(self) -> float:
        """Images per second since the window started (exact, not smoothed)."""
        return self.images / max(time.perf_counter() - self.start, 1e-9)
