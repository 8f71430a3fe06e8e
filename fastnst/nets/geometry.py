"""The network's input geometry, in one place: TransformNet, FusedNet, Int8Net and the ONNX export use it.

The transform network downsamples twice by 2, so its input is padded (bottom and right) to a
multiple of 4 and the output cropped back. It is also padded to a minimum side, so that the
reflection padding of the 3x3 convolutions at a quarter of the resolution still fits: a conv with
dilation d reflect-pads by d, which needs a quarter-resolution side of at least d + 1 (8 px for the
undilated network, 4 * (d + 1) in general: ``min_side``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

MULTIPLE = 4  # two stride-2 convolutions


def min_side(max_dilation: int = 1) -> int:
    """Smallest padded input side for quarter-resolution 3x3 convs dilated up to ``max_dilation``:
    their reflection pad (``max_dilation`` px there) must be smaller than the side."""
    return MULTIPLE * (max_dilation + 1)


MIN_SIDE = min_side()  # 8: the undilated network's quarter-resolution convs reflect-pad by 1 of 2 px


def _larger(a, b):
    """max(a, b) for sizes that are ints, or traced 0-d tensors while exporting (then a graph op)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return torch.maximum(torch.as_tensor(a), torch.as_tensor(b))
    return max(a, b)


def padding(h, w, smallest: int = MIN_SIDE):
    """Bottom and right padding ``(pad_h, pad_w)`` that makes an ``h`` x ``w`` input a multiple of 4
    and at least ``smallest`` a side. Works on ints and on sizes traced by ``torch.onnx.export``."""
    return _larger(smallest - h, (-h) % MULTIPLE), _larger(smallest - w, (-w) % MULTIPLE)


def pad_to_multiple_of_4(x: torch.Tensor, smallest: int = MIN_SIDE) -> torch.Tensor:
    """Pad an (N, C, H, W) batch at the bottom and right as the network needs (see the module doc).

    Reflection padding where it fits (the pad is smaller than the side), else replication (images
    smaller than the pad). Trace-safe: while exporting, the pad is recorded as arithmetic on the
    runtime size (zero-width when not needed) and reflection is used (the exported graph takes sides
    >= ``smallest``).
    """
    h, w = x.shape[-2], x.shape[-1]
    pad_h, pad_w = padding(h, w, smallest)
    if torch.jit.is_tracing() or isinstance(pad_h, torch.Tensor):
        return F.pad(x, (0, pad_w, 0, pad_h), mode="reflect")
    if not (pad_h or pad_w):
        return x
    mode = "reflect" if h > pad_h and w > pad_w else "replicate"
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
