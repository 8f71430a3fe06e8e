"""Worker threads joined by queues, for the video file pipeline and the camera loop.

Every stage polls one stop event: an exception in any stage is kept for the caller's thread and sets
it, so a failure anywhere ends the whole pipeline instead of leaving a thread blocked on a full or an
empty queue.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable

QUEUE_DEPTH = 4  # frames in flight between stages: enough to absorb jitter, little memory

# A thread that was created reports itself started within microseconds; one whose start() a Ctrl-C cut
# short before it was created never will, and join() keeps refusing it. join_all waits this long for it.
STARTING_GRACE_S = 1.0

END = object()  # put after a stream's last item; get() also returns it once the pipeline stops


class Stage(threading.Thread):
    """A worker thread; an exception in it is kept for the caller and stops the whole pipeline."""

    def __init__(self, name: str, target: Callable[[], None], stop: threading.Event) -> None:
        super().__init__(name=name, daemon=True)
        self._target_fn, self._stop_event = target, stop
        self.error: BaseException | None = None
        self.launched = False

    def start(self) -> None:
        # Marked first: a Ctrl-C that cuts Thread.start() short can leave the thread starting anyway,
        # and join_all must then wait for it rather than let the caller close what it uses.
        self.launched = True
        super().start()

    def run(self) -> None:
        try:
            self._target_fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            self.error = exc
            self._stop_event.set()


def put(q: queue.Queue, item, stop: threading.Event) -> bool:
    """Put unless the pipeline stops (then False): a full queue never blocks a failed pipeline."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def get(q: queue.Queue, stop: threading.Event):
    """The next item, or END once the pipeline stops and the queue is empty."""
    while True:
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            if stop.is_set():
                return END


def join_all(workers: list[Stage], reraise_interrupt: bool = True, timeout: float | None = None) -> None:
    """Wait for every worker that was started to end, through any Ctrl-C meanwhile: the caller aborts or
    closes the writer next, which must not happen while the encode stage still writes into it. The stages
    see the stop event within 0.1 s, so this is short. A Ctrl-C that came in is raised again once all have ended,
    unless ``reraise_interrupt`` is false (the camera, where Ctrl-C is already the way to stop).
    ``timeout`` (seconds, for all together) gives up on a worker stuck in a call that never returns."""
    interrupted = False
    deadline = None if timeout is None else time.monotonic() + timeout
    for worker in workers:
        starting_until = time.monotonic() + STARTING_GRACE_S
        while worker.launched:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                worker.join(left)
                break
            except KeyboardInterrupt:
                interrupted = True
            except RuntimeError:  # launched by a start() a Ctrl-C cut short: still starting, or never created
                if left == 0.0 or time.monotonic() >= starting_until:
                    break
                time.sleep(0.001)
    if interrupted and reraise_interrupt:
        raise KeyboardInterrupt


def raise_error(workers: list[Stage]) -> None:
    """Raise the first error a worker kept, in the caller's thread (after join_all)."""
    for worker in workers:
        if worker.error is not None:
            raise worker.error


class Newest(queue.Queue):
    """A queue that holds only the newest item, for a live source the consumer may fall behind.

    A put never blocks: it replaces the item not yet taken, and ``dropped`` counts the replaced ones.
    END waits behind the last item instead of replacing it, so the final frame is not lost.
    """

    def __init__(self) -> None:
        super().__init__()
        self.dropped = 0

    def _put(self, item) -> None:  # Queue.put calls this holding the queue's lock
        if item is not END:
            self.dropped += len(self.queue)
            self.queue.clear()
        self.queue.append(item)
