"""The inference plan: a trained TransformNet turned, once, into the steps that every backend runs.

``build_plan(net)`` reads a :class:`~fastnst.nets.transform_net.TransformNet` of any width, depth and
dilation and returns a :class:`NetworkPlan`: the layer order as data, each step with its float32
weights already rewritten for inference. The backends (fastnst.infer.backends: fused float, int8,
ONNX) only map these steps to their kernels; none of them reads the network's modules.

What the plan settles, so that no backend has to:

* **Signs.** Every conv is followed by an instance norm or is the output conv. IN(-y) with -gamma ==
  IN(y) with gamma, so the sign of each conv output channel whose norm scale is negative is flipped:
  every norm then has gamma >= 0, per image IN(y) = a*y + b with a >= 0, and ReLU(a*y + b) is largest
  where y is. The fused path writes ReLU(a*y + b) as a*(max(y, t) - t) (one per-channel maximum); the
  int8 path takes the range of its u8 copy from max(y) alone. A channel with gamma == 0 is a constant:
  its weights are zeroed, so it is exactly 0 before its norm.
* **Biases.** A conv followed by an instance norm needs none (the norm subtracts the mean): dropped.
* **Upsampling** (sub-pixel convolution, Shi et al. 2016): nearest x2 upsampling then a 3x3 conv is,
  for each of the 4 output phases, a 2x2 conv on the low-resolution input; the four are one 2x2 conv
  with 4x the output channels, phase-major (:class:`PhaseConv`). The upsampled tensor is never built;
  reflection padding of the upsampled image is replication padding of the low-resolution one.
* **The 9x9 output conv** on the 2x2 space-to-depth tensor is a 5x5 conv with 4x the channels in and
  out (:class:`SpaceToDepthConv`): oneDNN runs it ~3x faster than a 9x9 conv with 3 outputs, and the
  last upsampling's phase-major output already has that layout.
* **Norm bookkeeping.** Each norm step has its index among the norm layers (the entries of a
  NormStats), and says how its result is written: padded by how much and how (reflect, replicate) for
  the conv that reads it, in which layout, and whether it starts or updates the residual stream.

The pad-to-a-multiple-of-4 rule (fastnst.nets.geometry) is the network's own; the image enters the
first conv reflect-padded by ``image_pad``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Literal, Union

import torch
from torch import nn

from fastnst.nets.transform_net import ConvLayer, TransformerConfig, TransformNet, unwrap

__all__ = [
    "Buffer",
    "Conv",
    "NetworkPlan",
    "Norm",
    "NormReLU",
    "PhaseConv",
    "ResidualAdd",
    "SpaceToDepthConv",
    "build_plan",
    "conv_as_space_to_depth_conv",
    "upsample_conv_as_phase_conv",
]

Source = Literal["image", "activation", "stream"]


@dataclass(frozen=True)
class Buffer:
    """Where a norm step writes its result: the input buffer of the conv that reads it, padded by
    ``pad`` of the buffer's own pixels with ``mode`` ("reflect" or "replicate").

    ``layout``: "plain"; "depth_to_space", a phase conv's phase-major output put in place at twice the
    resolution; "space_to_depth", that full-resolution map kept as 2x2 blocks (phase-major channels,
    ``pad`` in blocks), as the output conv reads it."""

    pad: int
    mode: Literal["reflect", "replicate"] = "reflect"
    layout: Literal["plain", "depth_to_space", "space_to_depth"] = "plain"


@dataclass(frozen=True)
class Norm:
    """An instance norm's float32 affine parameters, with ``gamma >= 0`` (see the module's Signs)."""

    gamma: torch.Tensor
    beta: torch.Tensor
    eps: float

    def affine(self, mean: torch.Tensor, var: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel a >= 0 and b with IN(y) == a*y + b, from y's mean and biased variance."""
        a = self.gamma * torch.rsqrt(var + self.eps)
        return a, self.beta - mean * a


@dataclass(frozen=True)
class Conv:
    """A convolution without bias (an instance norm follows), on an input padded as the step before
    wrote it. ``reads``: the image, the previous norm step's activation, or the residual stream."""

    weight: torch.Tensor
    stride: int
    dilation: int
    reads: Source


@dataclass(frozen=True)
class PhaseConv:
    """Nearest x2 upsampling + 3x3 conv as one 2x2 conv on the low-resolution input (replicate-padded
    by 1): ``weight`` has 4 * ``channels`` outputs, phase-major (see upsample_conv_as_phase_conv)."""

    weight: torch.Tensor
    channels: int
    reads: Source


@dataclass(frozen=True)
class SpaceToDepthConv:
    """The output conv (with its bias, no norm) on the 2x2 space-to-depth input, phase-major in and out:
    ``channels`` image channels, 4 * ``channels`` outputs (see conv_as_space_to_depth_conv)."""

    weight: torch.Tensor
    bias: torch.Tensor
    channels: int


@dataclass(frozen=True)
class NormReLU:
    """ReLU(IN(y)) of the conv output y, written as ``writes`` says.

    ``phase_channels``: y is a phase conv's output (4 * phase_channels channels) and the statistics
    pool its 4 phases. ``opens_stream``: the result is also the first value of the residual stream."""

    norm: Norm
    index: int
    writes: Buffer
    phase_channels: int = 0
    opens_stream: bool = False


@dataclass(frozen=True)
class ResidualAdd:
    """stream += IN(y): the end of a residual block; the stream is then written as ``writes`` says."""

    norm: Norm
    index: int
    writes: Buffer


Step = Union[Conv, PhaseConv, SpaceToDepthConv, NormReLU, ResidualAdd]


@dataclass(frozen=True)
class NetworkPlan:
    """A TransformNet as the steps of one forward pass (see the module docstring)."""

    config: TransformerConfig
    steps: tuple[Step, ...]
    image_pad: int  # the first conv's reflection padding of the (multiple-of-4) image

    @property
    def num_norm_layers(self) -> int:
        return sum(isinstance(s, (NormReLU, ResidualAdd)) for s in self.steps)

    @property
    def device(self) -> torch.device:
        return self.steps[0].weight.device

    def to(self, device: torch.device | str) -> "NetworkPlan":
        """The same plan with its tensors on ``device``."""
        return replace(self, steps=tuple(_step_to(s, torch.device(device)) for s in self.steps))


def _step_to(step: Step, device: torch.device) -> Step:
    changes = {}
    for f in fields(step):
        value = getattr(step, f.name)
        if isinstance(value, torch.Tensor):
            changes[f.name] = value.to(device)
        elif isinstance(value, Norm):
            changes[f.name] = Norm(value.gamma.to(device), value.beta.to(device), value.eps)
    return replace(step, **changes)


# ----------------------------------------------------------------------------------------------
# Weight rewrites (float32)
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
# Building the plan
# ----------------------------------------------------------------------------------------------


def _conv_norm(conv: nn.Conv2d, norm: nn.InstanceNorm2d) -> tuple[torch.Tensor, Norm]:
    """A conv followed by an instance norm: the conv's float32 weight with its bias dropped and the
    sign of each output channel whose norm scale is negative flipped (gamma == 0: zeroed), and the
    norm with gamma >= 0."""
    gamma = norm.weight.detach().float()
    sign = torch.where(gamma < 0, -1.0, 1.0) * (gamma != 0)
    weight = conv.weight.detach().float() * sign.view(-1, 1, 1, 1)
    return weight, Norm(gamma.abs(), norm.bias.detach().float().clone(), norm.eps)


def _reflect_pad(layer: ConvLayer) -> int:
    """The reflection padding a ConvLayer gives its input."""
    return layer[0].padding[0]


def build_plan(net: TransformNet) -> NetworkPlan:
    """The inference plan of a trained TransformNet (unwrapped from torch.compile / DDP), on the
    device of its parameters."""
    net = unwrap(net)
    if not isinstance(net, TransformNet):
        raise TypeError(f"expected a TransformNet, got {type(net).__name__}")
    first, output = net.encoder[0].conv, net.output_layer.conv
    if first.kernel_size != (9, 9) or output.kernel_size != (9, 9):
        raise ValueError("the inference plan expects 9x9 first and last convolutions (johnson2016)")
    steps: list[Step] = []

    def norm_step(kind, norm: Norm, writes: Buffer, **extra) -> None:
        index = sum(isinstance(s, (NormReLU, ResidualAdd)) for s in steps)
        steps.append(kind(norm, index, writes, **extra))

    # Each result is padded as its reader needs: the encoder's next conv, a residual block's dilated
    # convs, or the first upsampling, whose reflect-padded upsampled input is the low-resolution map
    # replicate-padded by 1.
    stream_readers = [Buffer(_reflect_pad(r.body[0][0])) for r in net.residuals] + [Buffer(1, "replicate")]
    with torch.no_grad():
        for i, block in enumerate(net.encoder):  # ConvNormReLU
            weight, norm = _conv_norm(block.conv, block.norm)
            steps.append(Conv(weight, block.conv.stride[0], 1, "image" if i == 0 else "activation"))
            if i + 1 < len(net.encoder):
                norm_step(NormReLU, norm, Buffer(_reflect_pad(net.encoder[i + 1][0])))
            else:
                norm_step(NormReLU, norm, stream_readers[0], opens_stream=True)
        for i, r in enumerate(net.residuals):
            weight, norm = _conv_norm(r.first.conv, r.first.norm)
            steps.append(Conv(weight, 1, r.dilation, "stream"))
            norm_step(NormReLU, norm, Buffer(_reflect_pad(r.body[1])))
            weight, norm = _conv_norm(r.second_conv, r.second_norm)
            steps.append(Conv(weight, 1, r.dilation, "activation"))
            norm_step(ResidualAdd, norm, stream_readers[i + 1])
        ups = net.upsamplers
        for i, up in enumerate(ups):
            weight, norm = _conv_norm(up.layer.conv, up.layer.norm)
            weight, _ = upsample_conv_as_phase_conv(weight, torch.zeros(weight.shape[0], device=weight.device))
            channels = up.layer.conv.out_channels
            steps.append(PhaseConv(weight, channels, "stream" if i == 0 else "activation"))
            # The output conv reflect-pads by 4 full-resolution pixels == 2 blocks of the 2x2 layout.
            last = Buffer(_reflect_pad(net.output_layer) // 2, "reflect", "space_to_depth")
            norm_step(NormReLU, norm, last if i == len(ups) - 1 else Buffer(1, "replicate", "depth_to_space"), phase_channels=channels)
        weight, bias = conv_as_space_to_depth_conv(output.weight.detach().float(), output.bias.detach().float())
        steps.append(SpaceToDepthConv(weight, bias, output.out_channels))
    return NetworkPlan(net.config, tuple(steps), _reflect_pad(net.encoder[0][0]))
