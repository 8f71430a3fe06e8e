"""Consecutive video frames through the network at the same time, each on its share of the CPU threads.

On a small CPU one frame of a few hundred thousand pixels does not keep two threads busy: every layer
ends at a barrier where one thread waits for the other, and oneDNN reaches a lower rate on small maps
than on large ones. Two frames at once, one thread each, keep both cores working. Measured on 2 cores of
an AMD EPYC Zen 4 (int8, 640x360, the network alone, 2026-12-07): 41-43 ms a frame one after another on
two threads, 31-37 ms two at a time on one thread each.

Only the network's pass runs in these workers; it needs no earlier frame (FrameStylizer.independent). The
temporal step, which does, takes the frames in order in one more thread (fastnst.video.pipeline).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import torch

__all__ = ["FrameWorkers", "choose_workers"]


def choose_workers(device: torch.device, independent: bool, frame_pixels: int, pixel_budget: int,
                   threads: int | None = None) -> int:
    """How many frames to run at once: two on a CPU with two or more threads when the frames are
    independent and two of them fit the memory budget; otherwise one (a GPU runs one frame at a time
    faster than two)."""
    threads = torch.get_num_threads() if threads is None else threads
    if device.type != "cpu" or not independent or threads < 2 or 2 * frame_pixels > pixel_budget:
        return 1
    return 2


class FrameWorkers:
    """``workers`` threads that each run ``fn`` on whole frames with ``threads // workers`` intra-op
    threads (default: this thread's count). ``submit(frame)`` returns a Future; with more than one worker
    results come back in any order, the caller keeps its own (one worker takes them in turn). Use as a
    context manager (or call ``close``)."""

    def __init__(self, fn: Callable[[Any], Any], workers: int, threads: int | None = None) -> None:
        own = torch.get_num_threads()
        threads = own if threads is None else threads
        self.workers = workers
        self.threads_each = max(1, threads // workers)
        self._fn = fn
        ready = threading.Barrier(workers + 1)
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="fastnst-network",
                                        initializer=self._init_thread, initargs=(ready,))
        for _ in range(workers):  # the pool starts a thread per submit while it has fewer than `workers`
            self._pool.submit(lambda: None)
        ready.wait()
        # torch.set_num_threads sets the calling thread's OpenMP team size, and also the default a thread
        # created later starts from: that default is put back here, so the process keeps its setting.
        torch.set_num_threads(own)

    def _init_thread(self, ready: threading.Barrier) -> None:
        torch.get_num_threads()  # PyTorch sets up a thread's OpenMP on first use: before, so it cannot undo this
        torch.set_num_threads(self.threads_each)
        ready.wait()

    def _run(self, frame: Any) -> Any:
        with torch.inference_mode():
            return self._fn(frame)

    def submit(self, frame: Any) -> Future:
        return self._pool.submit(self._run, frame)

    def close(self) -> None:
        """Stop taking frames; frames not yet started are dropped, running ones finish."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> FrameWorkers:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
