"""An int8 inference rewrite of TransformNet for CPUs with integer dot-product units (VNNI / AMX-int8).

``Int8Net(net)`` computes the same function as the float32 network to 36-46 dB PSNR on real photos
with the shipped models (scripts/int8_quality.py is the guard) at ~1.5x the speed of the bf16 fused path
on a 2-core AMD EPYC (Zen 4, AVX-512 VNNI), because oneDNN's u8 x s8
convolutions (``torch.ops.onednn.qconv2d_pointwise``, the kernels behind PyTorch's x86 quantization
backend) run ~2x the multiply-adds per second of bf16 there.

Quantization, with no calibration set:

* **Weights**: symmetric int8, one scale per output channel. Every conv but the first (which reads the
  image) has its input's per-channel scale folded into its float32 weights per image, then quantized
  and packed (~0.1-0.3 ms a layer); the first is packed at load.
* **Activations**: unsigned 8-bit, one scale per channel from the image itself. Every activation that
  feeds a conv is ReLU(IN(y)) = ReLU(a*y + b), a and b from the instance-norm statistics (the one
  statistics pass the fused path does anyway). The sign of each conv output channel whose norm scale
  is negative is flipped at load (IN(-y) with -gamma == IN(y) with gamma), so a >= 0 and the channel's
  largest value is a*max(y) + b: one max pass gives a range with nothing clipped. Fixed ranges from
  the norms' affine parameters (beta + K*|gamma|) were tried first: instance norm lets a few strong
  features reach 20 standard deviations in the last blocks, so any K either clipped them or wasted
  levels (31-41 dB). The residual stream (no ReLU) has a range and a zero point per channel, from
  the pass that writes it; the zero points become the reading conv's bias.
* **One conv stays float** (bf16 with bf16 units, else float32): the second, which reads the first layer's
  full-resolution activations, the tensor where 8 bits lose most (3% of the multiply-adds).
* **Conv outputs** are bf16 wherever oneDNN writes bf16 fast (every AVX-512 CPU), else float32: only their
  statistics matter, and the passes after each conv then read half the bytes.
* **The image** is 8-bit already: the first convolution takes it as u8 with scale 1/255 (exact for
  8-bit sources; higher bit depths are rounded to 8 bits), and the last writes float32, from which the
  PIL path rounds straight to u8.

Everything between the convolutions is two memory passes per layer (fastnst.infer.backends.native: native
code built on first use, else eager torch): the statistics, then one pass that applies the per-channel
affine + ReLU, rounds to u8 and writes the next conv's whole padded buffer, border and depth-to-space
of the sub-pixel upsampling included (the residual additions are one pass too).

The layer rewrites and the sign flips are the inference plan's (fastnst.infer.plan), shared with the
fused float path: nearest-upsample + 3x3 conv as a 2x2 sub-pixel conv on the low-resolution input, the
9x9 output conv as a 5x5 conv on the space-to-depth tensor; the same optional fixed normalisation
statistics serve tiling, and smoothed statistics serve video. Dilated residual blocks pass their
dilation to oneDNN and read u8 buffers reflect-padded by it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from functools import partial

import torch
import torch.nn.functional as F

from fastnst.cpu_features import Int8Variant, int8_variant
from fastnst.infer.backends.base import Backend, NormContext, NormStats, as_plan
from fastnst.infer.backends.buffers import CHANNELS_LAST, BufferPool, fill_reflect_border_
from fastnst.infer.backends.native import NativeOps, TorchOps, index_map, load_ops
from fastnst.infer.plan import Buffer, Conv, NetworkPlan, Norm, NormReLU, PhaseConv, ResidualAdd, SpaceToDepthConv
from fastnst.nets.geometry import pad_to_multiple_of_4, padding
from fastnst.nets.transform_net import TransformNet, unwrap
from fastnst.runtime import cpu_supports_int8

__all__ = ["AUTO_MIN_PSNR", "GUARD_MIN_PSNR", "Int8Net", "guard_image", "guard_psnr", "int8_supported"]


def int8_supported() -> bool:
    """True where int8 is a real speed-up (see fastnst.runtime.cpu_supports_int8)."""
    return cpu_supports_int8()


# ----------------------------------------------------------------------------------------------
# Elementwise passes (fastnst.infer.backends.native)
# ----------------------------------------------------------------------------------------------

Ops = NativeOps | TorchOps


def _quant_padded(ops: Ops, y: torch.Tensor, m: torch.Tensor, z: torch.Tensor, out: Buffer, phase_channels: int,
                  dtype: torch.dtype, alloc: Callable[..., torch.Tensor]) -> torch.Tensor:
    """round(clamp(m*y + z, 0, 255)) per channel as u8 (or ReLU(m*y + z) as bf16), written into the
    padded buffer ``out`` describes in the same pass: ReLU(IN(y)) (z < 0 where the ReLU cuts) or the
    residual stream with its zero point. A phase conv's output (``phase_channels``) is put in place
    at full resolution (depth-to-space) or kept in 2x2 blocks (space-to-depth). ``alloc(n, c, h, w,
    pad, dtype)`` gives the buffer."""
    _, c, h, w = y.shape
    if out.layout == "plain":
        buf = alloc(1, c, h, w, out.pad, dtype)
        maps = (index_map(n + 2 * out.pad, out.pad, n, out.mode) for n in (h, w))
        return ops.remap(y, m, z, buf, *maps)
    h, w = h - 1, w - 1  # the low-resolution size of the phase conv's input
    if out.layout == "depth_to_space":
        buf = alloc(1, phase_channels, 2 * h, 2 * w, out.pad, dtype)
        maps = (index_map(2 * n + 2 * out.pad, out.pad, 2 * n, out.mode, phased=True) for n in (h, w))
        return ops.remap(y, m, z, buf, *maps, phased=True)
    # 2x2 blocks (phase-major channels), padded by out.pad blocks == 2 * out.pad full-resolution pixels
    buf = alloc(1, 4 * phase_channels, h, w, out.pad, dtype)
    maps = (index_map(2 * (n + 2 * out.pad), 2 * out.pad, 2 * n, out.mode, phased=True) for n in (h, w))
    return ops.remap(y, m, z, buf, *maps, block=2, phased=True)


# ----------------------------------------------------------------------------------------------
# Quantized convolutions
# ----------------------------------------------------------------------------------------------


def _pack(q: torch.Tensor, scale: torch.Tensor, stride: int, dilation: int = 1) -> torch.Tensor:
    """oneDNN's packed form of an int8 weight."""
    # The activation scale given here is only a hint for oneDNN; each call passes the real one.
    return torch.ops.onednn.qconv_prepack(q, scale, 1.0, 0, [stride, stride], [0, 0], [dilation, dilation], 1, None)


class _QConv:
    """A convolution with int8 weights (per-output-channel scales) for oneDNN's u8 x s8 kernels.

    With ``per_image=True`` the u8 input has a scale per channel that changes per image: it is folded
    into the float32 weights before they are quantized and packed (~0.1-0.3 ms per layer), so the conv
    itself sees one scale. Otherwise the weights are packed once here. A per-channel zero point
    (``in_zero``, the residual stream's) becomes a bias: oneDNN takes one zero point per tensor.
    ``pair_bound``: quantize so that |q| of input channels 2k and 2k+1 at a tap sum to at most 128 (CPUs
    without VNNI, where a u8 x s8 pair is summed in 16 bits: 255 * 128 fits).
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None, stride: int = 1,
                 per_image: bool = False, dilation: int = 1, pair_bound: bool = False) -> None:
        self.weight = weight.detach().float().cpu().contiguous()
        self.bias = None if bias is None else bias.detach().float().cpu().contiguous()
        self.stride = stride
        self.dilation = dilation
        self.pair_bound = pair_bound
        self.w_zero = torch.zeros(self.weight.shape[0], dtype=torch.int64)
        if per_image:
            self.packed = None
        else:
            q, w_scale, _ = TorchOps.quantize_weight(self.weight, pair_bound=pair_bound)
            self.packed = _pack(q, w_scale, stride, dilation), w_scale

    def __call__(self, ops: Ops, x: torch.Tensor, x_scale: float, x_zero: int, out_dtype: torch.dtype,
                 in_scale: torch.Tensor | None = None, in_zero: torch.Tensor | None = None) -> torch.Tensor:
        """``in_scale`` (per input channel, with x_scale 1): folded into the weights for this call;
        ``in_zero`` (per input channel, with x_zero 0): each channel's u8 zero point."""
        s, d = self.stride, self.dilation
        bias = self.bias
        if in_scale is None:
            packed, w_scale = self.packed
        else:
            q, w_scale, shift = ops.quantize_weight(self.weight, in_scale, in_zero, pair_bound=self.pair_bound)
            packed = _pack(q, w_scale, s, d)
            if shift is not None:  # sum over c, taps of w[o, c] * (u - z_c): subtract the z_c part
                bias = -shift if bias is None else bias - shift
        return torch.ops.onednn.qconv2d_pointwise(
            x, x_scale, x_zero, packed, w_scale, self.w_zero, bias,
            [s, s], [0, 0], [d, d], 1, 1.0, 0, out_dtype, "none", [], "")


class _FloatConv:
    """A convolution kept in float (bf16, or float32 without bf16 units): it reads ReLU(IN(y)) in that
    dtype, not a u8 copy (called as _QConv is)."""

    def __init__(self, weight: torch.Tensor, stride: int, dtype: torch.dtype = torch.bfloat16) -> None:
        self.weight = weight.to(dtype).contiguous(memory_format=CHANNELS_LAST)
        self.stride = stride

    def __call__(self, ops: Ops, x: torch.Tensor, x_scale: float, x_zero: int, out_dtype: torch.dtype,
                 in_scale: torch.Tensor | None = None, in_zero: torch.Tensor | None = None) -> torch.Tensor:
        return F.conv2d(x, self.weight, stride=self.stride)


# ----------------------------------------------------------------------------------------------
# The network
# ----------------------------------------------------------------------------------------------


class Int8Net(Backend):
    """Inference-only TransformNet in int8 on the CPU: called like fastnst.infer.backends.fused.FusedNet
    (``Int8Net(net)(x, stats=None)``, ``record_stats``, ``smoothed``), plus ``stylize_u8`` for 8-bit
    images."""

    def __init__(self, net: TransformNet | NetworkPlan, out_dtype: torch.dtype | None = None,
                 variant: Int8Variant | None = None) -> None:
        """``variant`` (fastnst.cpu_features.Int8Variant; default: this CPU's, as capped): the float
        layers' dtype and whether weights are bounded per input-channel pair. ``out_dtype`` overrides the
        variant's float dtype."""
        plan = as_plan(net)
        if not hasattr(torch.ops.onednn, "qconv2d_pointwise"):
            raise RuntimeError("int8 inference needs PyTorch's oneDNN quantized convolution (x86 CPU build)")
        self.plan = plan.to("cpu")
        self.dtype = torch.int8
        self.device = torch.device("cpu")
        variant = variant or int8_variant()
        if out_dtype is not None:
            name = str(out_dtype).removeprefix("torch.")
            variant = replace(variant, float_dtype=name, out_dtype=name)
        self.variant = variant
        # The float conv computes in bf16 only with bf16 units (emulated, bf16 is ~2x slower than float32).
        # The int8 convs write bf16 wherever oneDNN does that fast (AVX-512, bf16 units or not; not on AVX2,
        # where only its reference kernel does, 50-150x slower): only the statistics of those outputs matter.
        self.mid_dtype = getattr(torch, variant.out_dtype)  # the int8 convs' outputs, normalised next
        self.float_dtype = getattr(torch, variant.float_dtype)  # the float conv and the activation it reads
        # Without VNNI, oneDNN's u8 x s8 kernels add pairs of products (input channels 2k, 2k+1) in 16
        # bits: every conv's weights are then scaled so that no pair can saturate (Int8Variant.pair_bound).
        pairs = variant.pair_bound
        # The first conv reads the image (scale 1/255) and is packed once. Every other conv reads an
        # activation with per-channel scales from this image (a ReLU(IN(y)) or the residual stream),
        # folded into its weights per image. One stays float (bf16, or float32 without bf16 units): the
        # second, whose input, the first layer's full-resolution activations, is where 8 bits lose most.
        # Quantizing only that tensor (per channel, nothing clipped) costs ~5 dB on real photos (kandinsky
        # on scikit-image's rocket: 36 dB alone, 32 dB for the whole int8 network; bf16 here: +4-5 dB),
        # for 3% of the multiply-adds.
        self.convs: list[_QConv | _FloatConv | None] = []  # per step
        for step in self.plan.steps:
            if isinstance(step, Conv) and step.reads == "image":
                conv = _QConv(step.weight, stride=step.stride, pair_bound=pairs)
            elif isinstance(step, Conv) and sum(c is not None for c in self.convs) == 1:  # the second conv
                conv = _FloatConv(step.weight, step.stride, self.float_dtype)
            elif isinstance(step, Conv):
                conv = _QConv(step.weight, stride=step.stride, per_image=True, dilation=step.dilation, pair_bound=pairs)
            elif isinstance(step, PhaseConv):
                conv = _QConv(step.weight, per_image=True, pair_bound=pairs)
            elif isinstance(step, SpaceToDepthConv):
                conv = _QConv(step.weight, step.bias, per_image=True, pair_bound=pairs)
            else:
                conv = None
            self.convs.append(conv)
        # A float conv takes the activation before it in its float dtype, every other conv as u8.
        self.float_reader = [isinstance(c, _FloatConv) for c in self.convs[1:]] + [False]
        self.buffers = BufferPool()  # the padded activations, kept for the next image of the same size

    @torch.inference_mode()
    def stylize_u8(self, image: torch.Tensor, stats: NormStats | None = None) -> torch.Tensor:
        """(H, W, 3) u8 image (PIL's layout, e.g. ``torch.from_numpy(np.asarray(pil))``) -> (H, W, 3)
        u8 stylized image: no float copy of the input or the output is made."""
        if image.dim() != 3 or image.shape[2] != 3 or image.dtype != torch.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 image, got {tuple(image.shape)} {image.dtype}")
        x = image.permute(2, 0, 1).unsqueeze(0)  # a channels_last view
        return self.execute(x, stats, None, to_u8=True)[0]

    # -- internals ---------------------------------------------------------------------------

    def execute(self, x: torch.Tensor, given: NormStats | None, record: NormStats | None, momentum: float | None = None,
                to_u8: bool = False) -> torch.Tensor:
        """(N, 3, H, W) float image in [0, 1] (or u8 in [0, 255]) -> (N, 3, H, W) float32 (not clamped),
        or with ``to_u8`` the (N, H, W, 3) u8 image."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected a (N, 3, H, W) image batch, got shape {tuple(x.shape)}")
        if x.device.type != "cpu":
            raise ValueError(f"int8 inference runs on the CPU; got a tensor on {x.device}")
        h, w = x.shape[-2:]
        scale = 1.0 if x.dtype == torch.uint8 else 255.0
        smallest = self.config.min_side
        if min(h, w) < smallest:  # too small to reflect-pad in place: pad a float copy first
            x, scale = pad_to_multiple_of_4(x.float() * (scale / 255.0), smallest), 255.0
        ops = load_ops()
        outs = []
        for i in range(x.shape[0]):  # instance norm is per image
            self.buffers.begin(tuple(x.shape[-2:]))
            q = self._image_buffer(ops, x[i : i + 1], scale, smallest, self.plan.image_pad, self.buffers)
            outs.append(self._core(ops, q, NormContext(given, record, momentum), h, w, to_u8))
        return outs[0] if len(outs) == 1 else torch.cat(outs)

    @staticmethod
    def _image_buffer(ops: Ops, x: torch.Tensor, scale: float, smallest: int, pad: int, pool: BufferPool) -> torch.Tensor:
        """The u8 input of the first conv: the image (rounded to 8 bits) padded at the bottom and right
        to a multiple of 4 (and at least ``smallest``) and then by ``pad`` on every side, all by
        reflection (as FusedNet)."""
        _, _, h, w = x.shape
        ph, pw = padding(h, w, smallest)
        buf = pool.empty_padded("image", 1, 3, h + ph, w + pw, pad, torch.uint8)
        inner = buf[:, :, pad : pad + h, pad : pad + w]
        if x.dtype == torch.uint8 and scale == 1.0:  # 8-bit already: a plain copy
            inner.copy_(x)
        else:
            x = x.float()
            ops.image_u8(x if x.stride(3) == 1 else x.contiguous(), scale, inner)
        for i in range(ph):  # reflect rows h, h+1, .. = rows h-2, h-3, ..
            buf[:, :, pad + h + i, pad : pad + w] = buf[:, :, pad + h - 2 - i, pad : pad + w]
        for i in range(pw):
            buf[:, :, pad : pad + h + ph, pad + w + i] = buf[:, :, pad : pad + h + ph, pad + w - 2 - i]
        return fill_reflect_border_(buf, pad)

    @staticmethod
    def _affine(ops: Ops, y: torch.Tensor, norm: Norm, ctx: NormContext, phase_channels: int = 0
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """a >= 0, b with IN(y) == a*y + b, and the per-channel scale of ReLU(a*y + b) as u8 (its
        maximum in this image / tile over 255: no clipping, all 8 bits for every channel)."""
        found = []

        def own() -> tuple[torch.Tensor, torch.Tensor]:
            mean, var, top = ops.stats(y, phase_channels)
            found.append(top)
            return mean, var

        mean, var = (t.cpu() for t in ctx.statistics(own))
        top = found[0] if found else ops.stats(y, moments=False)[2]
        a, b = norm.affine(mean, var)
        if phase_channels:
            top = top.view(4, phase_channels).amax(0)
        scale = (a * top + b).clamp_min(1e-6) / 255
        return a, b, scale

    def _core(self, ops: Ops, q: torch.Tensor, ctx: NormContext, h: int, w: int, to_u8: bool) -> torch.Tensor:
        mid = self.mid_dtype
        pool = self.buffers.empty_padded
        r = r_range = stream_out = None  # the residual stream (float32), its per-channel range, its readers' buffer
        q_scale = None  # the per-channel scales of q, the activation the next conv reads (None: bf16)
        for i, (step, conv, float_input) in enumerate(zip(self.plan.steps, self.convs, self.float_reader)):
            if isinstance(step, (Conv, PhaseConv)):
                if step.reads == "image":
                    y = conv(ops, q, 1 / 255, 0, mid)
                elif step.reads == "stream":
                    rs, rz = self._stream_quant(*r_range)
                    u = _quant_padded(ops, r, 1 / rs, rz, stream_out, 0, torch.uint8, partial(pool, i))
                    y = conv(ops, u, 1.0, 0, mid, in_scale=rs, in_zero=rz)
                else:
                    y = conv(ops, q, 1.0, 0, mid, in_scale=q_scale)
            elif isinstance(step, NormReLU):
                c = step.phase_channels
                a, b, s = self._affine(ops, y, step.norm, ctx, c)
                if step.opens_stream:
                    r = pool("stream", *y.shape, 0, torch.float32)
                    r_range, stream_out = ops.stream(None, y, a, b, r), step.writes
                elif float_input:  # ReLU(IN(y)) in the float conv's dtype
                    q, q_scale = _quant_padded(ops, y, a, b, step.writes, c, self.float_dtype, partial(pool, i)), None
                else:
                    q, q_scale = _quant_padded(ops, y, a / s, b / s, step.writes, c, torch.uint8, partial(pool, i)), s
            elif isinstance(step, ResidualAdd):
                a, b, _ = self._affine(ops, y, step.norm, ctx)
                r_range, stream_out = ops.stream(r, y, a, b, r), step.writes
            else:
                o = conv(ops, q, 1.0, 0, torch.float32, in_scale=q_scale.repeat(4))  # (1, 4*3, hb, wb), with the bias
                if to_u8:  # (H, W, 3) u8, PIL's layout: rounded and put in place (depth-to-space) in one pass
                    return ops.rgb_u8(o, h, w)
                return ops.rgb_f32(o, h, w)
        raise ValueError("the plan has no output step")

    @staticmethod
    def _stream_quant(lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel scale and zero point of the residual stream's u8 copy, from each channel's range
        in this image (or tile). The scale is folded into the reading conv's weights like any
        per-channel input scale, the zero point into its bias (_QConv). One range for the whole tensor
        gives the channels with a small spread few levels: with the kandinsky model, whose stream
        spans -34..47 in its last block, 31.7 dB on a real photo; 33.2 dB per channel."""
        lo, hi = lo.clamp(max=0.0), hi.clamp(min=0.0)
        scale = ((hi - lo) / 255).clamp_min(1e-6)
        return scale, torch.round(-lo / scale)


# ----------------------------------------------------------------------------------------------
# The quality guard used by precision="auto"
# ----------------------------------------------------------------------------------------------

# The quality floor of int8 output, in dB against the float32 network, that every shipped model keeps on
# every real photo (scripts/int8_quality.py checks it).
GUARD_MIN_PSNR = 35.0
# precision="auto" wants more on its single guard image: across the 35 colour photos of
# scripts/int8_quality.py a shipped model's worst photo lies 5-8 dB below its guard image (guard
# 43.8-46.1 dB, worst 36.2-40.9 dB), so 43 dB here keeps every photo above GUARD_MIN_PSNR (a 40 dB
# bar would let a model through whose worst photo is 8 dB lower). Random-weight networks (~38-40 dB) stay bf16.
AUTO_MIN_PSNR = 43.0
GUARD_SIZE = 192


def guard_image(size: int) -> torch.Tensor:
    """A real photo (scikit-image's astronaut, if installed) or else a synthetic one with flat areas,
    gradients and edges, (1, 3, size, size) in [0, 1] with 8-bit values."""
    from fastnst.assets import sample_image_paths

    paths = [p for p in sample_image_paths() if p.name == "astronaut.png"]
    if paths:
        from fastnst.imageio import load_image

        x = F.interpolate(load_image(paths[0]), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    else:
        g = torch.linspace(0, 1, size)
        yy, xx = torch.meshgrid(g, g, indexing="ij")
        disc = (((yy - 0.6) ** 2 + (xx - 0.4) ** 2) < 0.05).float()
        x = torch.stack([0.2 + 0.6 * yy, 0.5 + 0.3 * torch.sin(12 * xx) * disc, 0.8 - 0.5 * xx * (1 - disc)])[None]
    return (x.clamp(0, 1) * 255).round() / 255


def guard_psnr(net: TransformNet, int8: Int8Net | None = None, size: int = GUARD_SIZE) -> float:
    """PSNR (dB) of the int8 network against the float32 one on a guard image: the check behind
    ``precision="auto"`` choosing int8 for this model."""
    net = unwrap(net)
    x = guard_image(size)
    with torch.inference_mode():
        ref = net.float().cpu()(x).clamp(0, 1)
    got = (int8 or Int8Net(net))(x).clamp(0, 1)
    mse = float(((got.double() - ref.double()) ** 2).mean())
    return float("inf") if mse == 0 else 10 * math.log10(1 / mse)
