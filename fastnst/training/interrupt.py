"""Ctrl-C / SIGTERM during training: a request to stop at the next step boundary, not a crash; and, for
commands that stop at once (stylize), SIGTERM turned into the Ctrl-C they already clean up after."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator
from typing import Any

log = logging.getLogger("fastnst.train")


class InterruptFlag:
    """Turns the first Ctrl-C / SIGTERM into a request to stop after the current step.

    Stopping at a step boundary keeps the saved checkpoint consistent (never a half-applied update).
    A second Ctrl-C aborts at once. Only the main thread can install signal handlers; elsewhere this
    is a no-op and a KeyboardInterrupt simply propagates.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        log.warning("stop requested: finishing this step and saving a checkpoint (Ctrl-C again to abort at once)")

    def __enter__(self) -> "InterruptFlag":
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """While the block runs, SIGTERM (kill, timeout, docker stop, Slurm) raises KeyboardInterrupt in
    the main thread, so whatever cleans up after a Ctrl-C (temporary files removed, recordings
    finalised) runs for it too. Only the main thread can install signal handlers; elsewhere a no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _handle(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _handle)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)

