"""FrameStylizer: per-frame equivalence, stabilisation of static regions, no ghosts, scene cuts;
FusedNet.smoothed (instance-norm statistics smoothed over time)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fastnst.infer.backends.fused import FusedNet
from fastnst.infer.stylizer import Stylizer
from fastnst.video.frames import frame_to_tensor
from fastnst.video.temporal import FrameStylizer, Stabilization, global_shift, is_scene_cut
from tests.support import random_style_net

pytestmark = pytest.mark.usefixtures("one_thread")

W, H = 64, 48


@pytest.fixture(scope="module")
def stylizer() -> Stylizer:
    return Stylizer(random_style_net(base_channels=8, blocks=1), device="cpu", precision="fp32")


def square_frames(count: int, step: int = 4, noise: float = 3.0, seed: int = 0) -> list[np.ndarray]:
    from tests.clips import moving_square_frames

    return moving_square_frames(count, W, H, step=step, seed=seed, noise=noise)


def test_off_equals_independent_frames(stylizer):
    frames = square_frames(3)
    stream = FrameStylizer(stylizer, stabilization=None)
    for f in frames:
        expected = stylizer.stylize_tensor(frame_to_tensor(f))
        got = stream.stylize_tensor(frame_to_tensor(f))
        torch.testing.assert_close(got, expected)
    assert stream.frames == 3


def test_static_regions_are_stabilised_and_moving_ones_have_no_ghost(stylizer):
    frames = square_frames(6, step=6, noise=4.0)
    plain = FrameStylizer(stylizer, stabilization=None)
    stable = FrameStylizer(stylizer)
    a = [plain.stylize_tensor(frame_to_tensor(f)) for f in frames]
    b = [stable.stylize_tensor(frame_to_tensor(f)) for f in frames]
    # The background (rows away from the square's band) only has noise: the stabilised output
    # changes much less from frame to frame there.
    bg = slice(0, H // 3 - 8)
    flicker_plain = np.mean([(a[t] - a[t - 1])[..., bg, :].abs().mean().item() for t in range(1, 6)])
    flicker_stable = np.mean([(b[t] - b[t - 1])[..., bg, :].abs().mean().item() for t in range(1, 6)])
    assert flicker_stable < 0.5 * flicker_plain
    # Where the square was in the previous frame and is not now (uncovered background), the input
    # changed a lot: the stabilised frame takes the new output, with no trace of the square.
    side = max(4, min(W, H) // 4)
    y0, t = H // 3, 5
    x_prev, x_now = 4 + (t - 1) * 6, 4 + t * 6
    uncovered = (..., slice(y0 + 1, y0 + side - 1), slice(x_prev + 1, x_now - 1))
    assert (b[t][uncovered] - a[t][uncovered]).abs().max().item() < 0.02


def test_scene_cut_resets(stylizer):
    first = square_frames(2, seed=1)
    other = [255 - f for f in square_frames(2, seed=2)]  # a different shot
    stream = FrameStylizer(stylizer)
    for f in first:
        stream(f)
    out = stream.stylize_tensor(frame_to_tensor(other[0]))
    assert stream.scene_cuts == 1
    torch.testing.assert_close(out, stylizer.stylize_tensor(frame_to_tensor(other[0])))
    assert is_scene_cut(frame_to_tensor(first[0]), frame_to_tensor(other[0]))
    assert not is_scene_cut(frame_to_tensor(first[0]), frame_to_tensor(first[1]))


def test_uint8_call_and_size_change(stylizer):
    stream = FrameStylizer(stylizer)
    out = stream(square_frames(1)[0])
    assert out.dtype == np.uint8 and out.shape == (H, W, 3)
    smaller = np.ascontiguousarray(square_frames(1)[0][:40, :50])
    assert stream(smaller).shape == (40, 50, 3)  # a new size starts over (no error)


def test_bad_settings_are_refused(stylizer):
    with pytest.raises(ValueError):
        Stabilization(blend=1.0)
    with pytest.raises(ValueError):
        Stabilization(stats_momentum=-0.1)
    with pytest.raises(ValueError):
        FrameStylizer(stylizer, strength=2.0)
    with pytest.raises(ValueError):
        FrameStylizer(stylizer).stylize_tensor(torch.zeros(2, 3, 8, 8))


def test_smoothed_statistics():
    net = FusedNet(random_style_net(base_channels=8, blocks=1), torch.float32, "cpu")
    frames = square_frames(2, seed=4)
    x1, x2 = frame_to_tensor(frames[0]), frame_to_tensor(frames[1])
    y1, s1 = net.smoothed(x1, None, 0.5)  # first frame: its own statistics
    own1, rec1 = net.record_stats(x1)
    torch.testing.assert_close(y1, own1)
    assert len(s1.layers) == net.num_norm_layers
    y0, _ = net.smoothed(x2, s1, 0.0)  # momentum 0: the frame's own statistics again
    torch.testing.assert_close(y0, net(x2))
    _, s2 = net.smoothed(x2, s1, 0.5)
    _, own2 = net.record_stats(x2)
    mean = 0.5 * (own2.layers[0][0] + s1.layers[0][0])  # the first layer's own stats do not depend on earlier ones
    torch.testing.assert_close(s2.layers[0][0], mean)
    with pytest.raises(ValueError):
        net.smoothed(x2, s1, 1.0)


def pan(count: int, dy: int, dx: int) -> list[np.ndarray]:
    """A camera panning over a broadband texture (with noise): frame t shows the scene moved by t*(dy, dx)."""
    rng = np.random.default_rng(5)
    big = torch.nn.functional.avg_pool2d(torch.rand(1, 3, 200, 240, generator=torch.Generator().manual_seed(5)), 3, 1, 1)
    big = (big[0].permute(1, 2, 0).numpy() * 255).astype(np.float32)
    frames = []
    for t in range(count):
        y0, x0 = 60 - t * dy, 80 - t * dx
        crop = big[y0 : y0 + H, x0 : x0 + W] + rng.normal(0, 2, (H, W, 3))
        frames.append(np.clip(crop, 0, 255).astype(np.uint8))
    return frames


def test_global_shift_finds_the_pan():
    frames = [frame_to_tensor(f) for f in pan(2, 3, -5)]
    assert global_shift(frames[0], frames[1]) == (3, -5)
    assert global_shift(frames[0], frames[0]) == (0, 0)


def test_a_panning_camera_is_followed(stylizer):
    frames = pan(6, 2, 4)
    plain = [FrameStylizer(stylizer, stabilization=None)(f) for f in frames]
    follow, fixed = FrameStylizer(stylizer), FrameStylizer(stylizer, stabilization=Stabilization(follow_camera=False))
    moved = [follow(f) for f in frames]
    still = [fixed(f) for f in frames]

    def change(out: list[np.ndarray]) -> float:  # frame t against frame t-1 moved by the pan, inside
        return float(np.mean([np.abs(out[t][10:-10, 10:-10].astype(int) - out[t - 1][8:-12, 6:-14].astype(int)).mean()
                              for t in range(1, 6)]))

    assert change(moved) < 0.5 * change(plain)
    assert change(still) > 0.8 * change(plain)  # without following, a pan is all motion


def test_model_given_by_path(tmp_path):
    from fastnst.nets.modelfile import save_style_model

    path = tmp_path / "m.safetensors"
    save_style_model(path, random_style_net(base_channels=8, blocks=1), {"style": "m"})
    stream = FrameStylizer(path, precision="fp32", device="cpu")
    assert stream.stylizer.style == "m"
    assert stream(square_frames(1)[0]).shape == (H, W, 3)


@pytest.mark.parametrize("shape", [(1, 3, 36, 64), (1, 3, 7, 9), (1, 3, 1, 5), (1, 1, 5, 1)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_box_filters_equal_average_pooling(shape, channels_last):
    import torch.nn.functional as F

    from fastnst.video.temporal import _box3, _mean2x2

    x = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(_mean2x2(x), F.avg_pool2d(x, 2, ceil_mode=True))
    torch.testing.assert_close(_box3(x), F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False))


@pytest.mark.parametrize("shift", [(6, -8), (-4, 2), (2, 0), (0, -2)])
def test_blend_weight_leaves_out_the_uncovered_strip_and_its_edge(shift):
    from fastnst.video.temporal import _look, _static_weight

    x = torch.rand(1, 3, 40, 60, generator=torch.Generator().manual_seed(1))
    look = _look(x)
    w = _static_weight(look, look, shift, 0.9, 0.03)[0, 0]  # same frame: static wherever the shift leaves data
    dy, dx = shift
    rows = torch.arange(40)[:, None]
    cols = torch.arange(60)[None, :]
    # The strip the shift uncovers plus one half-resolution pixel (2 px here) next to it get no weight.
    uncovered = (rows < dy + 2) if dy > 0 else (rows >= 40 + dy - 2) if dy < 0 else torch.zeros_like(rows, dtype=torch.bool)
    uncovered = uncovered | ((cols < dx + 2) if dx > 0 else (cols >= 60 + dx - 2) if dx < 0 else torch.zeros_like(cols, dtype=torch.bool))
    assert (w[uncovered] == 0).all()
    assert (w[~uncovered] > 0).any()
