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

The library is compiled once per ISA level and source (``g++ -O3 -fopenmp`` with ``-mavx2 -mfma`` on AVX2
CPUs, plus the AVX-512 F/BW/VL/DQ flags where the CPU as capped has them, no ISA flags on ARM or other
CPUs: see ``build_flags``; ~3 s) into ``$FASTNST_CACHE`` or ``~/.cache/fastnst`` and loaded with
ctypes (no Python headers, no pybind). It runs on the OpenMP runtime PyTorch already loaded, so
``torch.set_num_threads`` applies. ``FASTNST_NATIVE=0`` selects the torch code (tests compare the two).
A cached build is checked before it is loaded against the size and sha256 recorded beside it
(``<library>.sha256``): a damaged one (cut short, empty) is deleted and rebuilt, never loaded. The cache
is looked at first, so a machine without a compiler still uses a build made before.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import shutil
import subprocess
import sys
import threading
import time
import warnings
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F

__all__ = ["NativeOps", "TorchOps", "build_flags", "index_map", "load_ops", "native_level", "native_status"]

SOURCE = Path(__file__).with_name("csrc") / "native_passes.cpp"
ABI_VERSION = 2
FLAGS = ["-O3", "-fopenmp", "-fno-math-errno", "-shared", "-fPIC", "-std=c++17"]
# The ISA flags of each level (fastnst.cpu_features.native_level): the source's AVX-512 intrinsics are
# compiled only with __AVX512F__ and __AVX512BW__; every other loop is plain C++ that gcc vectorises.
LEVEL_FLAGS = {
    "avx512": ["-mavx2", "-mfma", "-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq"],
    "avx2": ["-mavx2", "-mfma"],
    "generic": [],
}

_DTYPE_CODE = {torch.float32: 0, torch.bfloat16: 1}  # the conv outputs and the residual stream
_i64, _i32, _ptr = ctypes.c_int64, ctypes.c_int, ctypes.c_void_p


def _data(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def _cache_dir() -> Path:
    from fastnst.cpu_features import cache_dir

    return cache_dir()


def native_level() -> str:
    """The ISA level this CPU (as capped by ONEDNN_MAX_CPU_ISA / ATEN_CPU_CAPABILITY) gets: avx512, avx2 or generic."""
    from fastnst import cpu_features

    cpu = cpu_features.read_cpu()
    return cpu_features.native_level(cpu, cpu_features.effective_features(cpu, cpu_features.read_caps()))


def build_flags(level: str | None = None) -> list[str]:
    """The compiler flags for an ISA level (default: this CPU's)."""
    return [*FLAGS, *LEVEL_FLAGS[level or native_level()]]


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
                _checksum_path(old).unlink(missing_ok=True)
        except OSError:
            pass  # another process pruned it first


def _prune_stale_temps(cache: Path, max_age_s: float = 3600) -> None:
    """Delete build outputs a killed compiler left behind (``.int8_ops-*.tmp``) once they are older than
    any build takes; younger ones may be another process's build in progress."""
    cutoff = time.time() - max_age_s
    for tmp in cache.glob(".int8_ops-*.tmp"):
        try:
            if tmp.stat().st_mtime < cutoff:
                tmp.unlink()
        except OSError:
            pass


def _checksum_path(target: Path) -> Path:
    return target.with_name(target.name + ".sha256")


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write_checksum(target: Path) -> None:
    """Record the library's size and sha256 beside it (atomically), for _verified."""
    side = _checksum_path(target)
    tmp = side.with_name(f".{side.name}.{os.getpid()}.tmp")
    tmp.write_text(f"{_file_digest(target)} {target.stat().st_size}\n")
    os.replace(tmp, side)


def _verified(target: Path) -> bool:
    """Whether the cached library is the one that was built: its size and sha256 match the record
    written beside it. A library cut short (a full disk, a crash while the cache was written back) maps
    pages past its end, and touching them kills the process with SIGBUS, so it must never be loaded."""
    try:
        digest, size = _checksum_path(target).read_text().split()
        return target.stat().st_size == int(size) > 0 and _file_digest(target) == digest
    except (OSError, ValueError):
        return False


def _loads_in_a_child(target: Path) -> bool:
    """Load the library in a separate process and ask its ABI version: a damaged file kills the child,
    not this process. For a library with no checksum record (built by an older fastnst)."""
    if not target.is_file() or target.stat().st_size == 0:
        return False
    code = f"import ctypes, sys; sys.exit(0 if ctypes.CDLL(sys.argv[1]).fastnst_abi_version() == {ABI_VERSION} else 1)"
    try:
        return subprocess.run([sys.executable, "-c", code, str(target)], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def _build(compiler: str, target: Path, flags: list[str] | None = None) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    # A name _prune_stale_temps recognises, should the compiler be killed before the finally below runs.
    tmp = str(target.with_name(f".{target.stem}.{os.getpid()}.{os.urandom(4).hex()}.tmp"))
    try:
        subprocess.run([compiler, *(flags or build_flags()), "-o", tmp, str(SOURCE)], check=True, capture_output=True, timeout=300)
        os.replace(tmp, target)  # atomic: a concurrent process sees the old file or the whole new one
        _write_checksum(target)
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
        lib.fastnst_remap_f32_relu.argtypes = lib.fastnst_remap_u8.argtypes
        lib.fastnst_remap_f32_relu.restype = None
        lib.fastnst_isa_level.restype = ctypes.c_int
        self.isa_level = {2: "avx512", 1: "avx2"}.get(lib.fastnst_isa_level(), "generic")  # what the build took
        lib.fastnst_stats.argtypes = [_ptr, _i32, _i64, _i64, _i32, _i64, _i64, _i32, _i32, _ptr, _ptr, _ptr]
        lib.fastnst_stream.argtypes = [_i32, _ptr, _i64, _i64, _ptr, _i32, _i64, _i64, _i32, _i64, _i64, _ptr, _ptr, _ptr, _i64, _i64,
                                       _ptr, _ptr]
        lib.fastnst_rgb_u8.argtypes = [_ptr, _i64, _i64, _i64, _i64, _ptr]
        lib.fastnst_quantize_weight.argtypes = [_ptr, _i64, _i64, _i64, _ptr, _ptr, _ptr, _ptr, _ptr]
        lib.fastnst_quantize_weight_pairs.argtypes = lib.fastnst_quantize_weight.argtypes
        lib.fastnst_quantize_weight_pairs.restype = None
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
        (out u8) or ReLU'd to bf16 or float32 (out of that dtype), read from the source pixel the index maps name.

        ``rows`` (int32, ``out rows * block``): source row * 2 + phase bit for each output row and, with
        ``block`` 2, each of its two sub-rows (space-to-depth output: channel (a'*2 + b')*C + c);
        ``cols`` likewise. ``phased``: src is phase-major (4*C channels), the phase bits pick (2a + b)*C.
        """
        self._check(src)
        self._check(out)
        c = out.shape[1] // (block * block)
        assert block in (1, 2) and m.dtype == z.dtype == torch.float32 and m.numel() == z.numel() == c
        assert rows.numel() == out.shape[2] * block and cols.numel() == out.shape[3] * block
        fn = {torch.uint8: self.lib.fastnst_remap_u8, torch.bfloat16: self.lib.fastnst_remap_bf16_relu,
              torch.float32: self.lib.fastnst_remap_f32_relu}[out.dtype]
        fn(src.data_ptr(), _DTYPE_CODE[src.dtype], src.stride(2), src.stride(3), c, int(phased), rows.data_ptr(), out.shape[2],
           cols.data_ptr(), out.shape[3], block, m.data_ptr(), z.data_ptr(), out.data_ptr(), out.stride(2), out.stride(3))
        return out

    def quantize_weight(self, weight: torch.Tensor, in_scale: torch.Tensor | None = None, in_zero: torch.Tensor | None = None,
                        pair_bound: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """A float32 (O, I, kh, kw) conv weight times ``in_scale`` (per input channel) as symmetric int8
        with one scale per output channel, and, with ``in_zero`` (per input channel u8 zero points),
        the bias shift scale[o] * sum over c and taps of q[o, c] * in_zero[c].

        The scale maps the largest |w| to 127, or with ``pair_bound`` the largest |w[o, 2k, t]| +
        |w[o, 2k+1, t]| to 127, so that the rounded pair sums stay <= 128: a u8 x s8 pair summed in 16
        bits (oneDNN's kernels without VNNI: vpmaddubsw) then never saturates (255 * 128 < 2^15)."""
        assert weight.dtype == torch.float32 and weight.is_contiguous()
        o, i = weight.shape[:2]
        q = torch.empty(weight.shape, dtype=torch.int8)
        scale = torch.empty(o)
        shift = None if in_zero is None else torch.empty(o)
        in_scale, in_zero = (None if t is None else t.float().contiguous() for t in (in_scale, in_zero))  # alive during the call
        fn = self.lib.fastnst_quantize_weight_pairs if pair_bound else self.lib.fastnst_quantize_weight
        fn(weight.data_ptr(), o, i, weight[0, 0].numel(), _data(in_scale), _data(in_zero), q.data_ptr(), scale.data_ptr(), _data(shift))
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
    def quantize_weight(weight: torch.Tensor, in_scale: torch.Tensor | None = None, in_zero: torch.Tensor | None = None,
                        pair_bound: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        if in_scale is not None:
            weight = weight * in_scale.view(1, -1, 1, 1)
        a = weight.abs()
        if pair_bound:  # |w| of input channels 2k, 2k+1 summed per tap (an odd last channel pairs with 0)
            a = F.pad(a, (0, 0, 0, 0, 0, a.shape[1] % 2))
            a = a.view(a.shape[0], -1, 2, *a.shape[2:]).sum(2)
        scale = (a.amax(dim=(1, 2, 3)) / 127).clamp_min(1e-12)
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


def _source_key(flags: list[str]) -> str:
    """What the library is built from, compiler aside: the source and the flags (the ISA level among them)."""
    return hashlib.sha256(b"\0".join([SOURCE.read_bytes(), " ".join(flags).encode()])).hexdigest()[:16]


def _library_path(level: str, flags: list[str], compiler: str) -> Path:
    return _cache_dir() / f"int8_ops-{level}-{_source_key(flags)}-{hashlib.sha256(compiler.encode()).hexdigest()[:8]}.so"


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:  # pruned by another process meanwhile
        return 0.0


def _cached_library(compiler: str | None, level: str, flags: list[str]) -> Path | None:
    """The cached library to load, checked: this compiler's build, or without a compiler the newest
    good build of this source and ISA level by any compiler. Bad files are deleted (rebuilt when a
    compiler is there); None when there is nothing good."""
    if compiler is not None:
        candidates = [_library_path(level, flags, compiler)]
    else:
        candidates = sorted(_cache_dir().glob(f"int8_ops-{level}-{_source_key(flags)}-*.so"), key=_mtime, reverse=True)
    for target in candidates:
        if not target.exists():
            continue
        if _verified(target):
            return target
        if not _checksum_path(target).exists() and _loads_in_a_child(target):
            _write_checksum(target)  # an older fastnst's build that loads: record it
            return target
        warnings.warn(f"fastnst: the cached int8 kernel library {target} is damaged (it does not match the size and "
                      "checksum recorded at its build, or does not load); deleting it" + (" and rebuilding" if compiler else ""),
                      RuntimeWarning, stacklevel=4)
        for path in (target, _checksum_path(target)):
            with contextlib.suppress(OSError):
                path.unlink()
    return None


def _load_native() -> NativeOps | None:
    level = native_level()
    flags = build_flags(level)
    _status.clear()
    _status.update(level=level, flags=" ".join(flags), path="")
    compiler = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    _status.update(compiler=compiler or "")
    try:
        # A build already in the cache is used first: a machine without a compiler (or one the
        # compiler was removed from) keeps the fast passes it built before.
        target = _cached_library(compiler, level, flags)
        if target is None:
            if compiler is None:
                _status.update(state="failed", reason="no C++ compiler (set CXX or install g++) and no cached build")
                warnings.warn("fastnst: no C++ compiler found for the int8 kernels; using slower torch code", RuntimeWarning,
                              stacklevel=3)
                return None
            target = _library_path(level, flags, compiler)
            _status["path"] = str(target)
            _build(compiler, target, flags)
            _prune_stale(target.parent, keep=target)
            _prune_stale_temps(target.parent)
            _status["state"] = "built"
        else:
            _status.update(state="cached", path=str(target))
            if time.time() - target.stat().st_mtime > 86400:
                os.utime(target)  # the mtime marks the last use, for _prune_stale
        lib = ctypes.CDLL(str(target))  # ctypes releases the GIL during calls
        if lib.fastnst_abi_version() != ABI_VERSION:
            raise OSError(f"{target}: ABI version {lib.fastnst_abi_version()}, expected {ABI_VERSION}")
        ops = NativeOps(lib)
        _status["isa_level"] = ops.isa_level
        return ops
    except (OSError, subprocess.SubprocessError, AttributeError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        reason = f"{exc} {detail.decode(errors='replace')[:300]}".strip()
        _status.update(state="failed", reason=reason)
        warnings.warn(f"fastnst: could not build the native int8 kernels ({reason}); using slower torch code", RuntimeWarning, stacklevel=3)
        return None


_status: dict[str, str] = {}


def native_status(load: bool = False) -> dict[str, str]:
    """How the native passes stand in this process: ``state`` (built, cached, failed, disabled or not
    loaded), ``reason`` when failed or disabled, ``level`` and ``flags`` of the build, ``isa_level``
    (what the loaded library took), ``path``; the torch fallback runs unless the state is built or
    cached. ``load``: build or load them first (as the int8 network's first call does)."""
    if os.environ.get("FASTNST_NATIVE", "1") == "0":
        return {"state": "disabled", "reason": "FASTNST_NATIVE=0", "level": native_level(), "path": ""}
    if load:
        load_ops()
    with _lock:
        if not _loaded:
            level = native_level()
            return {"state": "not loaded", "level": level, "flags": " ".join(build_flags(level)), "path": ""}
        return dict(_status)
