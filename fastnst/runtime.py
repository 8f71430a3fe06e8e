"""Device, precision and memory helpers shared by training, stylization and the Gatys baseline."""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
from enum import Enum

import torch


class Precision(str, Enum):
    """The numeric precisions every front end offers (``auto`` picks per device, see resolve_precision)."""

    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


PRECISION_NAMES: tuple[str, ...] = tuple(p.value for p in Precision)
# Inference (stylizing) also offers int8: fastnst.infer.backends.int8, CPU only. Training and Gatys do not.
INFERENCE_PRECISION_NAMES: tuple[str, ...] = PRECISION_NAMES + ("int8",)


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when available, else CPU; an explicit ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but no CUDA GPU is available (use device=cpu or auto)")
    return device


def cpu_supports_bf16() -> bool:
    """True when the CPU has native bf16 units (AVX-512 BF16 or AMX), where bf16 is a real speed-up, and
    the caps in effect (ONEDNN_MAX_CPU_ISA, ATEN_CPU_CAPABILITY) let them be used: see fastnst.cpu_features."""
    from fastnst import cpu_features

    try:
        cpu = cpu_features.read_cpu()
        return cpu_features.has_bf16_units(cpu_features.effective_features(cpu, cpu_features.read_caps()))
    except Exception:  # pragma: no cover - an unreadable CPU description
        return False


def cpu_supports_int8() -> bool:
    """True where ``precision="auto"`` may use int8 on this CPU (subject to the model's quality guard):
    this PyTorch has oneDNN's quantized convolution and a small int8 convolution measured faster than
    float32 and exact (fastnst.cpu_features.plan_auto; measured once per CPU, caps and torch version)."""
    return auto_plan().precision == "int8"


_PLANS: dict[tuple, object] = {}


def auto_plan():
    """fastnst.cpu_features.plan_auto for this CPU and the caps now in the environment, once per process
    (the probe behind it is also cached on disk). Returns a fastnst.cpu_features.Plan."""
    from fastnst import cpu_features

    key = (cpu_features.read_cpu(), cpu_features.read_caps(), str(cpu_features.cache_dir()))
    plan = _PLANS.get(key)
    if plan is None:
        plan = _PLANS[key] = cpu_features.plan_auto(key[0], key[1])
    return plan


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """Map a precision name to the autocast dtype (float32 means: no autocast).

    ``auto`` uses bf16 on CUDA GPUs that support it and on CPUs with bf16 matrix units (as capped by
    ONEDNN_MAX_CPU_ISA / ATEN_CPU_CAPABILITY), fp32 otherwise.
    ``int8`` (CPU only) maps to torch.int8: fastnst.infer.backends.int8's network, for inference. (Whether ``auto``
    may use int8 depends on the model too: fastnst.infer.stylizer.Stylizer decides that.)
    """
    precision = precision.value if isinstance(precision, Precision) else precision
    if precision == "fp32":
        return torch.float32
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        if device.type == "cpu":
            raise ValueError("precision fp16 is for CUDA; on CPU use bf16 or fp32")
        return torch.float16
    if precision == "int8":
        if device.type != "cpu":
            raise ValueError("precision int8 is for CPUs (oneDNN's int8 kernels); on a GPU use bf16 or fp16")
        return torch.int8
    if precision == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if device.type == "cpu" and cpu_supports_bf16():
            return torch.bfloat16
        return torch.float32
    raise ValueError(f"precision must be one of {', '.join(INFERENCE_PRECISION_NAMES)}, got {precision!r}")


def autocast(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    """An autocast context for ``dtype``, or a no-op for float32."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


_MALLOC_TUNED: bool | None = None


def reuse_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory for reuse instead of returning it to the system.

    Why: glibc serves every block above 32 MB with a fresh mmap and unmaps it on free, so each
    full-resolution activation (16 channels of a 1-megapixel image are already 32 MB) arrives as new
    pages that the kernel must fault in and zero on first touch. On a 2-core CPU that was a third of
    the whole stylization time. With mmap off and a high trim threshold, freed blocks are reused, as
    PyTorch's caching allocator does on GPUs; the cost is that the process keeps its peak memory.

    Process-wide and irreversible, so no library call does it: the stylize command line and the
    benchmarks opt in (call it yourself in a long-lived process that stylizes large images).
    Linux with glibc only (a no-op returning False elsewhere). Set the environment variable
    FASTNST_KEEP_FREED_MEMORY=0 to opt out.
    """
    global _MALLOC_TUNED
    if _MALLOC_TUNED is not None:
        return _MALLOC_TUNED
    _MALLOC_TUNED = False
    if os.environ.get("FASTNST_KEEP_FREED_MEMORY", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl)
        return False
    m_trim_threshold, m_mmap_max, m_arena_max = -1, -4, -8  # from glibc's malloc.h
    # One arena: memory freed by the decoding and saving threads is then reused by the compute, not
    # kept aside in per-thread arenas (which raised an 8000x8000 photo's peak by ~0.4 GB).
    _MALLOC_TUNED = (bool(mallopt(m_mmap_max, 0)) and bool(mallopt(m_trim_threshold, (1 << 31) - 1))
                     and bool(mallopt(m_arena_max, 1)))
    return _MALLOC_TUNED


def available_memory(device: torch.device) -> int:
    """Bytes currently available to allocate on ``device`` (free GPU memory, or MemAvailable)."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 4 << 30
