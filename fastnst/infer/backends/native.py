"""The int8 network's elementwise passes: native code (fastnst/infer/backends/csrc/native_passes.cpp) built on first use,
or the same passes as eager torch code where it cannot be built.

Three passes, each one read of a convolution's output (see fastnst.infer.backends.int8 for the arithmetic):

* ``stats``: per-channel mean, variance (pooled over the 4 phases of a sub-pixel conv) and maximum;
* ``remap``: m*x + z per channel rounded to u8 (or ReLU'd to bf16), written into the next conv's
  whole padded buffer, border included, through row and column index maps (``index_map``) that express
  reflection or replication padding, depth-to-space and the phase of a sub-pixel conv;
* ``stream``: the residual stream's next value with its per-channel range.

Why native code rather than torch.compile (which this replaced): inductor's kernels paid ~50 us of
Dynamo guards per call (45 calls an image), left the borders and the depth-to-space as extra passes,
and kept the compiler (~0.2 GB) in the process.

The library is compiled once per machine and source (``g++ -O3 -march=native -fopenmp``, ~3 s) into
``$FASTNST_CACHE`` or ``~/.cache/fastnst`` and loaded with ctypes (no Python headers, no pybind). It runs
on the OpenMP runtime PyTorch already loaded, so ``torch.set_num_threads`` applies. ``FASTNST_NATIVE=0``
selects the torch code (tests compare the two).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import time
import warnings
from functools import lru_cache
from pathlib import Path

import torch

__all__ = ["NativeOps", "TorchOps", "index_map", "load_ops"]

SOURCE = Path(__file__).with_name("csrc") / "native_passes.cpp"
ABI_VERSION = 1
FLAGS = ["-O3", "-march=native", "-fopenmp", "-fno-math-errno", "-shared", "-fPIC", "-std=c++17"]

_DTYPE_CODE = {torch.float32: 0, torch.bfloat16: 1}  # the conv outputs and the residual stream
_i64, _i32, _ptr = ctypes.c_int64, ctypes.c_int, ctypes.c_void_p


def _data(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def _cache_dir() -> Path:
    root = os.environ.get("FASTNST_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "fastnst")
    return Path(root)


def _cpu_flags() -> str:
    """The CPU's feature flags: part of the cache key, as the library is built for this CPU (-march=native)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return line
    except OSError:
        pass
    return platform.processor()


STALE_AFTER_S = 30 * 86400  # a build unused this long (an older source or compiler) is deleted at the next build


def _prune_stale(cache: Path, keep: Path) -> None:
    """Delete builds of other sources, flags or CPUs that no process has loaded for STALE_AFTER_S: each
    edit of the source or compiler leaves one ~0.3 MB file behind. Age, not "all but the newest", as
    several installs (venvs, versions) may share the cache; unlinking a mapped library is safe on POSIX."""
    cutoff = time.time() - STALE_AFTER_S
    for old in cache.glob("int8_ops-*.so"):
        try:
            if old != keep and old.stat().st_mtime < cutoff:
                old.unlink()
        except OSError:
            pass  # another process pruned it first


def _build(compiler: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        subprocess.run([compiler, *FLAGS, "-o", tmp, str(SOURCE)], check=True, capture_output=True, timeout=300)
        os.replace(tmp, target)  # atomic: a concurrent process sees the old file or the whole new one
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class NativeOps:
    """Typed calls into the built library. Tensors are (1, C, H, W) channels-last views on the CPU:
    channel stride 1, any row and column strides."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self.lib = lib
        lib.fastnst_remap_u8.argtypes = [_ptr, _i32, _i64, _i64, _i32, _i32, _ptr, _i64, _ptr, _i64, _i32, _ptr, _ptr, _ptr, _i64, _i64]
        lib.fastnst_remap_bf16_relu.argtypes = lib.fastnst_remap_u8.argtypes
        lib.fastnst_stats.argtypes = [_ptr, _i32, _i64, _i64, _i32, _i64, _i64, _i32, _i32, _ptr, _ptr, _ptr]
        lib.fastnst_stream.argtypes = [_i32, _ptr, _i64, _i64, _ptr, _i32, _i64, _i64, _i32, _i64, _i64, _ptr, _ptr, _ptr, _i64, _i64,
                                       _ptr, _ptr]
        lib.fastnst_rgb_u8.argtypes = [_ptr, _i64, _i64, _i64, _i64, _ptr]
        lib.fastnst_quantize_weight.argtypes = [_ptr, _i64, _i64, _i64, _ptr, _ptr, _ptr, _ptr, _ptr]
        lib.fastnst_image_u8.argtypes = [_ptr, _i64, _i64, _i64, _i64, ctypes.c_float, _ptr, _i64]
        lib.fastnst_rgb_f32.argtypes = [_ptr, _i64, _i64, _i64, _i64, _ptr]
        for fn in (lib.fastnst_remap_u8, lib.fastnst_remap_bf16_relu, lib.fastnst_stats, lib.fastnst_stream, lib.fastnst_rgb_u8,
                   lib.fastnst_quantize_weight, lib.fastnst_image_u8, lib.fastnst_rgb_f32):
            fn.restype = None

    @staticmethod
    def _check(t: torch.Tensor) -> None:
        if t.device.type != "cpu" or t.dim() != 4 or t.shape[0] != 1 or (t.stride(1) != 1 and t.shape[1] > 1):
            raise ValueError(f"expected a (1, C, H, W) channels-last CPU tensor, got {tuple(t.shape)} strides {t.stride()}")

    @classmethod
    def _check_blocks(cls, o: torch.Tensor, h: int, w: int) -> None:
        """o: the last conv's float32 (1, 12, >= h/2, >= w/2) space-to-depth output."""
        cls._check(o)
        assert o.dtype == torch.float32 and o.shape[1] == 12 and 2 * o.shape[2] >= h and 2 * o.shape[3] >= w

    def remap(self, src: torch.Tensor, m: torch.Tensor, z: torch.Tensor, out: torch.Tensor, rows: torch.Tensor,
              cols: torch.Tensor, block: int = 1, phased: bool = False) -> torch.Tensor:
        """out[I, J] (a whole buffer, border included) = m*src + z per channel, rounded to u8 in [0, 255]
        (out u8) or ReLU'd to bf16 (out bf16), read from the source pixel the index maps name.

        ``rows`` (int32, ``out rows * block``): source row * 2 + phase bit for each output row and, with
        ``block`` 2, each of its two sub-rows (space-to-depth output: channel (a'*2 + b')*C + c);
        ``cols`` likewise. ``phased``: src is phase-major (4*C channels), the phase bits pick (2a + b)*C.
        """
        self._check(src)
        self._check(out)
        c = out.shape[1] // (block * block)
        assert block in (1, 2) and m.dtype == z.dtype == torch.float32 and m.numel() == z.numel() == c
        assert rows.numel() == out.shape[2] * block and cols.numel() == out.shape[3] * block
        fn = self.lib.fastnst_remap_u8 if out.dtype == torch.uint8 else self.lib.fastnst_remap_bf16_relu
        fn(src.data_ptr(), _DTYPE_CODE[src.dtype], src.stride(2), src.stride(3), c, int(phased), rows.data_ptr(), out.shape[2],
           cols.data_ptr(), out.shape[3], block, m.data_ptr(), z.data_ptr(), out.data_ptr(), out.stride(2), out.stride(3))
        return out

    def quantize_weight(self, weight: torch.Tensor, in_scale: torch.Tensor | None = None, in_zero: torch.Tensor | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """A float32 (O, I, kh, kw) conv weight times ``in_scale`` (per input channel) as symmetric int8
        with one scale per output channel, and, with ``in_zero`` (per input channel u8 zero points),
        the bias shift scale[o] * sum over c and taps of q[o, c] * in_zero[c]."""
        assert weight.dtype == torch.float32 and weight.is_contiguous()
        o, i = weight.shape[:2]
        q = torch.empty(weight.shape, dtype=torch.int8)
        scale = torch.empty(o)
        shift = None if in_zero is None else torch.empty(o)
        in_scale, in_zero = (None if t is None else t.float().contiguous() for t in (in_scale, in_zero))  # alive during the call
        self.lib.fastnst_quantize_weight(weight.data_ptr(), o, i, weight[0, 0].numel(), _data(in_scale), _data(in_zero), q.data_ptr(),
                                         scale.data_ptr(), _data(shift))
        return q, scale, shift

    def image_u8(self, x: torch.Tensor, scale: float, out: torch.Tensor) -> torch.Tensor:
        """out (a (1, 3, H, W) u8 channels-last view) = round(clamp(scale*x, 0, 255)) of a float32
        (1, 3, H, W) image with contiguous rows (any channel and row strides)."""
        self._check(out)
        assert x.dtype == torch.float32 and x.shape == out.shape and x.shape[1] == 3 and x.stride(3) == 1 and out.stride(3) == 3
        self.lib.fastnst_image_u8(x.data_ptr(), x.stride(1), x.stride(2), x.shape[2], x.shape[3], scale, out.data_ptr(), out.stride(2))
        return out

    def rgb_f32(self, o: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """The (1, 3, h, w) float32 image (unclamped) from the last conv's space-to-depth output, as rgb_u8."""
        self._check_blocks(o, h, w)
        img = torch.empty(1, 3, h, w)
        self.lib.fastnst_rgb_f32(o.data_ptr(), o.stride(2), o.stride(3), h, w, img.data_ptr())
        return img

    def rgb_u8(self, o: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """The (1, h, w, 3) u8 image, round(clamp(255*x, 0, 255)), from the last conv's (1, 12, >= h/2,
        >= w/2) space-to-depth output (phase-major channels: (2a + b)*3 + rgb)."""
        self._check_blocks(o, h, w)
        img = torch.empty(1, h, w, 3, dtype=torch.uint8)
        self.lib.fastnst_rgb_u8(o.data_ptr(), o.stride(2), o.stride(3), h, w, img.data_ptr())
        return img

    def stats(self, y: torch.Tensor, phase_channels: int = 0, moments: bool = True
              ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor]:
        """Per-channel float32 mean, biased variance (pooled over the 4 phases of a phase conv's output
        with ``phase_channels``; None without ``moments``) and maximum (every channel) of y."""
        self._check(y)
        c = y.shape[1]
        k = phase_channels or c
        mean, var, top = torch.empty(k), torch.empty(k), torch.empty(c)
        self.lib.fastnst_stats(y.data_ptr(), _DTYPE_CODE[y.dtype], y.shape[2], y.shape[3], c, y.stride(2), y.stride(3),
                               phase_channels, int(moments), mean.data_ptr(), var.data_ptr(), top.data_ptr())
        return (mean, var, top) if moments else (None, None, top)

    def stream(self, r: torch.Tensor | None, y: torch.Tensor, a: torch.Tensor, b: torch.Tensor, out: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """out = r + a*y + b (a residual block's output; out may be r) or, with r None, ReLU(a*y + b);
        returns the per-channel min and max of out."""
        for t in (y, out) if r is None else (r, y, out):
            self._check(t)
        assert out.dtype == torch.float32 and (r is None or r.dtype == torch.float32)
        c = y.shape[1]
        lo, hi = torch.empty(c), torch.empty(c)
        rp, rh, rw = (0, 0, 0) if r is None else (r.data_ptr(), r.stride(2), r.stride(3))
        self.lib.fastnst_stream(int(r is not None), rp, rh, rw, y.data_ptr(), _DTYPE_CODE[y.dtype], y.shape[2], y.shape[3], c,
                                y.stride(2), y.stride(3), a.data_ptr(), b.data_ptr(), out.data_ptr(), out.stride(2), out.stride(3),
                                lo.data_ptr(), hi.data_ptr())
        return lo, hi


def _reflect(p: torch.Tensor, size: int) -> torch.Tensor:
    p = torch.where(p < 0, -p, p)
    return torch.where(p > size - 1, 2 * (size - 1) - p, p)


@lru_cache(maxsize=256)
def index_map(length: int, shift: int, size: int, mode: str = "reflect", phased: bool = False) -> torch.Tensor:
    """The int32 row (or column) map of ``remap``: entry k reads row P = k - shift, brought into
    [0, size) by ``mode`` ("reflect" or "replicate"), as source row * 2 + phase bit.

    ``phased``: the rows are full-resolution rows read from a 2x2 phase conv's (size/2 + 1)-row output,
    where phase a = P & 1 holds row P in its row (P >> 1) + a."""
    p = torch.arange(length) - shift
    p = p.clamp(0, size - 1) if mode == "replicate" else _reflect(p, size)
    if not phased:
        return (p * 2).to(torch.int32)
    a = p & 1
    return (((p >> 1) + a) * 2 + a).to(torch.int32)


class TorchOps:
    """The passes of NativeOps as eager torch code: the reference, and the path where no compiler is
    found (same results to float32 rounding, several times slower)."""

    @staticmethod
    def remap(src: torch.Tensor, m: torch.Tensor, z: torch.Tensor, out: torch.Tensor, rows: torch.Tensor,
              cols: torch.Tensor, block: int = 1, phased: bool = False) -> torch.Tensor:
        c = out.shape[1] // (block * block)
        rr, ra, cc, cb = (rows >> 1).long(), (rows & 1).long(), (cols >> 1).long(), (cols & 1).long()
        x = src[0]
        for ap in range(block):
            for bp in range(block):
                r, a, col, b = rr[ap::block], ra[ap::block], cc[bp::block], cb[bp::block]
                base = (2 * a[:, None] + b[None, :]) * c if phased else torch.zeros(1, 1, dtype=torch.long)
                channel = base[..., None] + torch.arange(c)  # (rows, cols, c)
                v = x[channel, r[:, None, None], col[None, :, None]].float() * m + z
                v = v.clamp(0, 255).round() if out.dtype == torch.uint8 else v.clamp_min(0)
                out[0, (ap * block + bp) * c : (ap * block + bp + 1) * c] = v.permute(2, 0, 1).to(out.dtype)
        return out

    @staticmethod
    def quantize_weight(weight: torch.Tensor, in_scale: torch.Tensor | None = None, in_zero: torch.Tensor | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        if in_scale is not None:
            weight = weight * in_scale.view(1, -1, 1, 1)
        scale = (weight.abs().amax(dim=(1, 2, 3)) / 127).clamp_min(1e-12)
        q = torch.round(weight / scale.view(-1, 1, 1, 1)).clamp(-127, 127).to(torch.int8)
        shift = None if in_zero is None else (q.sum(dim=(2, 3), dtype=torch.int32).float() @ in_zero) * scale
        return q, scale, shift

    @staticmethod
    def image_u8(x: torch.Tensor, scale: float, out: torch.Tensor) -> torch.Tensor:
        out.copy_((x * scale).clamp(0, 255).round())
        return out

    @staticmethod
    def rgb_f32(o: torch.Tensor, h: int, w: int) -> torch.Tensor:
        _, _, hb, wb = o.shape
        img = o.permute(0, 2, 3, 1).reshape(hb, wb, 2, 2, 3).permute(4, 0, 2, 1, 3).reshape(1, 3, 2 * hb, 2 * wb)
        return img[..., :h, :w].contiguous()

    @classmethod
    def rgb_u8(cls, o: torch.Tensor, h: int, w: int) -> torch.Tensor:
        img = (cls.rgb_f32(o, h, w) * 255).clamp(0, 255).round().to(torch.uint8)
        return img.permute(0, 2, 3, 1).contiguous()

    @staticmethod
    def stats(y: torch.Tensor, phase_channels: int = 0, moments: bool = True
              ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor]:
        top = y.amax(dim=(0, 2, 3)).float()
        if not moments:
            return None, None, top
        if not phase_channels:
            v = y.double()
            return v.mean(dim=(0, 2, 3)).float(), v.var(dim=(0, 2, 3), unbiased=False).float(), top
        pc = phase_channels
        _, _, hp, wp = y.shape
        phases = [y[0, g * pc : (g + 1) * pc, g // 2 : g // 2 + hp - 1, g % 2 : g % 2 + wp - 1] for g in range(4)]
        v = torch.cat([p.reshape(pc, -1) for p in phases], dim=1).double()
        return v.mean(dim=1).float(), v.var(dim=1, unbiased=False).float(), top

    @staticmethod
    def stream(r: torch.Tensor | None, y: torch.Tensor, a: torch.Tensor, b: torch.Tensor, out: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
        v = y.float() * a.view(1, -1, 1, 1) + b.view(1, -1, 1, 1)
        v = v.clamp_min(0) if r is None else r + v
        out.copy_(v)
        return v.amin(dim=(0, 2, 3)), v.amax(dim=(0, 2, 3))


_lock = threading.Lock()
_loaded: list[NativeOps | None] = []


def load_ops() -> NativeOps | TorchOps:
    """The native passes, built on first use, or TorchOps where they cannot be built or loaded (or
    with FASTNST_NATIVE=0, read at every call)."""
    if os.environ.get("FASTNST_NATIVE", "1") == "0":
        return TorchOps()
    with _lock:
        if not _loaded:
            _loaded.append(_load_native())
        return _loaded[0] or TorchOps()


def _load_native() -> NativeOps | None:
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return None
    compiler = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        warnings.warn("fastnst: no C++ compiler found for the int8 kernels; using slower torch code", RuntimeWarning, stacklevel=3)
        return None
    key = hashlib.sha256(b"\0".join([SOURCE.read_bytes(), " ".join(FLAGS).encode(), compiler.encode(),
                                     _cpu_flags().encode()])).hexdigest()[:16]
    target = _cache_dir() / f"int8_ops-{key}.so"
    try:
        if not target.exists():
            _build(compiler, target)
            _prune_stale(target.parent, keep=target)
        elif time.time() - target.stat().st_mtime > 86400:
            os.utime(target)  # the mtime marks the last use, for _prune_stale
        lib = ctypes.CDLL(str(target))  # ctypes releases the GIL during calls
        if lib.fastnst_abi_version() != ABI_VERSION:
            raise OSError(f"{target}: ABI version {lib.fastnst_abi_version()}, expected {ABI_VERSION}")
        return NativeOps(lib)
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        warnings.warn(f"fastnst: could not build the native int8 kernels ({exc} {detail.decode(errors='replace')[:300]}); "
                      "using slower torch code", RuntimeWarning, stacklevel=3)
        return None
