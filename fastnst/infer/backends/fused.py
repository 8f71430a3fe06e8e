"""FusedNet: the inference plan (fastnst.infer.plan) in bf16 or float32, with far less work on a CPU
than the module it came from.

``FusedNet(net)`` runs the plan of a trained :class:`~fastnst.nets.transform_net.TransformNet`. In
float32 its output equals ``net(x)`` to ~1e-5; in bfloat16 it is within ~60 dB PSNR of the float32
network on trained weights. What it does beyond the plan's rewrites (sub-pixel upsampling, the output
conv in space-to-depth form, signs that make every norm scale >= 0), in order of what it bought on a
2-core AMX CPU (1024x1024, half width):

* **bf16 + channels_last with weights converted once**, so convolutions run on oneDNN's AMX kernels
  (autocast would re-cast every weight on every call and reorder layouts around each norm).
* **Instance norm folded into the next convolution.** Per image, IN(y) = a*y + b per channel with
  a >= 0, so ReLU(a*y + b) = a*(max(y, t) - t) with t = -b/a. A norm layer costs one float32
  statistics pass plus one ``max`` that writes straight into the next conv's padded input buffer
  (fastnst.infer.backends.buffers); a and t go into that conv's weights (input channels scaled by a)
  and bias (the -a*t offset, cancelled inside the conv's float32 accumulator). The residual stream is
  kept as s*(r_ - o) so its norms fold the same way. Before: batch-norm + ReLU + pad = five memory
  passes per layer.
* **Upsampling without the upsampled tensor**: each sub-pixel phase is read at its own one-pixel
  offset of the 2x2 phase conv's output and written, by the maximum above, straight into the next
  conv's padded input (depth-to-space), or kept as 2x2 blocks for the output conv.
* **Optional fixed normalisation statistics**, so tiles of a large image can be normalised with the
  statistics of the whole image (see fastnst.infer.stylizer).

FusedNet is a plain class, not an nn.Module: its tensors are prepared for one device and dtype at
construction (build another FusedNet for another device), and it has nothing to train.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from fastnst.infer.backends.base import Backend, NormContext, NormStats, as_plan
from fastnst.infer.backends.buffers import (
    CHANNELS_LAST,
    empty_padded,
    fill_border_,
    fill_phase_reflect_border_,
    interior,
)
from fastnst.infer.plan import Conv, NetworkPlan, NormReLU, PhaseConv, ResidualAdd, SpaceToDepthConv
from fastnst.nets.geometry import pad_to_multiple_of_4
from fastnst.nets.transform_net import TransformNet

__all__ = ["FusedNet"]


# ----------------------------------------------------------------------------------------------
# Statistics of a conv output (a 2x2 phase conv's: pooled over its 4 phases)
# ----------------------------------------------------------------------------------------------


def _phase(y: torch.Tensor, channels: int, a: int, b: int, h: int, w: int) -> torch.Tensor:
    """Phase (a, b) of a 2x2 phase conv's (1, 4*C, h+1, w+1) output, as an (h, w) view."""
    g = a * 2 + b
    return y[:, g * channels : (g + 1) * channels, a : a + h, b : b + w]


def _phase_stats(y: torch.Tensor, channels: int,
                 whole: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Float32 mean and biased variance per channel, pooled over the 4 phases of a 2x2 phase conv's
    (1, 4*C, h+1, w+1) output. Each phase is the full output minus one edge row and one edge column:
    statistics of the strided phase views directly are ~10x slower than these of the whole tensor
    with the excluded edges subtracted. ``whole``: the whole tensor's (mean, var), if already known."""
    _, c4, hp, wp = y.shape
    mean, var = _channel_stats(y) if whole is None else whole
    n_full = hp * wp
    s1 = mean * n_full
    s2 = (var + mean * mean) * n_full
    a = torch.tensor([0, 0, 1, 1], device=y.device).repeat_interleave(channels)  # phase row offset
    b = torch.tensor([0, 1, 0, 1], device=y.device).repeat_interleave(channels)
    idx = torch.arange(c4, device=y.device)
    row = torch.where(a == 0, hp - 1, 0)  # the edge row phase (a, b) does not use
    col = torch.where(b == 0, wp - 1, 0)
    rows = y[0, idx, row, :].float()  # (4C, w+1)
    cols = y[0, idx, :, col].float()  # (4C, h+1)
    corner = y[0, idx, row, col].float()
    s1 = s1 - rows.sum(1) - cols.sum(1) + corner
    s2 = s2 - (rows * rows).sum(1) - (cols * cols).sum(1) + corner * corner
    n = 4 * (hp - 1) * (wp - 1)
    mean = s1.view(4, channels).sum(0) / n
    var = (s2.view(4, channels).sum(0) / n - mean * mean).clamp_min(0)
    return mean, var


# ----------------------------------------------------------------------------------------------
# Instance norm folded into the next convolution
# ----------------------------------------------------------------------------------------------


def _channel_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Float32 mean and biased variance per channel of a (1, C, H, W) tensor."""
    mean, var = torch.ops.aten.batch_norm_update_stats(x, None, None, 1.0)
    return mean.float(), var.float()


@dataclass(frozen=True)
class _Weight:
    """A float32 conv weight (channels_last) kept for per-image folding, with its per-(out, in) tap sums."""

    weight: torch.Tensor
    tap_sum: torch.Tensor

    @classmethod
    def of(cls, weight: torch.Tensor) -> "_Weight":
        weight = weight.float().contiguous(memory_format=CHANNELS_LAST)
        return cls(weight, weight.sum(dim=(2, 3)))


def _fold(w: _Weight, scale: torch.Tensor, offset: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights and bias of a conv applied to ``scale * (v - offset)`` (per input channel) expressed on v.

    The bias cancels the offset inside the convolution's float32 accumulator, so its output keeps the
    magnitude of the original network's (a bf16 output would otherwise round away the signal under a
    large constant); what is left of the offset after rounding the bias to bf16 is a per-channel
    constant, which the instance norm after every such conv removes.
    """
    out = torch.empty_like(w.weight, dtype=dtype)  # keeps channels_last
    torch.mul(w.weight, scale.view(1, -1, 1, 1), out=out)  # one pass over the weights, cast included
    bias = -(w.tap_sum @ (scale * offset))
    return out, bias.to(dtype)


class _Activation:
    """A padded buffer and what it holds: v per channel, with the activation == scale * (v - offset)."""

    def __init__(self, buf: torch.Tensor, pad: int, scale: torch.Tensor | None = None, offset: torch.Tensor | None = None) -> None:
        self.buf, self.pad, self.scale, self.offset = buf, pad, scale, offset


class FusedNet(Backend):
    """Inference-only TransformNet: same output, in ``dtype`` (bf16 on AMX CPUs / GPUs, or float32).

    Built from a trained TransformNet (or its NetworkPlan); holds plain tensors on ``device`` (call it
    like a module: ``FusedNet(net)(x)``).
    """

    def __init__(self, net: TransformNet | NetworkPlan, dtype: torch.dtype = torch.bfloat16,
                 device: torch.device | str | None = None) -> None:
        plan = as_plan(net)
        self.dtype = dtype
        self.device = torch.device(device) if device is not None else plan.device
        self.plan = plan.to(self.device)
        # Per step, the weights it needs: the first conv (reading the image) converted once; every
        # other conv in float32 with its tap sums, folded per image (_fold).
        self.weights: list[object] = []
        for step in self.plan.steps:
            if isinstance(step, Conv) and step.reads == "image":
                weight = step.weight.contiguous(memory_format=CHANNELS_LAST)
                self.weights.append(weight.to(dtype).contiguous(memory_format=CHANNELS_LAST))
            elif isinstance(step, (Conv, PhaseConv, SpaceToDepthConv)):
                self.weights.append(_Weight.of(step.weight))
            else:
                if step.writes.layout == "space_to_depth" and (step.writes.pad, step.writes.mode) != (2, "reflect"):
                    raise ValueError("FusedNet expects the output conv's reflection padding of 4 pixels (johnson2016)")
                self.weights.append(None)

    def execute(self, x: torch.Tensor, given: NormStats | None, record: NormStats | None,
                momentum: float | None = None) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected a (N, 3, H, W) image batch, got shape {tuple(x.shape)}")
        h, w = x.shape[-2:]
        x = pad_to_multiple_of_4(x.to(self.device, torch.float32), self.config.min_side)
        p = self.plan.image_pad
        outs = []
        for i in range(x.shape[0]):  # instance norm is per image: one image at a time
            xi = F.pad(x[i : i + 1], (p, p, p, p), mode="reflect")  # the first conv's padding
            xi = xi.to(self.dtype).contiguous(memory_format=CHANNELS_LAST)
            outs.append(self._core(xi, NormContext(given, record, momentum)))
        y = outs[0] if len(outs) == 1 else torch.cat(outs)
        return y[..., :h, :w].contiguous()

    def _core(self, x: torch.Tensor, ctx: NormContext) -> torch.Tensor:
        """One padded image through the plan's steps. Every ReLU(IN(y)) is kept as v = max(y, t) with
        ReLU(IN(y)) == a*(v - t), a >= 0: the per-channel a and t are folded into the next conv (see
        _fold), so instance norm costs one statistics pass plus this single write, which also fills
        the next conv's padded buffer."""
        dt = self.dtype
        act = _Activation(x, self.plan.image_pad)  # what the next conv reads
        stream = None  # the residual stream r == s*(r_ - o) per channel, stored as r_
        for step, weight in zip(self.plan.steps, self.weights):
            if isinstance(step, (Conv, PhaseConv)):
                src = stream if step.reads == "stream" else act
                if step.reads == "image":  # the first conv's bias is cancelled by its norm
                    y = F.conv2d(src.buf, weight)
                elif isinstance(step, Conv):
                    y = F.conv2d(src.buf, *_fold(weight, src.scale, src.offset, dt), stride=step.stride, dilation=step.dilation)
                else:  # (1, 4*C, h+1, w+1), phase (a, b) at offset (a, b)
                    y = F.conv2d(src.buf, *_fold(weight, src.scale, src.offset, dt))
            elif isinstance(step, NormReLU):
                c = step.phase_channels
                mean, var = ctx.statistics(lambda: _phase_stats(y, c) if c else _channel_stats(y))
                a, b = step.norm.affine(mean, var)
                t = _threshold(a, b)
                buf = self._max_into(y, t, step)
                act = _Activation(buf, step.writes.pad, a, t)
                if step.opens_stream:
                    stream = _Activation(buf, step.writes.pad, torch.where(a > 0, a, 1.0), t.clone())
            elif isinstance(step, ResidualAdd):
                mean, var = ctx.statistics(lambda: _channel_stats(y))
                a, b = step.norm.affine(mean, var)
                n, c, h, w = y.shape
                out = step.writes
                nxt = empty_padded(n, c, h, w, out.pad, y)
                # r += a*y + b  <=>  r_ += (a/s)*y and o -= b/s
                s = stream.scale
                torch.addcmul(interior(stream.buf, stream.pad), y, (a / s).view(1, -1, 1, 1).to(dt), out=interior(nxt, out.pad))
                stream = _Activation(fill_border_(nxt, out.pad, out.mode), out.pad, s, stream.offset - b / s)
            else:
                return self._output(step, weight, act, a, b)
        raise ValueError("the plan has no output step")

    def _max_into(self, y: torch.Tensor, t: torch.Tensor, step: NormReLU) -> torch.Tensor:
        """max(y, t) per channel written into the padded buffer ``step.writes`` describes."""
        out, c = step.writes, step.phase_channels
        tt = t.to(self.dtype).view(1, -1, 1, 1)
        if out.layout == "plain":
            n, ch, h, w = y.shape
            buf = empty_padded(n, ch, h, w, out.pad, y)
            torch.maximum(y, tt, out=interior(buf, out.pad))
            return fill_border_(buf, out.pad, out.mode)
        h, w = y.shape[-2] - 1, y.shape[-1] - 1
        phases = [_phase(y, c, a_, b_, h, w) for a_ in range(2) for b_ in range(2)]
        if out.layout == "depth_to_space":  # the maximum and depth-to-space in one write
            buf = empty_padded(1, c, 2 * h, 2 * w, out.pad, y)
            inner = interior(buf, out.pad)
            for k, src in enumerate(phases):
                torch.maximum(src, tt, out=inner[:, :, k // 2 :: 2, k % 2 :: 2])
            return fill_border_(buf, out.pad, out.mode)
        # Kept space-to-depth: (1, 4*C, h, w) blocks, reflect-padded by 4 full-res px == 2 blocks.
        buf = empty_padded(1, 4 * c, h, w, out.pad, y)
        inner = interior(buf, out.pad)
        for k, src in enumerate(phases):
            torch.maximum(src, tt, out=inner[:, k * c : (k + 1) * c])
        return fill_phase_reflect_border_(buf, c)

    def _output(self, step: SpaceToDepthConv, weight: "_Weight", act: _Activation, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """The output conv on the space-to-depth activation; it is not followed by a norm, so the
        bias's bf16 rounding is undone in float32. Returns the (1, C, 2h, 2w) image."""
        a4, t4 = act.scale.repeat(4), act.offset.repeat(4)
        wo, bias = _fold(weight, a4, t4, self.dtype)
        b_eff = torch.where(a > 0, b, b.clamp_min(0))  # == -a*t, or ReLU(b) for a constant channel (a == 0)
        exact = weight.tap_sum @ b_eff.repeat(4)
        o = F.conv2d(act.buf, wo, bias)  # (1, 4*C, h, w)
        correction = step.bias + exact - bias.float()
        k = step.channels
        h, w = o.shape[-2:]
        o = o.permute(0, 2, 3, 1).float().add_(correction)
        return o.reshape(1, h, w, 2, 2, k).permute(0, 5, 1, 3, 2, 4).reshape(1, k, 2 * h, 2 * w)


def _threshold(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """t with ReLU(a*y + b) == a*(max(y, t) - t) for a >= 0 (a == 0 only for constant-0 channels)."""
    positive = a > 0
    return torch.where(positive, -b / torch.where(positive, a, 1.0), 0.0)
