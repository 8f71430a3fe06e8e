"""Ctrl-C / SIGTERM during training: a request to stop at the next step boundary, not a crash."""

from __future__ import annotations

import logging
import signal
import threading
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
