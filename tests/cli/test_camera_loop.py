"""The camera loop's threads with a stand-in camera whose frames the test hands over one by one."""

from __future__ import annotations

import queue
import threading
import time

import numpy as np
import pytest

from fastnst.cli import video as video_cli
from fastnst.video import stages

SIZE = (4, 2)  # (width, height) of the stand-in frames: no resizing, no OpenCV needed


def frame(value: int) -> np.ndarray:
    return np.full((SIZE[1], SIZE[0], 3), value % 256, np.uint8)


class EndlessCapture:
    """A camera that always has a next frame, 1, 2, 3, ... (read number ``fail_at`` raises instead)."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.value, self.fail_at = 0, fail_at
        self.threads: set[str] = set()

    def read(self):
        self.threads.add(threading.current_thread().name)
        if self.value + 1 == self.fail_at:
            raise RuntimeError("camera unplugged")
        self.value += 1
        return True, frame(self.value)

    def clock(self) -> int:
        return self.value * 40  # ms: frame n was captured at 40 n ms

    def release(self) -> None:
        self.released_by = threading.current_thread().name


class HandFedCapture(EndlessCapture):
    """read() reports each call on ``reads`` and returns the next frame the test puts on ``feed``
    (None: the stream ends)."""

    def __init__(self) -> None:
        super().__init__()
        self.feed: queue.Queue = queue.Queue()
        self.reads: queue.Queue = queue.Queue()

    def read(self):
        self.threads.add(threading.current_thread().name)
        self.reads.put(None)
        value = self.feed.get(timeout=30)
        if value is None:
            return False, None
        self.value = value
        return True, frame(value)

    def hand_over(self, value: int) -> None:
        """Give the capture thread one frame and wait until it has queued it (it is reading the next)."""
        self.feed.put(value)
        self.reads.get(timeout=30)


class FakeWriter:
    def __init__(self, fail_at: int | None = None) -> None:
        self.written: list[tuple[int, int]] = []  # (frame value, pts in ms)
        self.threads: set[str] = set()
        self.fail_at = fail_at

    def write(self, rgb, pts=None, time_base=None) -> None:
        self.threads.add(threading.current_thread().name)
        if len(self.written) + 1 == self.fail_at:
            raise OSError("disk full")
        assert time_base == video_cli.MS
        self.written.append((int(rgb[0, 0, 0]), pts))


def camera_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name in ("fastnst-capture", "fastnst-encode")]


def run_loop(capture: EndlessCapture, stylize, writer, live: bool):
    return video_cli._camera_loop(None, capture, capture.clock, (frame(0), 0), live, stylize, SIZE, writer, None)


@pytest.mark.parametrize("live, stylized, dropped", [(True, [0, 3], 2), (False, [0, 1, 2, 3], 0)], ids=["live", "file"])
def test_live_source_keeps_the_newest_frame_and_counts_the_dropped_ones(live, stylized, dropped):
    capture, writer, seen = HandFedCapture(), FakeWriter(), []

    def stylize(rgb: np.ndarray) -> np.ndarray:
        seen.append(int(rgb[0, 0, 0]))
        if len(seen) == 1:  # the camera delivers three frames while the network works on the first
            capture.reads.get(timeout=30)  # the capture thread is waiting for its first read
            for value in (1, 2, 3):
                capture.hand_over(value)
        elif seen[-1] == 3:
            capture.feed.put(None)  # the stream ends
        return rgb

    assert run_loop(capture, stylize, writer, live) == (len(stylized), dropped)
    assert seen == stylized
    assert writer.written == [(v, v * 40) for v in stylized]  # the capture's times, not the stylizing's
    assert capture.threads == {"fastnst-capture"} and writer.threads == {"fastnst-encode"}
    assert camera_threads() == []


def test_newest_keeps_the_last_frame_before_the_end():
    q = stages.Newest()
    for item in ("a", "b", "c", stages.END):
        q.put(item)
    assert [q.get_nowait(), q.get_nowait()] == ["c", stages.END]
    assert q.dropped == 2


def test_a_writer_error_in_the_encode_thread_ends_the_loop():
    capture, writer = EndlessCapture(), FakeWriter(fail_at=2)
    with pytest.raises(OSError, match="disk full"):
        run_loop(capture, lambda rgb: rgb, writer, live=False)
    assert writer.written == [(0, 0)]
    assert camera_threads() == []


def test_a_capture_error_ends_the_loop():
    with pytest.raises(RuntimeError, match="camera unplugged"):
        run_loop(EndlessCapture(fail_at=2), lambda rgb: rgb, FakeWriter(), live=True)
    assert camera_threads() == []


def test_ctrl_c_ends_the_loop_with_the_frames_so_far_written():
    capture, writer, seen = EndlessCapture(), FakeWriter(), []

    def stylize(rgb: np.ndarray) -> np.ndarray:
        seen.append(int(rgb[0, 0, 0]))
        if len(seen) == 3:
            raise KeyboardInterrupt
        return rgb

    assert run_loop(capture, stylize, writer, live=False) == (2, 0)
    assert writer.written == [(0, 0), (1, 40)]
    assert camera_threads() == []


def test_a_stalled_stream_does_not_hold_up_the_end_and_the_recording_is_kept(monkeypatch):
    monkeypatch.setattr(video_cli, "CAPTURE_GRACE_S", 0.2)
    capture, writer, seen = HandFedCapture(), FakeWriter(), []

    def stylize(rgb: np.ndarray) -> np.ndarray:
        seen.append(int(rgb[0, 0, 0]))
        if len(seen) == 2:  # the stream has stalled: the capture thread hangs in read()
            raise KeyboardInterrupt
        capture.reads.get(timeout=30)
        capture.hand_over(1)
        return rgb

    started = time.perf_counter()
    assert run_loop(capture, stylize, writer, live=True) == (1, 0)
    assert time.perf_counter() - started < 10  # not the read's own 30 s timeout
    assert writer.written == [(0, 0)] and camera_threads() == ["fastnst-capture"]
    assert not hasattr(capture, "released_by")  # never released under a read in progress
    capture.feed.put(None)  # the read returns at last: the capture thread releases the camera and ends
    for thread in threading.enumerate():
        if thread.name == "fastnst-capture":
            thread.join(timeout=30)
    assert capture.released_by == "fastnst-capture" and camera_threads() == []
