"""Stylizing a stream of video frames in order, with temporal state: ``FrameStylizer``.

    import fastnst
    frames = fastnst.FrameStylizer("starry")          # model name, path, or a loaded Stylizer
    for rgb in my_decoder:                             # (H, W, 3) uint8 RGB frames, in order
        out = frames(rgb)                              # (H, W, 3) uint8, stylized and stabilised

A feed-forward network stylizes each frame on its own, and small input changes (sensor noise,
compression, a person moving elsewhere in the receptive field) change the painted texture: the video
flickers. Flow-based methods (Ruder et al. 2016; Huang et al. 2017; Gupta et al. 2017) fix that with an
optical-flow network or by training for it. Here stability costs no flow computation at all, only a
few elementwise passes on top of the network, most at a quarter of the pixels:

1. **Instance-norm statistics smoothed over time** (optional, off by default). The fused network
   computes every norm layer's statistics in a separate pass; with ``stats_momentum`` m each layer
   uses ``m * running + (1 - m) * own``, in the same single pass. Measured with the warping error it
   changed nothing that matters: 1.00x on vtest.avi, 0.99x on synthetic camera pans, 1.02-1.04x
   (worse) with simulated exposure flicker (momentum 0.5 / 0.8). The statistics of a whole frame are
   already stable; the flicker is local texture.
2. **Motion-gated recursive blend** (the classical motion-adaptive recursive filter of video
   denoising, applied to the stylized output): where the *input* did not change between two frames
   (the RGB change, box-filtered over ~6x6 px so that noise cancels, below ``motion_threshold``),
   the output keeps up to ``blend`` of the previous output; where it changed, the new frame is taken
   as it is. So static regions stop shimmering while moving people get no ghosts, unlike a plain
   blend with the previous frame (which trails every moving edge). A pixel that changes slowly
   follows with the lag of an exponential average.
3. **Following the camera** (``follow_camera``): the camera's pan between two frames is one global
   shift, found by phase correlation of small grey thumbnails (a few FFTs; no optical flow). Each
   pixel compares its input with the previous frame both where it was and moved by that shift, and
   blends with the better match: a fixed background and a panning scene are both stabilised, and
   whatever neither explains (zoom, rotation, moving objects) is taken fresh.
4. **Scene cuts** (most of a coarse grey thumbnail changes at once) and size changes reset it all.

The thresholds are relative to pixel values in [0, 1] and were chosen on vtest.avi (fixed camera,
people walking). Measured with scripts/bench_video.py (warping error, Lai et al. 2018, against
per-frame stylization): ~0.5x on vtest.avi, ~0.05x on a camera pan, with stabilised frames taking
1.0-1.1x the time of per-frame ones.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from fastnst.infer.backends.base import NormStats
from fastnst.infer.color import blend as blend_strength
from fastnst.infer.color import preserve_color as preserve_color_fn
from fastnst.infer.stylizer import Stylizer, as_stylizer
from fastnst.nets.modelfile import StyleModel
from fastnst.nets.transform_net import TransformNet
from fastnst.video.frames import frame_to_tensor, tensor_to_frame

__all__ = ["FrameStylizer", "Stabilization", "is_scene_cut"]

# Scene cuts: compare 1/16-scale grey thumbnails; a cell "changed" when its mean moved by this much...
CUT_CELL_CHANGE = 0.1
# ...and a cut is when at least this fraction of the cells changed.
CUT_FRACTION = 0.6


@dataclass(frozen=True)
class Stabilization:
    """Settings of the temporal stabilisation (see the module docstring). ``off()``: per-frame."""

    stats_momentum: float = 0.0  # off by default: measured no gain (see the module docstring)
    blend: float = 0.9
    motion_threshold: float = 0.03
    follow_camera: bool = True  # move the previous frame with the camera's pan before blending

    def __post_init__(self) -> None:
        if not 0.0 <= self.stats_momentum < 1.0:
            raise ValueError(f"stats_momentum must be in [0, 1), got {self.stats_momentum!r}")
        if not 0.0 <= self.blend < 1.0:
            raise ValueError(f"blend must be in [0, 1), got {self.blend!r}")
        if self.motion_threshold <= 0:
            raise ValueError(f"motion_threshold must be positive, got {self.motion_threshold!r}")

    @classmethod
    def off(cls) -> "Stabilization":
        return cls(stats_momentum=0.0, blend=0.0)

    @property
    def enabled(self) -> bool:
        return self.stats_momentum > 0 or self.blend > 0


@dataclass(frozen=True)
class _Look:
    """What the stabiliser keeps of an input frame: small copies, so its own cost stays a few
    percent of the network's (one pass over the full-resolution frame, the rest at 1/4 the pixels)."""

    size: tuple[int, int]  # full resolution (H, W)
    half: torch.Tensor  # (1, 3, H/2, W/2) box-filtered, for the motion gate (full size if tiny)
    scale: int  # full-resolution pixels per ``half`` pixel (2, or 1 for tiny frames)
    thumb: torch.Tensor  # (h, w) grey, long side <= THUMB_SIDE: scene cuts and the camera's pan
    thumb_scale: int  # full-resolution pixels per thumbnail pixel


THUMB_SIDE = 320


# The box filters below are sums of shifted slices: PyTorch's avg_pool2d on a 3-channel frame (most of all
# channels_last, a decoder's layout) runs ~10x slower than the additions it stands for, and the two filters
# were most of the stabiliser's time (measured at 640x360: ~5 of ~12 ms a frame, against ~35 ms for the
# network).


def _mean2x2(x: torch.Tensor) -> torch.Tensor:
    """``F.avg_pool2d(x, 2, ceil_mode=True)``: the mean of each 2x2 block (a lone last row or column
    averages what it has)."""
    h, w = x.shape[-2:]
    if h % 2 or w % 2:
        return F.avg_pool2d(x, 2, ceil_mode=True)
    out = x[..., 0::2, 0::2] + x[..., 1::2, 0::2]
    out += x[..., 0::2, 1::2]
    out += x[..., 1::2, 1::2]
    return out.mul_(0.25)


def _box3(x: torch.Tensor) -> torch.Tensor:
    """``F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)``: the mean of each pixel's
    3x3 neighbourhood inside the image."""
    h, w = x.shape[-2:]
    rows = x.clone()
    rows[..., 1:, :] += x[..., :-1, :]
    rows[..., :-1, :] += x[..., 1:, :]
    out = rows.clone()
    out[..., :, 1:] += rows[..., :, :-1]
    out[..., :, :-1] += rows[..., :, 1:]
    return out.mul_(_box3_inverse_counts(h, w, x.device, x.dtype))


@lru_cache(maxsize=8)  # the same frame size every frame, twice a frame with the camera followed
def _box3_inverse_counts(h: int, w: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """1 / (the pixels of each 3x3 neighbourhood that lie inside an h x w image), (h, w); read only."""
    def counts(n: int) -> torch.Tensor:
        c = torch.ones(n, device=device, dtype=dtype)
        c[1:] += 1
        c[:-1] += 1
        return c
    return torch.outer(counts(h), counts(w)).reciprocal_()


def _look(x: torch.Tensor) -> _Look:
    h, w = x.shape[-2:]
    scale = 2 if min(h, w) >= 16 else 1
    half = _mean2x2(x) if scale == 2 else x
    k = max(1, -(-max(half.shape[-2:]) // THUMB_SIDE))
    thumb = F.avg_pool2d(half.mean(dim=1, keepdim=True), k, ceil_mode=True)[0, 0]
    return _Look((h, w), half, scale, thumb, scale * k)


def _cut(a: _Look, b: _Look) -> bool:
    if a.size != b.size:
        return True
    k = max(1, min(a.thumb.shape) // 16)  # ~16 cells across the short side
    cells = (F.avg_pool2d(b.thumb[None], k, ceil_mode=True) - F.avg_pool2d(a.thumb[None], k, ceil_mode=True)).abs()
    return bool((cells > CUT_CELL_CHANGE).float().mean() >= CUT_FRACTION)


def is_scene_cut(previous: torch.Tensor, current: torch.Tensor) -> bool:
    """True when two (1, 3, H, W) frames in [0, 1] look like different shots (most of a coarse
    thumbnail changed at once). Camera pans and people moving change only part of it."""
    return previous.shape != current.shape or _cut(_look(previous), _look(current))


def _phase_shift(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    """Sub-pixel (dy, dx) with b[y, x] ~ a[y - dy, x - dx] by phase correlation of two grey images."""
    th, tw = a.shape
    if th < 8 or tw < 8:
        return 0.0, 0.0
    window = torch.outer(torch.hann_window(th, periodic=False, device=a.device), torch.hann_window(tw, periodic=False, device=a.device))
    fa = torch.fft.rfft2((a - a.mean()) * window)
    fb = torch.fft.rfft2((b - b.mean()) * window)
    cross = fb * fa.conj()
    corr = torch.fft.irfft2(cross / (cross.abs() + 1e-9), s=(th, tw))
    py, px = divmod(int(torch.argmax(corr)), tw)

    def refine(c_minus: float, c0: float, c_plus: float) -> float:  # parabola through the peak
        denom = c_minus - 2 * c0 + c_plus
        return 0.0 if denom >= 0 else 0.5 * (c_minus - c_plus) / denom

    dy = py + refine(float(corr[py - 1, px]), float(corr[py, px]), float(corr[(py + 1) % th, px]))
    dx = px + refine(float(corr[py, px - 1]), float(corr[py, px]), float(corr[py, (px + 1) % tw]))
    return (dy - th if dy > th / 2 else dy), (dx - tw if dx > tw / 2 else dx)


def global_shift(previous: torch.Tensor, current: torch.Tensor) -> tuple[int, int]:
    """Integer (dy, dx) with current[y, x] ~ previous[y - dy, x - dx]: the camera's pan between two
    (1, 3, H, W) frames, by phase correlation (Kuglin & Hines 1975) of grey thumbnails with a
    sub-pixel peak, scaled to full resolution. A few FFTs of a small image, no optical flow. Where
    the scene does not move as a whole the estimate is whatever fits best, and the motion gate
    rejects the pixels it does not explain."""
    a, b = _look(previous), _look(current)
    dy, dx = _phase_shift(a.thumb, b.thumb)
    return round(dy * b.thumb_scale), round(dx * b.thumb_scale)


def _shifted(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """x moved by (dy, dx) (out[y, x] = x[y - dy, x - dx]), zeros where it uncovers nothing."""
    h, w = x.shape[-2:]
    out = torch.zeros_like(x)
    if abs(dy) >= h or abs(dx) >= w:
        return out
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[..., yd, xd] = x[..., ys, xs]
    return out


def _static_weight(current: _Look, previous: _Look, shift: tuple[int, int], blend: float, threshold: float) -> torch.Tensor:
    """Per-pixel weight (1, 1, H, W) of the previous output: ``blend`` where the input is static (after
    following the camera by ``shift``), 0 where it moved or where the camera uncovered new ground.

    The *signed* change is box-filtered (half resolution, then 3x3: ~6x6 px) before its magnitude is
    taken, so sensor noise averages away (a webcam's grain is not motion) while a moving edge or
    shading, a coherent change, is kept."""
    dy, dx = round(shift[0] / current.scale), round(shift[1] / current.scale)
    prev = previous.half if (dy, dx) == (0, 0) else _shifted(previous.half, dy, dx)
    diff = _box3(current.half - prev)
    weight = diff.abs_().mean(dim=1, keepdim=True).mul_(-1.0 / threshold).add_(1.0).clamp_(0.0, 1.0).mul_(blend)
    # Nothing from the strip the camera uncovered, nor from the pixel next to it (the box filter saw the
    # strip's zeros there): the 3x3 erosion of the shifted frame's rectangle.
    if dy > 0:
        weight[..., : dy + 1, :] = 0.0
    elif dy < 0:
        weight[..., dy - 1 :, :] = 0.0
    if dx > 0:
        weight[..., : dx + 1] = 0.0
    elif dx < 0:
        weight[..., dx - 1 :] = 0.0
    if weight.shape[-2:] != current.size:
        weight = F.interpolate(weight, scale_factor=current.scale, mode="nearest")[..., : current.size[0], : current.size[1]]
    return weight


class FrameStylizer:
    """Stylizes the frames of one video in order and keeps the temporal state between them.

    ``stabilization``: a :class:`Stabilization` (default settings), or ``None`` / ``Stabilization.off()``
    for independent frames. ``preserve_color`` and ``strength`` as for images. Call with a uint8 RGB
    frame (H, W, 3) to get one back, or use :meth:`stylize_tensor` with a (1, 3, H, W) float tensor.
    Not thread-safe: one instance per stream. ``reset()`` starts a new clip; ``scene_cuts`` counts the
    cuts found.
    """

    def __init__(
        self,
        model: Stylizer | StyleModel | TransformNet | str | os.PathLike,
        *,
        stabilization: Stabilization | None = Stabilization(),
        preserve_color: bool = False,
        strength: float = 1.0,
        device: str | torch.device | None = None,
        precision: str | None = None,
    ) -> None:
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"strength must be in [0, 1], got {strength!r}")
        self.stylizer = as_stylizer(model, device, precision)
        self.stabilization = stabilization or Stabilization.off()
        self.preserve_color = preserve_color
        self.strength = strength
        self.frames = 0
        self.scene_cuts = 0
        self.reset()

    @property
    def device(self) -> torch.device:
        return self.stylizer.device

    def reset(self) -> None:
        """Forget the previous frames (a new clip or shot)."""
        self._prev_look: _Look | None = None
        self._prev_output: torch.Tensor | None = None
        self._stats: NormStats | None = None

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 RGB -> stylized (H, W, 3) uint8 RGB."""
        return tensor_to_frame(self.stylize_tensor(frame_to_tensor(frame, self.device)))

    @property
    def independent(self) -> bool:
        """Whether the network's pass over a frame needs no earlier frame (true unless the norm statistics
        are smoothed over time): then frames can go through :meth:`network_pass` out of order, even at the
        same time, and :meth:`finish` puts them back in order."""
        return self.stabilization.stats_momentum == 0

    @torch.inference_mode()
    def stylize_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """(1, 3, H, W) float in [0, 1] -> stylized (1, 3, H, W) float32 in [0, 1] on this device."""
        if self.independent:
            return self.finish(x, self.network_pass(x))
        x = self._checked(x)
        look = self._see(x)  # before the pass: a scene cut resets the smoothed statistics it uses
        net = self.stylizer.backend_for(*x.shape[-2:])
        y, self._stats = net.smoothed(x, self._stats, self.stabilization.stats_momentum)
        return self._follow(x, y, look)

    @torch.inference_mode()
    def network_pass(self, x: torch.Tensor) -> torch.Tensor:
        """The network's raw output for one (1, 3, H, W) frame, before the temporal step; touches no
        state, so it is safe from several threads at once. Only for :attr:`independent` stylizers."""
        if not self.independent:
            raise RuntimeError("smoothed statistics need the frames one at a time, in order (use stylize_tensor)")
        x = self._checked(x)
        return self.stylizer.backend_for(*x.shape[-2:])(x)

    @torch.inference_mode()
    def finish(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The temporal step for frame ``x`` given its :meth:`network_pass` output ``y``; frames in order."""
        x = self._checked(x)
        return self._follow(x, y, self._see(x))

    def _checked(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[:2] != (1, 3):
            raise ValueError(f"expected one (1, 3, H, W) frame, got shape {tuple(x.shape)}")
        return x.to(self.device, torch.float32)

    def _see(self, x: torch.Tensor) -> _Look:
        """This frame's look; a scene cut (or a new size) forgets the earlier frames."""
        look = _look(x)
        if self._prev_look is not None and _cut(self._prev_look, look):
            if self._prev_look.size == look.size:
                self.scene_cuts += 1
            self.reset()
        return look

    def _follow(self, x: torch.Tensor, y: torch.Tensor, look: _Look) -> torch.Tensor:
        """Colour, strength and the motion-gated blend with the previous output; keeps this frame's state."""
        s = self.stabilization
        y = y.clamp_(0.0, 1.0)
        if self.preserve_color:
            y = preserve_color_fn(y, x)
        if self.strength < 1.0:
            y = blend_strength(x, y, self.strength)
        if s.blend > 0 and self._prev_output is not None:
            weight = _static_weight(look, self._prev_look, (0, 0), s.blend, s.motion_threshold)
            moved = None
            if s.follow_camera:
                # Two candidates per pixel: the previous frame where it was (a fixed background) and
                # moved with the camera's pan; each pixel takes the one its input matches better.
                dy, dx = _phase_shift(self._prev_look.thumb, look.thumb)
                shift = (round(dy * look.thumb_scale), round(dx * look.thumb_scale))
                if shift != (0, 0):
                    moved = _static_weight(look, self._prev_look, shift, s.blend, s.motion_threshold)
                    better = moved > weight
                    weight.masked_fill_(better, 0.0)
                    moved.masked_fill_(~better, 0.0)
            # Each pixel blends with one candidate (the other's weight is 0 there): two lerps, one pass
            # each, instead of a 3-channel select of the candidates and a lerp.
            y = y.lerp_(self._prev_output, weight)
            if moved is not None:
                y = y.lerp_(_shifted(self._prev_output, *shift), moved)
        self._prev_look = look
        self._prev_output = y if s.enabled else None
        self.frames += 1
        return y
