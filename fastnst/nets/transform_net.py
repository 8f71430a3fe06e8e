"""The feed-forward image transformation network of Johnson, Alahi & Fei-Fei (2016).

Departures from the paper, all standard since:
* instance normalisation instead of batch norm (Ulyanov et al. 2016, "Instance Normalization");
* reflection padding instead of zero padding (fewer border artifacts);
* nearest-neighbour upsampling followed by a convolution instead of fractionally-strided
  convolutions (Odena et al. 2016, "Deconvolution and Checkerboard Artifacts");
* a linear output in [0, 1] image space (no scaled tanh): with identity warm-up the network starts
  as the identity map, and callers clamp when they save.

``base_channels`` sets the width: 32 is the paper's network (~1.68 M parameters); 16 is the half-width
variant that Johnson's own instance-norm models use, about 4x fewer FLOPs.

``residual_dilations`` (optional) dilates the 3x3 convs of each residual block: the receptive field
grows at the same FLOPs and parameters (Yu & Koltun 2016, "Multi-Scale Context Aggregation by Dilated
Convolutions"), and with it the size of the strokes and motifs the network can copy from a painting
(Jing et al. 2018, "Stroke Controllable Fast Style Transfer with Adaptive Receptive Fields").
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import nn

from fastnst.nets import geometry
from fastnst.nets.geometry import MULTIPLE, pad_to_multiple_of_4

ARCHITECTURE = "johnson2016"
MAX_DILATION = 64  # a sanity bound, like the width's and depth's: the smallest input grows as 4 * (d + 1)


@dataclass(frozen=True)
class TransformerConfig:
    """Everything needed to rebuild a TransformNet (stored in every model file)."""

    arch: str = ARCHITECTURE
    base_channels: int = 32
    num_residual_blocks: int = 5
    # One dilation per residual block (both of its 3x3 convs); None (or all 1) is Johnson's network.
    residual_dilations: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.arch != ARCHITECTURE:
            raise ValueError(f"unsupported architecture {self.arch!r} (this fastnst builds {ARCHITECTURE!r})")
        if not (isinstance(self.base_channels, int) and 1 <= self.base_channels <= 1024):
            raise ValueError(f"base_channels must be an int in [1, 1024], got {self.base_channels!r}")
        if not (isinstance(self.num_residual_blocks, int) and 0 <= self.num_residual_blocks <= 64):
            raise ValueError(f"num_residual_blocks must be an int in [0, 64], got {self.num_residual_blocks!r}")
        # Frozen: normalise through object.__setattr__. All ones is stored as None, so that the
        # undilated network has one spelling (equal configs, identical model files).
        object.__setattr__(self, "residual_dilations", self._checked_dilations())

    def _checked_dilations(self) -> tuple[int, ...] | None:
        d = self.residual_dilations
        if d is None:
            return None
        if isinstance(d, (str, bytes)) or not hasattr(d, "__len__"):
            raise ValueError(f"residual_dilations must be a list of ints (one per residual block) or null, got {d!r}")
        d = tuple(d)
        if len(d) != self.num_residual_blocks:
            raise ValueError(f"residual_dilations has {len(d)} entries {list(d)}; it needs one per residual block "
                             f"(num_residual_blocks={self.num_residual_blocks})")
        if not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_DILATION for v in d):
            raise ValueError(f"residual_dilations must be ints in [1, {MAX_DILATION}], got {list(d)}")
        return None if all(v == 1 for v in d) else d

    @property
    def dilations(self) -> tuple[int, ...]:
        """Each residual block's dilation (1 for an undilated block)."""
        return self.residual_dilations or (1,) * self.num_residual_blocks

    @property
    def min_side(self) -> int:
        """Smallest padded input side (fastnst.nets.geometry): the quarter-resolution maps must exceed the
        largest reflection pad."""
        return geometry.min_side(max(self.dilations, default=1))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values. An undilated network leaves ``residual_dilations`` out, so its model
        files are the ones fastnst wrote before dilation existed (older versions still read them)."""
        data = asdict(self)
        if self.residual_dilations is None:
            del data["residual_dilations"]
        else:
            data["residual_dilations"] = list(self.residual_dilations)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TransformerConfig":
        """Build from a plain dict, refusing unknown keys (a file from another architecture or version)."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown model config keys {sorted(unknown)}")
        return cls(**data)


# The blocks are nn.Sequential so that parameter names (and so every saved model file) stay
# ``encoder.0.0.1.weight`` and the like; the properties name the parts for code that reads them.


class ConvLayer(nn.Sequential):
    """Reflection padding then convolution, so the border is not treated as black."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, dilation: int = 1) -> None:
        super().__init__(nn.ReflectionPad2d(dilation * (kernel // 2)),
                         nn.Conv2d(in_ch, out_ch, kernel, stride, dilation=dilation))

    @property
    def conv(self) -> nn.Conv2d:
        return self[1]


class ConvNormReLU(nn.Sequential):
    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, dilation: int = 1) -> None:
        super().__init__(
            ConvLayer(in_ch, out_ch, kernel, stride, dilation),
            nn.InstanceNorm2d(out_ch, affine=True),
            nn.ReLU(inplace=True),
        )

    @property
    def conv(self) -> nn.Conv2d:
        return self[0].conv

    @property
    def norm(self) -> nn.InstanceNorm2d:
        return self[1]


class ResidualBlock(nn.Module):
    """Two 3x3 conv + instance norm layers with an identity shortcut (Johnson's supplementary, Fig. 1).

    With ``dilation`` d both convs are dilated by d and reflect-pad by d (Yu & Koltun 2016); the
    parameters, and so their names and shapes, are those of the undilated block.
    """

    def __init__(self, channels: int, dilation: int = 1) -> None:
        super().__init__()
        self.dilation = dilation
        self.body = nn.Sequential(
            ConvNormReLU(channels, channels, 3, dilation=dilation),
            ConvLayer(channels, channels, 3, dilation=dilation),
            nn.InstanceNorm2d(channels, affine=True),
        )

    @property
    def first(self) -> ConvNormReLU:
        """conv + norm + ReLU"""
        return self.body[0]

    @property
    def second_conv(self) -> nn.Conv2d:
        return self.body[1].conv

    @property
    def second_norm(self) -> nn.InstanceNorm2d:
        return self.body[2]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class UpsampleConv(nn.Sequential):
    """Nearest x2 upsampling then conv + norm + ReLU (instead of a transposed conv: no checkerboard)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 3) -> None:
        super().__init__(nn.Upsample(scale_factor=2, mode="nearest"), ConvNormReLU(in_ch, out_ch, kernel))

    @property
    def layer(self) -> ConvNormReLU:
        """The conv + norm + ReLU applied after upsampling."""
        return self[1]


class TransformNet(nn.Module):
    """Image -> stylized image of the same size, both RGB in [0, 1] (NCHW)."""

    def __init__(self, config: TransformerConfig | None = None) -> None:
        super().__init__()
        self.config = config or TransformerConfig()
        c = self.config.base_channels
        self.encoder = nn.Sequential(
            ConvNormReLU(3, c, 9),
            ConvNormReLU(c, 2 * c, 3, stride=2),
            ConvNormReLU(2 * c, 4 * c, 3, stride=2),
        )
        self.residuals = nn.Sequential(*[ResidualBlock(4 * c, d) for d in self.config.dilations])
        self.decoder = nn.Sequential(
            UpsampleConv(4 * c, 2 * c),
            UpsampleConv(2 * c, c),
            ConvLayer(c, 3, 9),
        )

    @property
    def upsamplers(self) -> list[UpsampleConv]:
        return [self.decoder[0], self.decoder[1]]

    @property
    def output_layer(self) -> ConvLayer:
        """The final 9x9 conv to RGB (no norm, no activation)."""
        return self.decoder[2]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Padded to the geometry the two stride-2 convs need (fastnst.nets.geometry), cropped back after.
        # Trace-safe, so torch.onnx.export records the pad and the crop as graph operations.
        h, w = x.shape[-2], x.shape[-1]
        y = self.decoder(self.residuals(self.encoder(pad_to_multiple_of_4(x, self.config.min_side))))
        return y[..., :h, :w]


def receptive_field(config: TransformerConfig) -> int:
    """Side (full-resolution px) of the input window one output pixel depends on, instance-norm
    statistics aside: the two 9x9 convs add 8 px each; the stride-2 convs 2 and 4; the upsampling
    convs 4 and 2; each 3x3 residual conv at 1/4 resolution 2*d*4 px (d its dilation), and the
    nearest upsamplings' rounding 2 px (undilated: 109 + 2 = 111 px)."""
    residual = sum(2 * d * MULTIPLE * 2 for d in config.dilations)  # two convs per block
    return 1 + 8 + 2 + 4 + residual + 4 + 2 + 8 + 2


def unwrap(module: nn.Module) -> nn.Module:
    """The plain module inside torch.compile's and DistributedDataParallel's wrappers (in either order)."""
    while True:
        inner = getattr(module, "_orig_mod", None)
        if inner is None:
            inner = getattr(module, "module", None)
        if not isinstance(inner, nn.Module):
            return module
        module = inner


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
