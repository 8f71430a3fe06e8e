"""Padded channels-last buffers: a conv's input is written into the interior of a buffer, then only
its border is filled (reflection or replication), instead of a separate padding pass over the map.
Shared by the fused and the int8 backends."""

from __future__ import annotations

import threading
from collections.abc import Hashable

import torch

CHANNELS_LAST = torch.channels_last


def empty_padded(n: int, c: int, h: int, w: int, pad: int, like: torch.Tensor | None = None,
                 dtype: torch.dtype | None = None) -> torch.Tensor:
    """An uninitialised channels-last buffer for an (h, w) map with ``pad`` border, of ``like``'s dtype
    and device unless ``dtype`` is given (CPU without ``like``)."""
    return torch.empty(n, c, h + 2 * pad, w + 2 * pad, dtype=dtype or like.dtype, device=None if like is None else like.device,
                       memory_format=CHANNELS_LAST)


class BufferPool:
    """Work buffers kept from one pass to the next at the same image size, one set per thread.

    A fresh buffer the allocator has to map costs a page fault per 4 KB page on first touch, the kernel
    zero-filling each. Measured on 2 cores of an AMD EPYC Zen 4 (int8 starry, PIL in and out, 2026-12-07):
    at 640x640 a pass took 6,438 page faults with fresh buffers and none with kept ones, 63.5 against
    55.9 ms. The command line's process-wide malloc setting (fastnst.runtime.reuse_freed_memory) does the
    same for every allocation; this pool gives a library caller who leaves the process alone the part that
    is ours (the convolutions' outputs are PyTorch's). A pass calls :meth:`begin`, then asks for each buffer
    by a key of its own (its step); a new image size drops the kept set, so at most one size's buffers stay
    alive per thread, until the pool's owner goes.
    """

    def __init__(self) -> None:
        self._local = threading.local()

    def begin(self, size: Hashable) -> None:
        """Start a pass over an image of ``size``: the buffers of another size are dropped."""
        local = self._local
        if getattr(local, "size", None) != size:
            local.size, local.kept = size, {}

    def empty_padded(self, key: Hashable, n: int, c: int, h: int, w: int, pad: int, dtype: torch.dtype) -> torch.Tensor:
        """``empty_padded(n, c, h, w, pad, dtype=dtype)`` on the CPU, the same tensor as the last time this
        thread asked for ``key`` with that shape since :meth:`begin` (its contents are whatever that pass
        left)."""
        kept = self._local.kept
        full = (key, n, c, h, w, pad, dtype)
        buf = kept.get(full)
        if buf is None:
            buf = kept[full] = empty_padded(n, c, h, w, pad, dtype=dtype)
        return buf


def interior(buf: torch.Tensor, pad: int) -> torch.Tensor:
    return buf[:, :, pad:-pad, pad:-pad]


def fill_reflect_border_(buf: torch.Tensor, pad: int) -> torch.Tensor:
    """Fill the ``pad``-wide border of ``buf`` as F.pad(interior, mode="reflect") would."""
    h, w = buf.shape[-2:]
    for i in range(pad):
        buf[:, :, pad - 1 - i, pad : w - pad] = buf[:, :, pad + 1 + i, pad : w - pad]
        buf[:, :, h - pad + i, pad : w - pad] = buf[:, :, h - pad - 2 - i, pad : w - pad]
    for i in range(pad):
        buf[:, :, :, pad - 1 - i] = buf[:, :, :, pad + 1 + i]
        buf[:, :, :, w - pad + i] = buf[:, :, :, w - pad - 2 - i]
    return buf


def fill_border_(buf: torch.Tensor, pad: int, mode: str) -> torch.Tensor:
    """Fill the ``pad``-wide border of ``buf`` by ``mode``: "reflect" or "replicate"."""
    return fill_reflect_border_(buf, pad) if mode == "reflect" else fill_replicate_border_(buf, pad)


def fill_replicate_border_(buf: torch.Tensor, pad: int) -> torch.Tensor:
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


def fill_phase_reflect_border_(buf: torch.Tensor, channels: int) -> torch.Tensor:
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
