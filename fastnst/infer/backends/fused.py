"""FusedNet: an inference-only rewrite of TransformNet, the same function with far less work on a CPU.

``FusedNet(net)`` re-expresses a trained :class:`~fastnst.nets.transform_net.TransformNet`. In float32
its output equals ``net(x)`` to ~1e-5; in bfloat16 it is within ~60 dB PSNR of the float32 network on
trained weights. What changes, in order of what it bought on a 2-core AMX CPU (1024x1024, half width):

* **bf16 + channels_last with weights converted once**, so convolutions run on oneDNN's AMX kernels
  (autocast would re-cast every weight on every call and reorder layouts around each norm).
* **Instance norm folded into the next convolution.** Per image, IN(y) = a*y + b per channel, and
  with a >= 0 (made so by flipping the sign of the preceding conv's output channel where the norm's
  scale is negative) ReLU(a*y + b) = a*(max(y, t) - t) with t = -b/a. So a norm layer costs one
  float32 statistics pass plus one ``max`` that writes straight into the next conv's padded input
  buffer; a and t go into that conv's weights (input channels scaled by a) and bias (the -a*t offset,
  cancelled inside the conv's float32 accumulator). A conv followed by a norm needs no bias of its own
  (the norm subtracts the mean), and the residual stream is kept as s*(r_ - o) so its norms fold the
  same way. Before: batch-norm + ReLU + pad = five memory passes per layer.
* **Upsampling without the upsampled tensor** (sub-pixel convolution, Shi et al. 2016): nearest x2
  upsampling then a 3x3 conv equals, for each of the 4 output phases, a 2x2 conv on the
  *low-resolution* input; all four are one 2x2 conv with 4x the output channels, each phase read at
  its own one-pixel offset. The 4x larger tensor is never built, the convolution gets AMX-friendly
  channel counts and does 4/9 of the multiply-adds of the 3x3 form (~5% of the whole pass at
  1024x1024). Reflection padding of the upsampled image is replication padding of the low-resolution
  one.
* **The 9x9 output conv in space-to-depth form**: with only 3 output channels it is oneDNN's slowest
  layer (~20 GMAC/s); on the 2x2 space-to-depth tensor it is a 5x5 conv with 4x the channels in and
  out (~3x faster). The last upsampling already produces that layout, so it costs no copy.
* **Optional fixed normalisation statistics**, so tiles of a large image can be normalised with the
  statistics of the whole image (see fastnst.infer.stylizer).

The pad-to-a-multiple-of-4 rule (fastnst.nets.geometry), reflection padding and layer order are the
original's; a dilated residual block (TransformerConfig.residual_dilations) reads buffers padded by
its dilation. FusedNet is a plain class, not an nn.Module: its tensors are prepared for one device and
dtype at construction (build another FusedNet for another device), and it has nothing to train.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from fastnst.nets.geometry import pad_to_multiple_of_4
from fastnst.nets.transform_net import TransformNet, unwrap

CHANNELS_LAST = torch.channels_last


@dataclass
class NormStats:
    """Per-layer instance-norm statistics (float32 mean and biased variance, one pair per norm layer).

    Recorded from one image with ``FusedNet.record_stats``; passed back to normalise other
    images (tiles) with them instead of their own.
    """

    layers: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)

    def to(self, device: torch.device | str) -> "NormStats":
        return NormStats([(m.to(device), v.to(device)) for m, v in self.layers])


class _NormContext:
    """Per-call bookkeeping: which norm layer is next, and where statistics come from / go to."""

    def __init__(self, given: NormStats | None, record: NormStats | None, momentum: float | None = None) -> None:
        self.given, self.record, self.index = given, record, 0
        self.momentum = momentum  # set: blend the given statistics with the image's own (see FusedNet.smoothed)

    def next_given(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        if self.given is None:
            return None
        if self.index >= len(self.given.layers):
            raise ValueError("NormStats has fewer layers than the network")
        return self.given.layers[self.index]


@dataclass(frozen=True)
class _Norm:
    weight: torch.Tensor  # float32 affine parameters
    bias: torch.Tensor
    eps: float


# ----------------------------------------------------------------------------------------------
# Weight rewrites (done once, in float32)
# ----------------------------------------------------------------------------------------------


def upsample_conv_as_phase_conv(weight: torch.Tensor, bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest x2 upsampling + 3x3 conv  ==  2x2 conv on the low-res input (replicate-padded by 1)
    with 4*Cout outputs, phase-major: output pixel ``(2i+a, 2j+b)``, channel ``c`` is channel
    ``(a*2 + b)*Cout + c`` of the 2x2 conv's output at ``(i+a, j+b)``.

    Output row 2i+a reads upsampled rows 2i+a-1 .. 2i+a+1, i.e. low-res rows i + floor((a+u-1)/2) for
    kernel row u: only two low-res rows (i-1+a and i+a), so kernel taps that land on the same row are
    summed into a 2x2 kernel. One 2x2 conv on the padded (h+2, w+2) input gives every phase, each
    shifted by its own (a, b): 4/9 of the multiply-adds of the 3x3 form.
    """
    cout, cin = weight.shape[:2]
    out = weight.new_zeros(2, 2, cout, cin, 2, 2)
    for a in range(2):
        for u in range(3):
            r = (a + u - 1) // 2 + 1 - a  # low-res row i-1+a+r
            for b in range(2):
                for v in range(3):
                    c = (b + v - 1) // 2 + 1 - b
                    out[a, b, :, :, r, c] += weight[:, :, u, v]
    return out.reshape(4 * cout, cin, 2, 2), bias.repeat(4)


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


def conv_as_space_to_depth_conv(weight: torch.Tensor, bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A KxK stride-1 conv  ==  a ceil(K/2)-square conv on the 2x2 space-to-depth input, phase-major
    in and out (input channel ``(p*2+q)*Cin + c``, output channel ``(a*2+b)*Cout + o``).

    Output pixel (2i+a, 2j+b) = sum_u,v w[u,v] x[2i+a+u, 2j+b+v]; input row 2i+a+u is block i+di,
    phase p with u = 2*di + p - a.
    """
    cout, cin, k, _ = weight.shape
    kb = (k + 1) // 2 + (1 if k % 2 == 0 else 0)
    out = weight.new_zeros(2, 2, cout, 2, 2, cin, kb, kb)
    for a in range(2):
        for b in range(2):
            for p in range(2):
                for q in range(2):
                    for di in range(kb):
                        u = 2 * di + p - a
                        if not 0 <= u < k:
                            continue
                        for dj in range(kb):
                            v = 2 * dj + q - b
                            if 0 <= v < k:
                                out[a, b, :, p, q, :, di, dj] = weight[:, :, u, v]
    return out.reshape(4 * cout, 4 * cin, kb, kb), bias.repeat(4)


# ----------------------------------------------------------------------------------------------
# Padding helpers: write the interior, then fill only the border
# ----------------------------------------------------------------------------------------------


def _empty_padded(n: int, c: int, h: int, w: int, pad: int, like: torch.Tensor | None = None,
                  dtype: torch.dtype | None = None) -> torch.Tensor:
    """An uninitialised channels-last buffer for an (h, w) map with ``pad`` border, of ``like``'s dtype
    and device unless ``dtype`` is given (CPU without ``like``)."""
    return torch.empty(n, c, h + 2 * pad, w + 2 * pad, dtype=dtype or like.dtype, device=None if like is None else like.device,
                       memory_format=CHANNELS_LAST)


def _interior(buf: torch.Tensor, pad: int) -> torch.Tensor:
    return buf[:, :, pad:-pad, pad:-pad]


def _fill_reflect_border_(buf: torch.Tensor, pad: int) -> torch.Tensor:
    """Fill the ``pad``-wide border of ``buf`` as F.pad(interior, mode="reflect") would."""
    h, w = buf.shape[-2:]
    for i in range(pad):
        buf[:, :, pad - 1 - i, pad : w - pad] = buf[:, :, pad + 1 + i, pad : w - pad]
        buf[:, :, h - pad + i, pad : w - pad] = buf[:, :, h - pad - 2 - i, pad : w - pad]
    for i in range(pad):
        buf[:, :, :, pad - 1 - i] = buf[:, :, :, pad + 1 + i]
        buf[:, :, :, w - pad + i] = buf[:, :, :, w - pad - 2 - i]
    return buf


def _fill_replicate_border_(buf: torch.Tensor, pad: int) -> torch.Tensor:
    h, w = buf.shape[-2:]
    for i in range(pad):
        buf[:, :, i, pad : w - pad] = buf[:, :, pad, pad : w - pad]
        buf[:, :, h - 1 - i, pad : w - pad] = buf[:, :, h - pad - 1, pad : w - pad]
    for i in range(pad):
        buf[:, :, :, i] = buf[:, :, :, pad]
        buf[:, :, :, w - 1 - i] = buf[:, :, :, w - pad - 1]
    return buf


def _reflect_index(r: int, size: int) -> int:
    if r < 0:
        r = -r
    if r > size - 1:
        r = 2 * (size - 1) - r
    return r


def _fill_phase_reflect_border_(buf: torch.Tensor, channels: int) -> torch.Tensor:
    """Reflection padding by 4 full-resolution pixels, done on the 2x2 space-to-depth (phase-major)
    tensor padded by 2 blocks: border block I, phase p holds full-res row reflect(2*I + p - 4)."""
    hb, wb = buf.shape[-2] - 4, buf.shape[-1] - 4  # interior size in blocks
    c = channels

    def chans(p: int, q: int) -> slice:
        return slice((p * 2 + q) * c, (p * 2 + q + 1) * c)

    for block in (0, 1, hb + 2, hb + 3):
        for p in range(2):
            src = _reflect_index(2 * block + p - 4, 2 * hb)
            for q in range(2):
                buf[:, chans(p, q), block, 2 : wb + 2] = buf[:, chans(src % 2, q), src // 2 + 2, 2 : wb + 2]
    for block in (0, 1, wb + 2, wb + 3):
        for q in range(2):
            src = _reflect_index(2 * block + q - 4, 2 * wb)
            for p in range(2):
                buf[:, chans(p, q), :, block] = buf[:, chans(p, src % 2), :, src // 2 + 2]
    return buf


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


class FusedNet:
    """Inference-only TransformNet: same output, in ``dtype`` (bf16 on AMX CPUs / GPUs, or float32).

    Built from a trained TransformNet's named parts; holds plain tensors on ``device`` (call it like
    a module: ``FusedNet(net)(x)``).
    """

    def __init__(self, net: TransformNet, dtype: torch.dtype = torch.bfloat16, device: torch.device | str | None = None) -> None:
        net = unwrap(net)
        if not isinstance(net, TransformNet):
            raise TypeError(f"expected a TransformNet, got {type(net).__name__}")
        self.config = net.config
        self.dtype = dtype
        self.device = torch.device(device) if device is not None else next(net.parameters()).device
        dev, f32 = self.device, torch.float32

        def take(conv: nn.Conv2d, norm: nn.InstanceNorm2d) -> tuple[torch.Tensor, _Norm]:
            """A conv followed by an instance norm: drop the conv bias (the norm subtracts the mean,
            so it has no effect) and make the norm's scale non-negative by flipping the sign of the
            conv's output channel instead (IN(-x) with -gamma == IN(x) with gamma). With gamma >= 0,
            ReLU(a*x + b) with a >= 0 is a*(max(x, t) - t), t = -b/a: a per-channel maximum, with a
            and t folded into the next convolution. A channel with gamma == 0 is a constant: its
            weights are zeroed so it stays 0 (and a = 0 drops it from the next conv)."""
            gamma = norm.weight.detach().to(dev, f32)
            sign = torch.where(gamma < 0, -1.0, 1.0) * (gamma != 0)
            weight = conv.weight.detach().to(dev, f32) * sign.view(-1, 1, 1, 1)
            return weight, _Norm(gamma.abs(), norm.bias.detach().to(dev, f32).clone(), norm.eps)

        with torch.no_grad():
            if net.encoder[0].conv.kernel_size != (9, 9) or net.output_layer.conv.kernel_size != (9, 9):
                raise ValueError("FusedNet expects 9x9 first and last convolutions (johnson2016)")
            self.encoder = []
            for block in net.encoder:  # ConvNormReLU
                w, n = take(block.conv, block.norm)
                self.encoder.append((_Weight.of(w), n, block.conv.stride[0]))
            # The first conv sees the image itself: its weights never change.
            self.first_weight = self.encoder[0][0].weight.to(dtype).contiguous(memory_format=CHANNELS_LAST)
            self.residuals = []
            for r in net.residuals:
                wa, na = take(r.first.conv, r.first.norm)
                wb, nb = take(r.second_conv, r.second_norm)
                self.residuals.append((_Weight.of(wa), na, _Weight.of(wb), nb, r.dilation))
            self.upsamplers = []
            for up in net.upsamplers:
                w, n = take(up.layer.conv, up.layer.norm)
                w, _ = upsample_conv_as_phase_conv(w, torch.zeros(w.shape[0], device=dev))
                self.upsamplers.append((_Weight.of(w), n, up.layer.conv.out_channels))
            last = net.output_layer.conv
            w, b = conv_as_space_to_depth_conv(last.weight.detach().to(dev, f32), last.bias.detach().to(dev, f32))
            self.output_weight, self.output_bias = _Weight.of(w), b
            self.output_channels = last.out_channels
        self.num_norm_layers = len(self.encoder) + 2 * len(self.residuals) + len(self.upsamplers)

    # -- public API --------------------------------------------------------------------------

    def __call__(self, x: torch.Tensor, stats: NormStats | None = None) -> torch.Tensor:
        return self.forward(x, stats)

    @torch.inference_mode()
    def forward(self, x: torch.Tensor, stats: NormStats | None = None) -> torch.Tensor:
        """(N, 3, H, W) float image in [0, 1] -> (N, 3, H, W) float32 stylized image (not clamped).

        With ``stats``, every image is normalised with those statistics instead of its own.
        """
        return self._run(x, stats, None)

    @torch.inference_mode()
    def record_stats(self, x: torch.Tensor) -> tuple[torch.Tensor, NormStats]:
        """Stylize one image (1, 3, H, W) and return its output and its instance-norm statistics."""
        if x.shape[0] != 1:
            raise ValueError("record_stats takes a single image (batch of one)")
        record = NormStats()
        return self._run(x, None, record), record

    @torch.inference_mode()
    def smoothed(self, x: torch.Tensor, running: NormStats | None, momentum: float) -> tuple[torch.Tensor, NormStats]:
        """Stylize one video frame (1, 3, H, W) with statistics smoothed over time.

        Each norm layer uses ``momentum * running + (1 - momentum) * own`` (own: this frame's
        statistics at that layer, given the smoothed layers before it), in the same single pass.
        Returns the output and the statistics used, the ``running`` of the next frame; with
        ``running=None`` (the first frame, or after a scene cut) the frame's own statistics.
        """
        if x.shape[0] != 1:
            raise ValueError("smoothed takes a single frame (batch of one)")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
        record = NormStats()
        if running is None:
            return self._run(x, None, record), record
        return self._run(x, running, record, momentum), record

    # -- internals ---------------------------------------------------------------------------

    def _run(self, x: torch.Tensor, stats: NormStats | None, record: NormStats | None, momentum: float | None = None
             ) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected a (N, 3, H, W) image batch, got shape {tuple(x.shape)}")
        h, w = x.shape[-2:]
        x = pad_to_multiple_of_4(x.to(self.device, torch.float32), self.config.min_side)
        outs = []
        for i in range(x.shape[0]):  # instance norm is per image: one image at a time
            xi = F.pad(x[i : i + 1], (4, 4, 4, 4), mode="reflect")  # the first 9x9 conv's padding
            xi = xi.to(self.dtype).contiguous(memory_format=CHANNELS_LAST)
            outs.append(self._core(xi, _NormContext(stats, record, momentum)))
        y = outs[0] if len(outs) == 1 else torch.cat(outs)
        return y[..., :h, :w].contiguous()

    def _affine(self, x: torch.Tensor, norm: _Norm, ctx: _NormContext, phase_channels: int = 0
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Scale a >= 0 and shift b (float32, per channel) with IN(x) == a*x + b; with ``phase_channels``
        x is a 2x2 phase conv's output and the statistics pool its 4 phases."""
        given = ctx.next_given()
        ctx.index += 1
        if given is not None and ctx.momentum is not None:
            own_mean, own_var = _phase_stats(x, phase_channels) if phase_channels else _channel_stats(x)
            m = ctx.momentum
            mean, var = torch.lerp(own_mean, given[0], m), torch.lerp(own_var, given[1], m)
            ctx.record.layers.append((mean, var))
        elif given is not None:
            mean, var = given
        else:
            mean, var = _phase_stats(x, phase_channels) if phase_channels else _channel_stats(x)
            if ctx.record is not None:
                ctx.record.layers.append((mean, var))
        a = norm.weight * torch.rsqrt(var + norm.eps)
        return a, norm.bias - mean * a

    def _core(self, x: torch.Tensor, ctx: _NormContext) -> torch.Tensor:
        dt = self.dtype
        # Every ReLU(IN(y)) is kept as v = max(y, t) with ReLU(IN(y)) == a*(v - t), a >= 0: the
        # per-channel a and t are folded into the next conv (see _fold), so instance norm costs one
        # statistics pass plus this single write, which also fills the next conv's padded buffer.
        # x is already reflect-padded by 4 for the first 9x9 conv (whose bias the norm cancels).
        y = F.conv2d(x, self.first_weight)
        a = t = None
        # Each padded buffer is padded as its reader needs: 1 for the encoder's convs, the block's
        # dilation for a residual block's convs, 1 (replicated) for the first upsampling conv.
        pads = [d for _, _, _, _, d in self.residuals] + [1]
        for i, (weight, norm, stride) in enumerate(self.encoder):
            if i > 0:
                w, bias = _fold(weight, a, t, dt)
                y = F.conv2d(x, w, bias, stride=stride)
            a, b = self._affine(y, norm, ctx)
            t = self._threshold(a, b)
            x = self._max_into_padded(y, t, 1 if i < len(self.encoder) - 1 else pads[0], "reflect")
        # Residual stream r == s*(r_ - o) per channel, stored as r_ (reflect-padded by pads[i]).
        s = torch.where(a > 0, a, 1.0)
        o = t.clone()
        r_ = x
        last = len(self.residuals) - 1
        for i, (wa, na, wb, nb, d) in enumerate(self.residuals):
            y = F.conv2d(r_, *_fold(wa, s, o, dt), dilation=d)
            a, b = self._affine(y, na, ctx)
            t = self._threshold(a, b)
            v = self._max_into_padded(y, t, d, "reflect")
            y = F.conv2d(v, *_fold(wb, a, t, dt), dilation=d)
            a, b = self._affine(y, nb, ctx)
            n, c, h, w = y.shape
            nxt = _empty_padded(n, c, h, w, pads[i + 1], y)
            # r += a*y + b  <=>  r_ += (a/s)*y and o -= b/s
            torch.addcmul(_interior(r_, d), y, (a / s).view(1, -1, 1, 1).to(dt), out=_interior(nxt, pads[i + 1]))
            o = o - b / s
            r_ = _fill_replicate_border_(nxt, 1) if i == last else _fill_reflect_border_(nxt, pads[i + 1])
        if not self.residuals:
            r_ = _fill_replicate_border_(r_, 1)
        # Upsampling convs in sub-pixel form: reflect-padding the upsampled image == replicate-padding
        # this one. Their outputs are phase-major: statistics pool the 4 phases of each channel.
        (w1, n1, c1), (w2, n2, c2) = self.upsamplers
        h, w = r_.shape[-2] - 2, r_.shape[-1] - 2
        y = F.conv2d(r_, *_fold(w1, s, o, dt))  # (1, 4*c1, h+1, w+1), phase (a, b) at offset (a, b)
        phases = [_phase(y, c1, a_, b_, h, w) for a_ in range(2) for b_ in range(2)]
        a, b = self._affine(y, n1, ctx, phase_channels=c1)
        t = self._threshold(a, b)
        z = _empty_padded(1, c1, 2 * h, 2 * w, 1, y)
        # Depth-to-space fused with the maximum, straight into the padded input of the next conv.
        zi, tt = _interior(z, 1), t.to(dt).view(1, -1, 1, 1)
        for k, src in enumerate(phases):
            torch.maximum(src, tt, out=zi[:, :, k // 2 :: 2, k % 2 :: 2])
        z = _fill_replicate_border_(z, 1)
        y = F.conv2d(z, *_fold(w2, a, t, dt))  # (1, 4*c2, 2h+1, 2w+1)
        h, w = 2 * h, 2 * w  # the full-res activation is kept space-to-depth: (1, 4*c2, h, w) blocks
        phases = [_phase(y, c2, a_, b_, h, w) for a_ in range(2) for b_ in range(2)]
        a, b = self._affine(y, n2, ctx, phase_channels=c2)
        t = self._threshold(a, b)
        q = _empty_padded(1, 4 * c2, h, w, 2, y)  # reflect pad by 4 full-res px == 2 blocks
        qi, tt = _interior(q, 2), t.to(dt).view(1, -1, 1, 1)
        for k, src in enumerate(phases):
            torch.maximum(src, tt, out=qi[:, k * c2 : (k + 1) * c2])
        q = _fill_phase_reflect_border_(q, c2)
        # The output conv is not followed by a norm: undo the bias's bf16 rounding in float32.
        a4, t4 = a.repeat(4), t.repeat(4)
        wo, bias = _fold(self.output_weight, a4, t4, dt)
        b_eff = torch.where(a > 0, b, b.clamp_min(0))  # == -a*t, or ReLU(b) for a constant channel (a == 0)
        exact = self.output_weight.tap_sum @ b_eff.repeat(4)
        o = F.conv2d(q, wo, bias)  # (1, 4*3, h, w)
        correction = self.output_bias + exact - bias.float()
        k = self.output_channels
        o = o.permute(0, 2, 3, 1).float().add_(correction)
        return o.reshape(1, h, w, 2, 2, k).permute(0, 5, 1, 3, 2, 4).reshape(1, k, 2 * h, 2 * w)

    @staticmethod
    def _threshold(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """t with ReLU(a*y + b) == a*(max(y, t) - t) for a >= 0 (a == 0 only for constant-0 channels)."""
        positive = a > 0
        return torch.where(positive, -b / torch.where(positive, a, 1.0), 0.0)

    def _max_into_padded(self, x: torch.Tensor, t: torch.Tensor, pad: int, mode: str) -> torch.Tensor:
        n, c, h, w = x.shape
        buf = _empty_padded(n, c, h, w, pad, x)
        torch.maximum(x, t.to(self.dtype).view(1, -1, 1, 1), out=_interior(buf, pad))
        return _fill_reflect_border_(buf, pad) if mode == "reflect" else _fill_replicate_border_(buf, pad)
