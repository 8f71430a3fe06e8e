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
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import nn

from fastnst.geometry import pad_to_multiple_of_4

ARCHITECTURE = "johnson2016"


@dataclass(frozen=True)
class TransformerConfig:
    """Everything needed to rebuild a TransformNet (stored in every model file)."""

    arch: str = ARCHITECTURE
    base_channels: int = 32
    num_residual_blocks: int = 5

    def __post_init__(self) -> None:
        if self.arch != ARCHITECTURE:
            raise ValueError(f"unsupported architecture {self.arch!r} (this fastnst builds {ARCHITECTURE!r})")
        if not (isinstance(self.base_channels, int) and 1 <= self.base_channels <= 1024):
            raise ValueError(f"base_channels must be an int in [1, 1024], got {self.base_channels!r}")
        if not (isinstance(self.num_residual_blocks, int) and 0 <= self.num_residual_blocks <= 64):
            raise ValueError(f"num_residual_blocks must be an int in [0, 64], got {self.num_residual_blocks!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

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

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1) -> None:
        super().__init__(nn.ReflectionPad2d(kernel // 2), nn.Conv2d(in_ch, out_ch, kernel, stride))

    @property
    def conv(self) -> nn.Conv2d:
        return self[1]


class ConvNormReLU(nn.Sequential):
    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1) -> None:
        super().__init__(
            ConvLayer(in_ch, out_ch, kernel, stride),
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
    """Two 3x3 conv + instance norm layers with an identity shortcut (Johnson's supplementary, Fig. 1)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            ConvNormReLU(channels, channels, 3),
            ConvLayer(channels, channels, 3),
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
        self.residuals = nn.Sequential(*[ResidualBlock(4 * c) for _ in range(self.config.num_residual_blocks)])
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
        # Padded to the geometry the two stride-2 convs need (fastnst.geometry), cropped back after.
        # Trace-safe, so torch.onnx.export records the pad and the crop as graph operations.
        h, w = x.shape[-2], x.shape[-1]
        y = self.decoder(self.residuals(self.encoder(pad_to_multiple_of_4(x))))
        return y[..., :h, :w]


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
