"""Ctrl-C / SIGTERM during training: a request to stop at the next step boundary, not a crash."""

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
def sigterm_as_ctrl_c() -> Iterator[None]:
    """SIGTERM (a service stopping, ``kill``, a CI timeout) raised as KeyboardInterrupt, as Ctrl-C is:
    the command stops with its message and exit status, and its cleanup runs (outputs being saved are
    finished, temporary files and a new run's stub directory removed) instead of the process vanishing
    mid-write. For the command lines; the previous handler is put back afterwards. A no-op outside the
    main thread, where handlers cannot be installed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
