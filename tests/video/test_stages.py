"""The video stages' shutdown: every worker is joined before the caller touches the writer again."""

from __future__ import annotations

import threading
import time

import pytest

from fastnst.video import stages


def _worker_interrupted_while_joined() -> tuple[stages.Stage, list[bool]]:
    """A running stage whose first join() is cut by a Ctrl-C (as a second Ctrl-C during shutdown would)."""
    release, ended = threading.Event(), []

    def work() -> None:
        release.wait(10)
        ended.append(True)

    worker = stages.Stage("fastnst-test", work, threading.Event())
    worker.start()
    real_join, calls = worker.join, []

    def join(timeout=None):
        calls.append(timeout)
        if len(calls) == 1:
            release.set()
            raise KeyboardInterrupt
        real_join(timeout)

    worker.join = join
    return worker, ended


def test_join_all_waits_for_the_stage_and_raises_the_interrupt_after():
    worker, ended = _worker_interrupted_while_joined()
    with pytest.raises(KeyboardInterrupt):
        stages.join_all([worker])
    assert ended == [True] and not worker.is_alive()


def test_join_all_can_swallow_the_interrupt():
    worker, ended = _worker_interrupted_while_joined()
    stages.join_all([worker], reraise_interrupt=False)
    assert ended == [True] and not worker.is_alive()


def test_a_start_cut_short_by_ctrl_c_is_still_joined_and_one_never_started_is_skipped(monkeypatch):
    """A Ctrl-C inside Thread.start() reaches the caller while the new thread is still starting."""
    release, ended = threading.Event(), []

    def work() -> None:
        release.wait(10)
        ended.append(True)

    started = stages.Stage("fastnst-test", work, threading.Event())
    never = stages.Stage("fastnst-never", work, threading.Event())
    real_start = threading.Thread.start

    def start_then_interrupt(self):
        real_start(self)
        raise KeyboardInterrupt

    monkeypatch.setattr(threading.Thread, "start", start_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        started.start()
    assert started.launched and not never.launched
    release.set()
    stages.join_all([started, never])
    assert ended == [True] and not started.is_alive()


def test_a_start_cut_short_before_the_thread_was_created_does_not_hang_join_all(monkeypatch):
    """A Ctrl-C before Thread.start() created the thread: it never runs, and join() keeps refusing it."""
    worker = stages.Stage("fastnst-never-created", lambda: None, threading.Event())

    def interrupt_before_creating(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(threading.Thread, "start", interrupt_before_creating)
    with pytest.raises(KeyboardInterrupt):
        worker.start()
    assert worker.launched and not worker.is_alive()
    t0 = time.monotonic()
    stages.join_all([worker])  # no timeout: must still return
    assert time.monotonic() - t0 < stages.STARTING_GRACE_S + 1.0
