"""An int8 inference rewrite of TransformNet for CPUs with integer dot-product units (VNNI / AMX-int8).

``Int8TransformNet(net)`` computes the same function as the float32 network to ~40 dB PSNR on trained
models (see scripts/int8_quality.py for the guard over the shipped models) at up to twice the speed of
the bf16 fused path, because oneDNN's u8 x s8 convolutions (``torch.ops.onednn.qconv2d_pointwise``,
the kernels behind PyTorch's x86 quantization backend) run ~2x the multiply-adds per second of bf16 on
AVX-512 VNNI.

Quantization, with no calibration set:

* **Weights**: symmetric int8, one scale per output channel, quantized and packed once at load.
* **Activations**: unsigned 8-bit, one scale per tensor, fixed by the network itself. Every activation
  that feeds a convolution is ReLU(IN(y)) = ReLU(gamma*z + beta) with z the per-channel standardised
  conv output, so channel c lies in [0, beta_c + K*|gamma_c|] except for values beyond K standard
  deviations (clipped). The per-tensor scale is max_c(beta_c + K*|gamma_c|) / 255. The per-image
  instance-norm statistics (mean, var; the one statistics pass the fused path already does) only enter
  the per-channel affine a*y + b that is applied while quantizing; the residual stream's range is
  bounded the same way (it adds one normalised tensor per block).
* **The image** is 8-bit already: the first convolution takes it as u8 with scale 1/255 (exact for
  8-bit sources; higher bit depths are rounded to 8 bits), and the last writes float32, from which the
  PIL path rounds straight to u8.

Everything between the convolutions (per-channel affine + ReLU + rounding to u8 + reflection padding,
the residual additions, depth-to-space of the sub-pixel upsampling) is one memory pass per layer,
written as small functions compiled by ``torch.compile`` (inductor's C++ backend) on first use;
where compilation is unavailable they run eagerly (same results, several times slower).

The layer rewrites are the fused bf16 path's (fastnst.fastnet): nearest-upsample + 3x3 conv as a 2x2
sub-pixel conv on the low-resolution input, the 9x9 output conv as a 5x5 conv on the space-to-depth
tensor, and the same optional fixed normalisation statistics for tiling.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from fastnst.fastnet import (
    NormStats,
    _channel_stats,
    _NormContext,
    _phase_stats,
    conv_as_space_to_depth_conv,
    pad_to_multiple_of_4,
    upsample_conv_as_phase_conv,
)
from fastnst.transformer import TransformNet

__all__ = ["CLIP_SIGMAS", "Int8TransformNet", "int8_supported"]

CHANNELS_LAST = torch.channels_last
# Activations are clipped at beta + CLIP_SIGMAS * |gamma| (CLIP_SIGMAS standard deviations of the
# normalised conv output above its mean). Chosen with scripts/int8_quality.py: larger wastes levels on
# the range, smaller clips the sparse strong features instructive for the style.
CLIP_SIGMAS = 12.0
RESIDUAL_SIGMAS = 8.0


def int8_supported() -> bool:
    """True when this CPU has integer dot-product units (AVX-512 VNNI, AVX-VNNI or AMX-int8) and
    PyTorch has the oneDNN quantized convolution: where int8 is a real speed-up."""
    if not hasattr(torch.ops.onednn, "qconv2d_pointwise"):
        return False
    probes = ("_is_amx_tile_supported", "_is_avx512_vnni_supported", "_is_avx2_vnni_supported")
    try:
        return any(bool(getattr(torch.cpu, n)()) for n in probes if hasattr(torch.cpu, n))
    except Exception:  # pragma: no cover - torch without the probes
        return False


# ----------------------------------------------------------------------------------------------
# Elementwise kernels: one memory pass each once compiled
# ----------------------------------------------------------------------------------------------


def _to_u8(v: torch.Tensor) -> torch.Tensor:
    return v.clamp(0, 255).round().to(torch.uint8).contiguous(memory_format=CHANNELS_LAST)


def _k_image(x: torch.Tensor, scale: float) -> torch.Tensor:
    """(1, 3, H, W) image (u8 with scale 1, or float in [0, 1] with scale 255), H and W multiples of 4,
    -> u8 reflect-padded by 4 for the first 9x9 conv."""
    return _to_u8(F.pad(x.float() * scale, (4, 4, 4, 4), mode="reflect"))


def _k_relu_pad(y: torch.Tensor, m: torch.Tensor, z: torch.Tensor, reflect: bool) -> torch.Tensor:
    """q = round(ReLU(m*y + z)) per channel, reflect- (or replicate-) padded by 1, as u8."""
    v = y.float() * m.view(1, -1, 1, 1) + z.view(1, -1, 1, 1)
    return _to_u8(F.pad(v, (1, 1, 1, 1), mode="reflect" if reflect else "replicate"))


def _k_relu(y: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """ReLU(a*y + b) in float32: the residual stream's first value."""
    return (y.float() * a.view(1, -1, 1, 1) + b.view(1, -1, 1, 1)).clamp_min(0).contiguous(memory_format=CHANNELS_LAST)


def _k_residual(r: torch.Tensor, y: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """r + a*y + b (the residual block's output; no ReLU after the second norm)."""
    return (r + y.float() * a.view(1, -1, 1, 1) + b.view(1, -1, 1, 1)).contiguous(memory_format=CHANNELS_LAST)


def _k_quant_pad(r: torch.Tensor, inv_scale: float, zero_point: float, reflect: bool) -> torch.Tensor:
    return _to_u8(F.pad(r * inv_scale + zero_point, (1, 1, 1, 1), mode="reflect" if reflect else "replicate"))


def _phases_to_full(y: torch.Tensor, channels: int, h: int, w: int) -> torch.Tensor:
    """(1, 4C, h+1, w+1) 2x2 phase-conv output -> the (1, C, 2h, 2w) full-resolution tensor."""
    ph = [y[:, g * channels : (g + 1) * channels, g // 2 : g // 2 + h, g % 2 : g % 2 + w] for g in range(4)]
    t = torch.stack(ph, dim=1).view(1, 2, 2, channels, h, w)
    return t.permute(0, 3, 4, 1, 5, 2).reshape(1, channels, 2 * h, 2 * w)


def _k_phase_relu_pad(y: torch.Tensor, m: torch.Tensor, z: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Depth-to-space of a phase conv's output + q = round(ReLU(m*y + z)), replicate-padded by 1
    (reflection padding of the upsampled image == replication padding of the low-resolution one)."""
    c = m.shape[0]
    v = _phases_to_full(y, c, h, w).float() * m.view(1, -1, 1, 1) + z.view(1, -1, 1, 1)
    return _to_u8(F.pad(v, (1, 1, 1, 1), mode="replicate"))


def _k_phase_relu_s2d(y: torch.Tensor, m: torch.Tensor, z: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """As _k_phase_relu_pad, but reflect-padded by 4 full-resolution pixels and returned in 2x2
    space-to-depth form (phase-major channels), the input of the 5x5 form of the 9x9 output conv."""
    c = m.shape[0]
    v = _phases_to_full(y, c, h, w).float() * m.view(1, -1, 1, 1) + z.view(1, -1, 1, 1)
    v = F.pad(v, (4, 4, 4, 4), mode="reflect")
    hb, wb = h + 4, w + 4  # blocks
    v = v.view(1, c, hb, 2, wb, 2).permute(0, 3, 5, 1, 2, 4).reshape(1, 4 * c, hb, wb)
    return _to_u8(v)


def _s2d_to_full(o: torch.Tensor, k: int) -> torch.Tensor:
    _, _, hb, wb = o.shape
    return o.view(1, 2, 2, k, hb, wb).permute(0, 3, 4, 1, 5, 2).reshape(1, k, 2 * hb, 2 * wb)


def _k_output(o: torch.Tensor, k: int, h: int, w: int) -> torch.Tensor:
    """(1, 4k, hb, wb) space-to-depth output -> (1, k, h, w) float32 (cropped, not clamped)."""
    return _s2d_to_full(o, k)[..., :h, :w].contiguous()


def _k_output_u8(o: torch.Tensor, k: int, h: int, w: int) -> torch.Tensor:
    """As _k_output, clamped to [0, 1] and rounded to an (h, w, k) u8 array (PIL's layout)."""
    v = _s2d_to_full(o, k)[0, :, :h, :w].permute(1, 2, 0)
    return (v.clamp(0, 1) * 255).round().to(torch.uint8).contiguous()


class _Kernels:
    """The elementwise kernels, compiled once per process on first use (eager if that fails)."""

    _lock = threading.Lock()
    _compiled: dict[str, Callable] = {}
    _eager = False

    @classmethod
    def get(cls, fn: Callable) -> Callable:
        if cls._eager:
            return fn
        with cls._lock:
            compiled = cls._compiled.get(fn.__name__)
            if compiled is None:
                compiled = cls._compiled[fn.__name__] = torch.compile(fn, dynamic=True)

        def call(*args):
            if cls._eager:
                return fn(*args)
            try:
                return compiled(*args)
            except Exception as exc:  # no C++ compiler, unsupported platform...
                warnings.warn(f"fastnst int8: torch.compile failed ({type(exc).__name__}: {exc}); "
                              "running the elementwise steps eagerly (slower)", RuntimeWarning, stacklevel=2)
                cls._eager = True
                return fn(*args)

        return call


def _kernel(fn: Callable) -> Callable:
    return lambda *args: _Kernels.get(fn)(*args)


# ----------------------------------------------------------------------------------------------
# Quantized convolutions
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _QConv:
    """A convolution with int8 weights (per-output-channel scales), packed once for oneDNN."""

    packed: torch.Tensor
    w_scale: torch.Tensor
    w_zero: torch.Tensor
    bias: torch.Tensor | None
    stride: int

    @classmethod
    def of(cls, weight: torch.Tensor, bias: torch.Tensor | None = None, stride: int = 1) -> "_QConv":
        weight = weight.detach().float().cpu()
        scale = (weight.abs().amax(dim=(1, 2, 3)) / 127).clamp_min(1e-12)
        q = torch.round(weight / scale.view(-1, 1, 1, 1)).clamp(-127, 127).to(torch.int8)
        # The activation scale given here is only a hint for oneDNN; each call passes the real one.
        packed = torch.ops.onednn.qconv_prepack(q, scale, 1.0, 0, [stride, stride], [0, 0], [1, 1], 1, None)
        b = None if bias is None else bias.detach().float().cpu().contiguous()
        return cls(packed, scale, torch.zeros(len(scale), dtype=torch.int64), b, stride)

    def __call__(self, x: torch.Tensor, x_scale: float, x_zero: int, out_dtype: torch.dtype) -> torch.Tensor:
        s = self.stride
        return torch.ops.onednn.qconv2d_pointwise(
            x, x_scale, x_zero, self.packed, self.w_scale, self.w_zero, self.bias,
            [s, s], [0, 0], [1, 1], 1, 1.0, 0, out_dtype, "none", [], "")


@dataclass(frozen=True)
class _Norm:
    gamma: torch.Tensor
    beta: torch.Tensor
    eps: float

    def upper(self, sigmas: float) -> float:
        """Upper end of ReLU(IN(y)) over all channels, clipping at ``sigmas`` standard deviations."""
        return max(float((self.beta + sigmas * self.gamma.abs()).max()), 1e-6)

    def lower(self, sigmas: float) -> float:
        return min(float((self.beta - sigmas * self.gamma.abs()).min()), 0.0)


def _norm(norm: nn.InstanceNorm2d) -> _Norm:
    return _Norm(norm.weight.detach().float().cpu().clone(), norm.bias.detach().float().cpu().clone(), norm.eps)


# ----------------------------------------------------------------------------------------------
# The network
# ----------------------------------------------------------------------------------------------


class Int8TransformNet(nn.Module):
    """Inference-only TransformNet in int8 (CPU): same interface as fastnst.fastnet.FastTransformNet."""

    def __init__(self, net: TransformNet, clip_sigmas: float = CLIP_SIGMAS, residual_sigmas: float = RESIDUAL_SIGMAS, out_dtype: torch.dtype = torch.bfloat16) -> None:
        super().__init__()
        net = getattr(net, "_orig_mod", net)
        if not isinstance(net, TransformNet):
            raise TypeError(f"expected a TransformNet, got {type(net).__name__}")
        if not hasattr(torch.ops.onednn, "qconv2d_pointwise"):
            raise RuntimeError("int8 inference needs PyTorch's oneDNN quantized convolution (x86 CPU build)")
        self.config = net.config
        self.dtype = torch.int8
        self.device = torch.device("cpu")
        self.mid_dtype = out_dtype  # conv outputs that are normalised next: only their statistics matter
        k = clip_sigmas
        with torch.no_grad():
            enc = net.encoder
            if enc[0][0][1].kernel_size != (9, 9) or net.decoder[2][1].kernel_size != (9, 9):
                raise ValueError("Int8TransformNet expects 9x9 first and last convolutions (johnson2016)")
            # (conv, norm) pairs; a conv followed by a norm needs no bias (the norm subtracts the mean).
            self.encoder = [(_QConv.of(b[0][1].weight, stride=b[0][1].stride[0]), _norm(b[1])) for b in enc]
            self.residuals = [
                (_QConv.of(r.body[0][0][1].weight), _norm(r.body[0][1]), _QConv.of(r.body[1][1].weight), _norm(r.body[2]))
                for r in net.residuals
            ]
            self.upsamplers = []
            for up in net.decoder[:2]:
                conv = up[1][0][1]
                w, _ = upsample_conv_as_phase_conv(conv.weight.detach().float().cpu(), torch.zeros(conv.out_channels))
                self.upsamplers.append((_QConv.of(w), _norm(up[1][1]), conv.out_channels))
            last = net.decoder[2][1]
            w, b = conv_as_space_to_depth_conv(last.weight.detach().float().cpu(), last.bias.detach().float().cpu())
            self.output = _QConv.of(w, b)
            self.output_channels = last.out_channels
        # Per-tensor activation scales, fixed by the norms' affine parameters (see the module docstring).
        norms = [n for _, n in self.encoder] + [n for r in self.residuals for n in (r[1], r[3])] + [n for _, n, _ in self.upsamplers]
        self.num_norm_layers = len(norms)
        self.scales = [n.upper(k) / 255 for n in norms]
        # Residual stream: ReLU(IN) of the encoder, then + IN(y) per block (no ReLU): its range grows
        # by each block's normalised range.
        lo, hi = 0.0, self.encoder[-1][1].upper(k)
        self.residual_ranges = []
        for _, _, _, n2 in self.residuals:
            self.residual_ranges.append((lo, hi))
            lo, hi = lo + n2.lower(k), hi + n2.upper(k)
        self.residual_ranges.append((lo, hi))
        self.clip_sigmas = k
        self.residual_sigmas = residual_sigmas

    # -- public API (as FastTransformNet) ------------------------------------------------------

    @torch.inference_mode()
    def forward(self, x: torch.Tensor, stats: NormStats | None = None) -> torch.Tensor:
        """(N, 3, H, W) float image in [0, 1] (or u8 in [0, 255]) -> (N, 3, H, W) float32 (not clamped)."""
        return self._run(x, stats, None, to_u8=False)

    @torch.inference_mode()
    def record_stats(self, x: torch.Tensor) -> tuple[torch.Tensor, NormStats]:
        """Stylize one image (1, 3, H, W) and return its output and its instance-norm statistics."""
        if x.shape[0] != 1:
            raise ValueError("record_stats takes a single image (batch of one)")
        record = NormStats()
        return self._run(x, None, record, to_u8=False), record

    @torch.inference_mode()
    def stylize_u8(self, image: torch.Tensor, stats: NormStats | None = None) -> torch.Tensor:
        """(H, W, 3) u8 image (PIL's layout, e.g. ``torch.from_numpy(np.asarray(pil))``) -> (H, W, 3)
        u8 stylized image: no float copy of the input or the output is made."""
        if image.dim() != 3 or image.shape[2] != 3 or image.dtype != torch.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 image, got {tuple(image.shape)} {image.dtype}")
        x = image.permute(2, 0, 1).unsqueeze(0)  # a channels_last view
        return self._run(x, stats, None, to_u8=True)[0]

    # -- internals ---------------------------------------------------------------------------

    def _run(self, x: torch.Tensor, stats: NormStats | None, record: NormStats | None, to_u8: bool) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected a (N, 3, H, W) image batch, got shape {tuple(x.shape)}")
        if x.device.type != "cpu":
            raise ValueError("int8 inference runs on the CPU; got a tensor on " + str(x.device))
        h, w = x.shape[-2:]
        scale = 1.0 if x.dtype == torch.uint8 else 255.0
        if x.dtype != torch.uint8:
            x = x.float()
        outs = []
        for i in range(x.shape[0]):  # instance norm is per image
            xi = pad_to_multiple_of_4(x[i : i + 1].float()) if (h % 4 or w % 4 or min(h, w) < 8) else x[i : i + 1]
            q = _kernel(_k_image)(xi, scale)
            outs.append(self._core(q, _NormContext(stats, record), h, w, to_u8))
        return outs[0] if len(outs) == 1 else torch.cat(outs)

    def _affine(self, y: torch.Tensor, norm: _Norm, ctx: _NormContext, phase_channels: int = 0
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """a, b (float32, per channel) with IN(y) == a*y + b."""
        given = ctx.next_given()
        ctx.index += 1
        if given is not None:
            mean, var = (t.cpu() for t in given)
        else:
            mean, var = _phase_stats(y, phase_channels) if phase_channels else _channel_stats(y)
            if ctx.record is not None:
                ctx.record.layers.append((mean, var))
        a = norm.gamma * torch.rsqrt(var + norm.eps)
        return a, norm.beta - mean * a

    def _core(self, q: torch.Tensor, ctx: _NormContext, h: int, w: int, to_u8: bool) -> torch.Tensor:
        mid = self.mid_dtype
        relu_pad, scales = _kernel(_k_relu_pad), iter(self.scales)
        x_scale, x_zero = 1 / 255, 0
        y = None
        for i, (conv, norm) in enumerate(self.encoder):
            y = conv(q, x_scale, x_zero, mid)
            a, b = self._affine(y, norm, ctx)
            x_scale = next(scales)
            if i < len(self.encoder) - 1:
                q = relu_pad(y, a / x_scale, b / x_scale, True)
        r = _kernel(_k_relu)(y, a, b)
        last = len(self.residuals) - 1
        for i, ((c1, n1, c2, n2), bound) in enumerate(zip(self.residuals, self.residual_ranges)):
            rs, rz = self._residual_scale(r, bound, ctx)
            y = c1(_kernel(_k_quant_pad)(r, 1 / rs, float(rz), True), rs, rz, mid)
            a, b = self._affine(y, n1, ctx)
            s = next(scales)
            y = c2(relu_pad(y, a / s, b / s, True), s, 0, mid)
            a, b = self._affine(y, n2, ctx)
            next(scales)
            r = _kernel(_k_residual)(r, y, a, b)
        # Upsampling convs in sub-pixel form (see fastnst.fastnet): the low-resolution input is
        # replicate-padded; the output is phase-major, its statistics pool the 4 phases.
        rs, rz = self._residual_scale(r, self.residual_ranges[-1], ctx)
        q = _kernel(_k_quant_pad)(r, 1 / rs, float(rz), False)
        (u1, m1, c1), (u2, m2, c2) = self.upsamplers
        hl, wl = r.shape[-2:]
        y = u1(q, rs, rz, mid)  # (1, 4*c1, hl+1, wl+1)
        a, b = self._affine(y, m1, ctx, phase_channels=c1)
        s = next(scales)
        q = _kernel(_k_phase_relu_pad)(y, a / s, b / s, hl, wl)
        y = u2(q, s, 0, mid)  # (1, 4*c2, 2hl+1, 2wl+1)
        a, b = self._affine(y, m2, ctx, phase_channels=c2)
        s = next(scales)
        q = _kernel(_k_phase_relu_s2d)(y, a / s, b / s, 2 * hl, 2 * wl)
        o = self.output(q, s, 0, torch.float32)  # (1, 4*3, 2hl, 2wl) space-to-depth
        k = self.output_channels
        return _kernel(_k_output_u8)(o, k, h, w).unsqueeze(0) if to_u8 else _kernel(_k_output)(o, k, h, w)

    def _residual_scale(self, r: torch.Tensor, bound: tuple[float, float], ctx: _NormContext) -> tuple[float, int]:
        """Scale and zero point of the residual stream's u8 copy: its per-channel mean +- K standard
        deviations (the statistics are recorded / given like the norms', so tiles agree), within the
        static bound."""
        given = ctx.next_given()
        ctx.index += 1
        if given is not None:
            mean, var = (t.cpu() for t in given)
        else:
            mean, var = _channel_stats(r)
            if ctx.record is not None:
                ctx.record.layers.append((mean, var))
        std = var.sqrt() * self.residual_sigmas
        lo = max(bound[0], min(float((mean - std).min()), 0.0))
        hi = min(bound[1], max(float((mean + std).max()), 1e-6))
        scale = (hi - lo) / 255
        return scale, int(round(-lo / scale))
