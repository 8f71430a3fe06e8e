"""Temporal stability of a stylized video: the warping error of Lai et al. 2018.

"Learning Blind Video Temporal Consistency" (Lai, Huang, Wang, Shechtman, Yumer, Yang; ECCV 2018)
measures flicker as the difference between each output frame and the previous output frame warped
onto it with the optical flow of the *input* video, over the pixels that flow can explain:

    E_warp = 1/(T-1) * sum_t  sum_p M_t(p) * ||O_t(p) - warp(O_{t-1})(p)||^2  /  sum_p M_t(p)

Flow here is OpenCV's DIS (Kroeger et al. 2016) instead of the paper's FlowNet2: a benchmark and test
dependency only (``pip install opencv-python-headless``), never in the stylizing path. The mask M
drops occluded pixels by forward-backward consistency and motion boundaries, with the thresholds of
Ruder, Dosovitskiy & Brox 2016 ("Artistic style transfer for videos"). Frames are float RGB in
[0, 1]; the squared difference is averaged over the three channels (so values are per-channel MSEs;
Lai et al. sum over channels, a constant factor 3 that cancels in every ratio).

The same measure on the input video itself gives its floor: what flow cannot explain (noise,
compression, lighting) is counted there too. Compare methods at equal compression (or losslessly,
as scripts/bench_video.py does): an encoder smooths flicker away by itself.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

__all__ = ["WarpingError", "occlusion_mask", "optical_flow", "warp", "warping_error"]


def _cv2():
    try:
        import cv2
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError(
            'the warping error needs OpenCV: pip install opencv-python-headless (or pip install -e ".[video]")'
        ) from None
    return cv2


def _gray(frame: np.ndarray) -> np.ndarray:
    cv2 = _cv2()
    if frame.ndim == 2:
        return np.ascontiguousarray(frame)
    return cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)


class _Flow:
    """DIS optical flow (medium preset), one instance reused across frame pairs."""

    def __init__(self) -> None:
        cv2 = _cv2()
        self.dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)

    def __call__(self, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
        return self.dis.calc(src, dst, None)


def optical_flow(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """(H, W, 2) float32 flow f with src(p) ~ dst(p + f(p)); frames uint8 RGB (H, W, 3) or grey."""
    return _Flow()(_gray(src), _gray(dst))


def warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Sample ``image`` at p + flow(p) (bilinear, border replicated): with the flow from frame t to
    frame t-1, this brings frame t-1 onto frame t."""
    cv2 = _cv2()
    h, w = flow.shape[:2]
    grid = np.mgrid[0:h, 0:w].astype(np.float32)
    map_x = grid[1] + flow[..., 0]
    map_y = grid[0] + flow[..., 1]
    return cv2.remap(image, map_x, map_y, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def occlusion_mask(flow_back: np.ndarray, flow_fwd: np.ndarray) -> np.ndarray:
    """Boolean (H, W) mask of the pixels of frame t whose flow is trusted (Ruder et al. 2016, eq. 3-4).

    ``flow_back``: t -> t-1; ``flow_fwd``: t-1 -> t. A pixel is dropped when following the flow back
    and then forward does not return to it (|w + w~|^2 > 0.01 (|w|^2 + |w~|^2) + 0.5, w~ the forward
    flow at the back-warped position), or when it lies on a motion boundary
    (|grad u|^2 + |grad v|^2 > 0.01 |w|^2 + 0.002), and also where the flow leaves the frame.
    """
    h, w = flow_back.shape[:2]
    fwd_at = warp(flow_fwd, flow_back)
    total = flow_back + fwd_at
    consistent = (total**2).sum(-1) <= 0.01 * ((flow_back**2).sum(-1) + (fwd_at**2).sum(-1)) + 0.5
    du = np.gradient(flow_back[..., 0])
    dv = np.gradient(flow_back[..., 1])
    grad2 = du[0] ** 2 + du[1] ** 2 + dv[0] ** 2 + dv[1] ** 2
    smooth = grad2 <= 0.01 * (flow_back**2).sum(-1) + 0.002
    ys, xs = np.mgrid[0:h, 0:w]
    tx, ty = xs + flow_back[..., 0], ys + flow_back[..., 1]
    inside = (tx >= 0) & (tx <= w - 1) & (ty >= 0) & (ty <= h - 1)
    return consistent & smooth & inside


def _as_float(frame: np.ndarray) -> np.ndarray:
    if frame.dtype == np.uint8:
        return frame.astype(np.float32) / 255.0
    return frame.astype(np.float32, copy=False)


class WarpingError:
    """Streaming warping error: ``add(input_frame, output_frame)`` in order, then ``value``.

    Frames: (H, W, 3) RGB, uint8 or float in [0, 1]; the outputs may be a method's stylized frames or
    the inputs themselves (the floor). ``reset()`` at a scene cut, where no flow exists. Several
    outputs of the same input can be scored at once with ``add(input, [out_a, out_b, ...])``; then
    ``values`` holds one error per output, all on the same flow and masks.
    """

    def __init__(self) -> None:
        self._flow = _Flow()
        self._prev_gray: np.ndarray | None = None
        self._prev_out: list[np.ndarray] | None = None
        self._sums: list[float] = []
        self.pairs = 0

    def reset(self) -> None:
        self._prev_gray = None
        self._prev_out = None

    def add(self, input_frame: np.ndarray, outputs: np.ndarray | list[np.ndarray]) -> None:
        outs = [outputs] if isinstance(outputs, np.ndarray) else list(outputs)
        gray = _gray(input_frame)
        if self._prev_gray is not None:
            if gray.shape != self._prev_gray.shape:
                raise ValueError("frames change size: call reset() between clips")
            back = self._flow(gray, self._prev_gray)
            fwd = self._flow(self._prev_gray, gray)
            mask = occlusion_mask(back, fwd)
            n = max(1, int(mask.sum()))
            if not self._sums:
                self._sums = [0.0] * len(outs)
            if len(outs) != len(self._sums):
                raise ValueError("pass the same number of outputs for every frame")
            for k, (cur, prev) in enumerate(zip(outs, self._prev_out)):
                cur_f, warped = _as_float(cur), warp(_as_float(prev), back)
                if cur_f.shape[:2] != gray.shape:
                    raise ValueError(f"output frame {cur_f.shape[:2]} and input frame {gray.shape} differ in size")
                diff = (cur_f - warped) ** 2
                self._sums[k] += float(diff.mean(axis=-1)[mask].sum()) / n
            self.pairs += 1
        self._prev_gray = gray
        self._prev_out = [np.ascontiguousarray(o) for o in outs]

    @property
    def values(self) -> list[float]:
        if not self.pairs:
            raise ValueError("the warping error needs at least two consecutive frames")
        return [s / self.pairs for s in self._sums]

    @property
    def value(self) -> float:
        return self.values[0]


def warping_error(inputs: Iterable[np.ndarray], outputs: Iterable[np.ndarray]) -> float:
    """Warping error of ``outputs`` (frame by frame) given the ``inputs`` they were made from."""
    meter = WarpingError()
    for x, y in zip(inputs, outputs, strict=True):
        meter.add(x, y)
    return meter.value
