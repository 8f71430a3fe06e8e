"""Frame conversion without PIL, and the warping error (Lai et al. 2018) with DIS flow."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fastnst.video.frames import frame_to_tensor, tensor_to_frame

cv2 = pytest.importorskip("cv2")

from fastnst.eval.warping_error import WarpingError, occlusion_mask, optical_flow, warp, warping_error  # noqa: E402


def textured(h: int = 64, w: int = 80, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (h // 4, w // 4, 3), dtype=np.uint8)
    return cv2.GaussianBlur(cv2.resize(small, (w + 16, h + 16), interpolation=cv2.INTER_CUBIC), (5, 5), 1.0)


def test_frame_round_trip_is_exact_and_channels_last():
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 256, (7, 9, 3), dtype=np.uint8)
    x = frame_to_tensor(frame)
    assert x.shape == (1, 3, 7, 9) and x.dtype == torch.float32
    assert x.is_contiguous(memory_format=torch.channels_last)
    assert x[0, 1, 2, 3].item() == pytest.approx(frame[2, 3, 1] / 255.0)
    back = tensor_to_frame(x)
    assert back.dtype == np.uint8 and back.shape == (7, 9, 3)
    np.testing.assert_array_equal(back, frame)


def test_tensor_to_frame_rounds_and_clamps():
    x = torch.tensor([-0.5, 0.0, 0.5 / 255, 1.49 / 255, 1.0, 2.0]).view(1, 1, 1, 6).expand(1, 3, 1, 6)
    assert tensor_to_frame(x)[0, :, 0].tolist() == [0, 0, 1, 1, 255, 255]
    with pytest.raises(ValueError):
        frame_to_tensor(np.zeros((4, 4), np.uint8))


def test_flow_and_warp_recover_a_shift():
    big = textured()
    prev, cur = big[8:72, 8:88], big[8:72, 5:85]  # the camera panned: content moves right by 3 px
    back = optical_flow(cur, prev)  # cur -> prev
    inner = (slice(10, -10), slice(10, -10))
    assert np.median(back[..., 0][inner]) == pytest.approx(-3.0, abs=0.3)  # cur(x) == prev(x - 3)
    warped = warp(prev.astype(np.float32), back)
    err = np.abs(warped - cur.astype(np.float32))[inner].mean()
    assert err < 4.0  # of 255; unwarped it is much larger
    assert np.abs(prev.astype(np.float32) - cur.astype(np.float32))[inner].mean() > 4 * err


def test_occlusion_mask_drops_inconsistent_flow():
    h, w = 20, 30
    back = np.zeros((h, w, 2), np.float32)
    back[..., 0] = 2.0
    fwd = np.zeros((h, w, 2), np.float32)
    fwd[..., 0] = -2.0
    mask = occlusion_mask(back, fwd)
    assert mask[:, : w - 3].all()  # consistent, inside the frame
    assert not mask[:, w - 2 :].any()  # flow leaves the frame
    fwd[5:10, :, 0] = 5.0  # forward flow disagrees there
    mask = occlusion_mask(back, fwd)
    assert not mask[5:10, 4 : w - 8].any()


def test_warping_error_orders_stable_and_flickering_outputs():
    big = textured(seed=3)
    inputs = [np.ascontiguousarray(big[8:72, 8 - t : 88 - t]) for t in range(5)]  # a slow pan
    rng = np.random.default_rng(0)
    flicker = [np.clip(f.astype(np.int16) + rng.integers(-40, 40, f.shape), 0, 255).astype(np.uint8) for f in inputs]
    stable = warping_error(inputs, inputs)
    noisy = warping_error(inputs, flicker)
    assert stable < 0.002
    assert noisy > 10 * stable
    meter = WarpingError()
    for x, y in zip(inputs, flicker):
        meter.add(x, [x, y])
    assert meter.pairs == 4
    assert meter.values == pytest.approx([stable, noisy], rel=1e-5)
    with pytest.raises(ValueError):
        warping_error(inputs[:1], inputs[:1])  # one frame: no pair
