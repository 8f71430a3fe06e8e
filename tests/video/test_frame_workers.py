"""Frames through the network at once: the same frames, in order, as one at a time; the process keeps its
thread setting; an interrupt leaves no worker and no file."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from fastnst.infer.stylizer import Stylizer
from fastnst.video.frame_workers import FrameWorkers, choose_workers
from fastnst.video.frames import frame_to_tensor
from fastnst.video.temporal import FrameStylizer, Stabilization
from tests.support import random_style_net

pytest.importorskip("av")

from fastnst.video.pipeline import stylize_video  # noqa: E402
from tests.clips import moving_square_frames, read_all, write_clip  # noqa: E402


@pytest.fixture(scope="module")
def stylizer() -> Stylizer:
    return Stylizer(random_style_net(base_channels=8, blocks=1), device="cpu", precision="fp32")


@pytest.fixture()
def two_threads():
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)


def network_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("fastnst-network")]


def test_network_pass_then_finish_equals_stylizing_in_order(stylizer):
    frames = [frame_to_tensor(f) for f in moving_square_frames(4, 64, 48)]
    whole, split = FrameStylizer(stylizer), FrameStylizer(stylizer)
    outputs = [split.network_pass(x) for x in frames]  # all passes first, as workers may run them
    for x, y in zip(frames, outputs):
        torch.testing.assert_close(split.finish(x, y), whole.stylize_tensor(x))
    assert split.frames == whole.frames == 4


def test_smoothed_statistics_need_the_frames_in_order(stylizer):
    stream = FrameStylizer(stylizer, stabilization=Stabilization(stats_momentum=0.5))
    assert not stream.independent
    with pytest.raises(RuntimeError, match="in order"):
        stream.network_pass(frame_to_tensor(moving_square_frames(1, 64, 48)[0]))


def test_workers_give_each_frame_its_own_result_and_leave_the_thread_setting_as_it_was(two_threads):
    seen_threads = []

    def fn(x: torch.Tensor) -> torch.Tensor:
        seen_threads.append(torch.get_num_threads())
        return x * 2

    inputs = [torch.full((1, 3, 4, 4), float(i)) for i in range(6)]
    with FrameWorkers(fn, workers=2) as workers:
        futures = [workers.submit(x) for x in inputs]
        results = [f.result() for f in futures]
    for x, y in zip(inputs, results):
        torch.testing.assert_close(y, x * 2)
    assert set(seen_threads) == {1}  # each worker on its share of the two threads
    later = []
    t = threading.Thread(target=lambda: later.append(torch.get_num_threads()))
    t.start()
    t.join()
    assert torch.get_num_threads() == 2 and later == [2]  # this thread, and threads made later, unchanged
    assert network_threads() == []


@pytest.mark.parametrize(
    "device, independent, pixels, threads, expected",
    [("cpu", True, 700, 2, 2), ("cpu", True, 700, 1, 1), ("cpu", False, 700, 2, 1), ("cpu", True, 1000, 2, 1),
     ("cuda", True, 700, 2, 1)],
)
def test_two_frames_at_once_only_on_a_cpu_with_threads_memory_and_independent_frames(device, independent, pixels,
                                                                                    threads, expected):
    assert choose_workers(torch.device(device), independent, pixels, pixel_budget=1500, threads=threads) == expected


def test_a_video_through_two_workers_matches_one_frame_at_a_time(stylizer, tmp_path, two_threads):
    src = write_clip(tmp_path / "clip.mp4", moving_square_frames(7, 64, 48), fps=12)
    one = stylize_video(stylizer, src, tmp_path / "one.mp4", frame_workers=1)
    two = stylize_video(stylizer, src, tmp_path / "two.mp4", frame_workers=2)
    assert one.frames == two.frames == 7
    a, b = read_all(one.path), read_all(two.path)
    assert len(a) == len(b) == 7
    for fa, fb in zip(a, b):  # in order: the square moves 3 px a frame, which a swap would show
        assert np.abs(fa.astype(int) - fb.astype(int)).mean() < 1.0


def test_an_interrupt_stops_the_workers_and_leaves_no_file(stylizer, tmp_path, two_threads):
    src = write_clip(tmp_path / "long.mp4", moving_square_frames(20, 64, 48))

    def interrupt(done, total):
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        stylize_video(stylizer, src, tmp_path / "out.mp4", frame_workers=2, progress=interrupt)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["long.mp4"]
    assert network_threads() == []
