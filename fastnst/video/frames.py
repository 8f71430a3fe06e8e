"""Cheap conversion between video frames (uint8 RGB, H x W x 3 numpy arrays) and float tensors.

The image path goes through PIL (``pil_to_tensor`` / ``tensor_to_pil``), ~50 ms per 640x480 image
around a network pass of ~80 ms. A decoder hands frames as packed uint8 RGB already: that layout *is*
channels_last NCHW, so a frame becomes a (1, 3, H, W) tensor with a view and one conversion pass, and
back with one fused scale-round-cast pass and a view. No copy through PIL, no per-pixel Python.
"""

from __future__ import annotations

import numpy as np
import torch

from fastnst.imageio import single_image

__all__ = ["frame_to_tensor", "tensor_to_frame"]


def frame_to_tensor(frame: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (1, 3, H, W) float32 in [0, 1], channels_last, on ``device``.

    On a GPU the uint8 frame is moved first (a quarter of the bytes of float32).
    """
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB frame, got {frame.dtype} {frame.shape}")
    t = torch.from_numpy(np.ascontiguousarray(frame)).to(device, non_blocking=True)
    x = t.unsqueeze(0).permute(0, 3, 1, 2)  # a view: (1, 3, H, W) with channels_last strides
    return x.to(torch.float32).mul_(1.0 / 255.0)


def tensor_to_frame(x: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) or (3, H, W) float in [0, 1] -> (H, W, 3) uint8 RGB numpy array (rounded, clamped)."""
    hwc = single_image(x).detach().permute(1, 2, 0)
    # One pass: scale, round half up (+0.5 then truncate), clamp, cast; then a contiguous HWC copy.
    out = hwc.float().mul(255.0).add_(0.5).clamp_(0, 255).to(torch.uint8)
    return out.contiguous().cpu().numpy()
