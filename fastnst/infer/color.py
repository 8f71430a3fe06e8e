"""Post-processing of a stylized image against its photo: colour preservation and style strength.

Colour preservation is the luminance-only transfer of Gatys et al. 2016 ("Preserving Color in Neural
Artistic Style Transfer"), done after the fact: the stylized image's luminance with the photo's
chrominance, in full-range BT.601 YCbCr (the JPEG convention). Images are float tensors in [0, 1],
(..., 3, H, W).
"""

from __future__ import annotations

import torch

# Full-range BT.601 (JFIF): Y in [0, 1], Cb/Cr centred on 0.5.
_RGB_TO_YCBCR = torch.tensor(
    [
        [0.299, 0.587, 0.114],
        [-0.168735892, -0.331264108, 0.5],
        [0.5, -0.418687589, -0.081312411],
    ]
)
_YCBCR_TO_RGB = torch.linalg.inv(_RGB_TO_YCBCR.double()).float()


def _apply(matrix: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    m = matrix.to(device=image.device, dtype=image.dtype)
    return torch.einsum("ij,...jhw->...ihw", m, image)


def rgb_to_ycbcr(image: torch.Tensor) -> torch.Tensor:
    """RGB in [0, 1] -> YCbCr with Y in [0, 1] and Cb, Cr in [0, 1] (0.5 = no colour)."""
    out = _apply(_RGB_TO_YCBCR, image)
    offset = torch.tensor([0.0, 0.5, 0.5], device=image.device, dtype=image.dtype).view(3, 1, 1)
    return out + offset


def ycbcr_to_rgb(image: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`rgb_to_ycbcr` (not clamped)."""
    offset = torch.tensor([0.0, 0.5, 0.5], device=image.device, dtype=image.dtype).view(3, 1, 1)
    return _apply(_YCBCR_TO_RGB, image - offset)


def preserve_color(stylized: torch.Tensor, photo: torch.Tensor) -> torch.Tensor:
    """The stylized image's luminance with the photo's chrominance, clamped to [0, 1]."""
    if stylized.shape != photo.shape:
        raise ValueError(f"shape mismatch: stylized {tuple(stylized.shape)} vs photo {tuple(photo.shape)}")
    ycc = rgb_to_ycbcr(photo.to(stylized.dtype))
    ycc[..., :1, :, :] = rgb_to_ycbcr(stylized)[..., :1, :, :]
    return ycbcr_to_rgb(ycc).clamp_(0.0, 1.0)


def check_strength(strength: float) -> None:
    """The one rule for ``strength``: a number in [0, 1] (0 = the photo, 1 = full style)."""
    if not 0.0 <= strength <= 1.0:  # also refuses NaN
        raise ValueError(f"strength must be in [0, 1], got {strength!r}")


def blend(photo: torch.Tensor, stylized: torch.Tensor, strength: float) -> torch.Tensor:
    """Linear blend: ``strength`` 0 gives the photo, 1 the stylized image."""
    check_strength(strength)
    if strength == 1.0:
        return stylized
    return torch.lerp(photo.to(stylized.dtype), stylized, strength)
