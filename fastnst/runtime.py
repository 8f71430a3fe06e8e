"""Device and numeric-precision choices shared by training, stylization and the Gatys baseline."""

from __future__ import annotations

import contextlib
from typing import Literal

import torch

Precision = Literal["auto", "fp32", "bf16", "fp16"]


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when available, else CPU; an explicit ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but no CUDA GPU is available (use device=cpu or auto)")
    return device


def cpu_supports_bf16() -> bool:
    """True when the CPU has native bf16 matrix units (AVX-512 BF16 or AMX), where bf16 is a real speed-up."""
    checks = [getattr(torch.cpu, n, None) for n in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")]
    try:
        return any(bool(c()) for c in checks if c is not None)
    except Exception:  # pragma: no cover - old torch without the probes
        return False


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """Map a precision name to the autocast dtype (float32 means: no autocast).

    ``auto`` uses bf16 on CUDA GPUs that support it and on CPUs with bf16 matrix units, fp32 otherwise.
    """
    if precision == "fp32":
        return torch.float32
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        if device.type == "cpu":
            raise ValueError("precision fp16 is for CUDA; on CPU use bf16 or fp32")
        return torch.float16
    if precision == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if device.type == "cpu" and cpu_supports_bf16():
            return torch.bfloat16
        return torch.float32
    raise ValueError(f"precision must be auto, fp32, bf16 or fp16, got {precision!r}")


def autocast(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    """An autocast context for ``dtype``, or a no-op for float32."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
