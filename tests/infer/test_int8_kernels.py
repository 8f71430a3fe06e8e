"""The int8 network's elementwise passes (fastnst.infer.backends.native): the native library against the torch
reference, and the fallback to it when the library cannot be built."""

from __future__ import annotations

import os
import time
import warnings

import pytest
import torch
import torch.nn.functional as F

from fastnst.infer.backends import native as int8_kernels
from fastnst.infer.backends.native import NativeOps, TorchOps, index_map, load_ops

CL = torch.channels_last


@pytest.fixture(scope="module")
def native() -> NativeOps:
    ops = load_ops()
    if not isinstance(ops, NativeOps):
        pytest.skip("no C++ compiler here: the torch passes are used")
    return ops


def activation(c: int, h: int, w: int, dtype=torch.bfloat16, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, c, h, w, generator=g) * torch.rand(1, c, 1, 1, generator=g) * 4 + torch.randn(1, c, 1, 1, generator=g) * 3
    return x.to(dtype).contiguous(memory_format=CL)


def affine(c: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(c)
    return torch.rand(c, generator=g) * 20 + 1, torch.randn(c, generator=g) * 40 + 60


def assert_u8_close(got: torch.Tensor, want: torch.Tensor) -> None:
    """Native code uses fused multiply-adds: a value within an ulp of .5 may round the other way."""
    diff = (got.int() - want.int()).abs()
    assert diff.max() <= 1 and (diff > 0).float().mean() < 1e-3


@pytest.mark.parametrize("mode", ["reflect", "replicate"])
def test_index_map_pads_as_torch_does(mode):
    rows = torch.arange(7.0).view(1, 1, 7, 1)
    want = F.pad(rows, (0, 0, 3, 3), mode=mode).flatten()
    assert torch.equal(index_map(13, 3, 7, mode) // 2, want.int())


def test_phased_index_map_reads_each_full_resolution_row_from_its_phase():
    # a 2x2 phase conv's output for a 4-row image has 3 rows per phase; row P lives in phase P % 2
    # at row P // 2 + P % 2
    m = index_map(4, 0, 4, phased=True)
    assert (m // 2).tolist() == [0, 1, 1, 2] and (m % 2).tolist() == [0, 1, 0, 1]


@pytest.mark.parametrize("c", [16, 64, 12])  # vectorised channel counts and the generic loop
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_stats_match_torch(native, c, dtype):
    y = activation(c, 37, 53, dtype)
    for moments in (True, False):
        got, want = native.stats(y, moments=moments), TorchOps.stats(y, moments=moments)
        assert torch.equal(got[2], want[2])
        if moments:
            torch.testing.assert_close(got[0], want[0], rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(got[1], want[1], rtol=1e-4, atol=1e-5)


def test_phase_stats_pool_the_four_phases_without_their_excluded_edges(native):
    y = activation(4 * 16, 21, 30)
    mean, var, top = native.stats(y, phase_channels=16)
    phases = [y[0, g * 16 : (g + 1) * 16, g // 2 : g // 2 + 20, g % 2 : g % 2 + 29].double() for g in range(4)]
    pooled = torch.cat([p.reshape(16, -1) for p in phases], dim=1)
    torch.testing.assert_close(mean.double(), pooled.mean(1), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(var.double(), pooled.var(1, unbiased=False), rtol=1e-4, atol=1e-5)
    assert top.shape == (64,) and torch.equal(top, y.amax(dim=(0, 2, 3)).float())


@pytest.mark.parametrize("c", [16, 32, 24])
@pytest.mark.parametrize("mode,pad", [("reflect", 1), ("reflect", 2), ("replicate", 1)])
def test_remap_pads_and_rounds_as_torch(native, c, mode, pad):
    y = activation(c, 19, 26)
    m, z = affine(c)
    rows, cols = index_map(19 + 2 * pad, pad, 19, mode), index_map(26 + 2 * pad, pad, 26, mode)
    out = torch.empty(1, c, 19 + 2 * pad, 26 + 2 * pad, dtype=torch.uint8, memory_format=CL)
    want = TorchOps.remap(y, m, z, out.clone(), rows, cols)
    assert_u8_close(native.remap(y, m, z, out, rows, cols), want)
    # the torch pass is the plain arithmetic with the padding of F.pad
    plain = F.pad((y.float() * m.view(1, -1, 1, 1) + z.view(1, -1, 1, 1)).clamp(0, 255).round(), (pad,) * 4, mode=mode)
    assert torch.equal(want.float(), plain)


def test_remap_to_bf16_is_relu_of_the_affine(native):
    y = activation(16, 40, 33)
    m, z = affine(16)
    z = z - 100  # some ReLU cuts
    rows, cols = index_map(42, 1, 40), index_map(35, 1, 33)
    out = torch.empty(1, 16, 42, 35, dtype=torch.bfloat16, memory_format=CL)
    got = native.remap(y, m, z, out, rows, cols).float()
    want = TorchOps.remap(y, m, z, out.clone(), rows, cols).float()
    torch.testing.assert_close(got, want, rtol=1e-2, atol=1e-2)  # bf16 rounding of a fused multiply-add
    assert (got == 0).any()


@pytest.mark.parametrize("block,mode,pad", [(1, "replicate", 1), (2, "reflect", 4)])
def test_remap_depth_to_space_of_a_phase_conv(native, block, mode, pad):
    """The upsampling layers: a (1, 4C, h+1, w+1) phase conv output written as the full-resolution
    (block 1) or space-to-depth (block 2) u8 buffer, padded, in one pass."""
    c, h, w = 16, 9, 12
    y = activation(4 * c, h + 1, w + 1)
    m, z = affine(c)
    rows = index_map(2 * h + 2 * pad, pad, 2 * h, mode, phased=True)
    cols = index_map(2 * w + 2 * pad, pad, 2 * w, mode, phased=True)
    out = torch.empty(1, block * block * c, rows.numel() // block, cols.numel() // block, dtype=torch.uint8, memory_format=CL)
    want = TorchOps.remap(y, m, z, out.clone(), rows, cols, block=block, phased=True)
    assert_u8_close(native.remap(y, m, z, out, rows, cols, block=block, phased=True), want)
    # the full-resolution image the phases make, padded, equals the reference (depth-to-space by hand)
    full = torch.empty(1, c, 2 * h, 2 * w)
    for g in range(4):
        a, b = divmod(g, 2)
        full[:, :, a::2, b::2] = y[:, g * c : (g + 1) * c, a : a + h, b : b + w].float()
    full = F.pad((full * m.view(1, -1, 1, 1) + z.view(1, -1, 1, 1)).clamp(0, 255).round(), (pad,) * 4, mode=mode)
    if block == 2:
        blocks = F.pixel_unshuffle(full, 2)  # channel-major: c*4 + phase
        full = blocks.view(1, c, 4, *out.shape[2:]).transpose(1, 2).reshape(1, 4 * c, *out.shape[2:])
    assert torch.equal(want.float(), full)


@pytest.mark.parametrize("residual", [False, True])
def test_stream_writes_the_value_and_its_range(native, residual):
    y = activation(64, 17, 23)
    a, b = torch.rand(64), torch.randn(64)
    r = activation(64, 17, 23, torch.float32, seed=1) if residual else None
    out = torch.empty(y.shape, memory_format=CL)
    lo, hi = native.stream(r, y, a, b, out)
    want = torch.empty_like(out)
    lo2, hi2 = TorchOps.stream(r, y, a, b, want)
    torch.testing.assert_close(out, want)
    torch.testing.assert_close((lo, hi), (lo2, hi2))
    if residual:  # in place, as the network calls it
        r2 = r.clone()
        native.stream(r2, y, a, b, r2)
        torch.testing.assert_close(r2, want)


@pytest.mark.parametrize("h,w", [(20, 30), (19, 27)])
def test_rgb_output_is_depth_to_space_rounded(native, h, w):
    o = (torch.rand(1, 12, 10, 15) * 1.4 - 0.2).contiguous(memory_format=CL)
    got = native.rgb_u8(o, h, w)
    want = TorchOps.rgb_u8(o, h, w)
    assert got.shape == (1, h, w, 3)
    assert_u8_close(got, want)
    channel_major = o.view(1, 4, 3, 10, 15).transpose(1, 2).reshape(1, 12, 10, 15)  # pixel_shuffle's order
    want_float = (F.pixel_shuffle(channel_major, 2)[0, :, :h, :w] * 255).clamp(0, 255).round()
    assert torch.equal(want[0].permute(2, 0, 1).float(), want_float)


def test_a_failed_build_falls_back_to_torch(tmp_path, monkeypatch):
    monkeypatch.setattr(int8_kernels, "_loaded", [])
    monkeypatch.setenv("FASTNST_CACHE", str(tmp_path))
    monkeypatch.setenv("CXX", "false")  # a "compiler" that always fails
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ops = load_ops()
    assert isinstance(ops, TorchOps)
    assert any("native int8 kernels" in str(w.message) for w in caught)
    assert list(tmp_path.iterdir()) == []  # no half-written library left behind


def test_stale_builds_are_pruned_by_age(tmp_path):
    now = time.time()
    keep, fresh, stale = (tmp_path / f"int8_ops-{name}.so" for name in ("keep", "fresh", "stale"))
    other = tmp_path / "notes.txt"  # not a build: never touched
    for f in (keep, fresh, stale, other):
        f.write_bytes(b"x")
    for f in (keep, stale, other):
        os.utime(f, (now - 40 * 86400, now - 40 * 86400))
    int8_kernels._prune_stale(tmp_path, keep=keep)
    assert sorted(f.name for f in tmp_path.iterdir()) == ["int8_ops-fresh.so", "int8_ops-keep.so", "notes.txt"]


def test_native_zero_selects_the_torch_passes(monkeypatch):
    monkeypatch.setenv("FASTNST_NATIVE", "0")
    assert isinstance(load_ops(), TorchOps)


@pytest.mark.parametrize("with_zero", [False, True])
def test_weight_quantization_matches_torch(native, with_zero):
    g = torch.Generator().manual_seed(3)
    w = torch.randn(64, 32, 3, 3, generator=g)
    s = torch.rand(32, generator=g) + 0.1
    z = torch.randint(0, 255, (32,), generator=g).float() if with_zero else None
    q, scale, shift = native.quantize_weight(w, s, z)
    q2, scale2, shift2 = TorchOps.quantize_weight(w, s, z)
    assert torch.equal(q, q2) and torch.equal(scale, scale2)
    if with_zero:
        torch.testing.assert_close(shift, shift2, rtol=1e-5, atol=1e-3)
    else:
        assert shift is None and shift2 is None


def test_float_image_in_and_out(native):
    x = torch.rand(1, 3, 13, 22) * 1.2 - 0.1
    out = torch.empty(1, 3, 13, 22, dtype=torch.uint8, memory_format=CL)
    assert_u8_close(native.image_u8(x, 255.0, out), TorchOps.image_u8(x, 255.0, out.clone()))
    o = torch.randn(1, 12, 7, 11).contiguous(memory_format=CL)
    got = native.rgb_f32(o, 13, 21)
    assert got.shape == (1, 3, 13, 21) and torch.equal(got, TorchOps.rgb_f32(o, 13, 21))
    channel_major = o.view(1, 4, 3, 7, 11).transpose(1, 2).reshape(1, 12, 7, 11)
    assert torch.equal(got, F.pixel_shuffle(channel_major, 2)[..., :13, :21])


# A cached library is verified before it is loaded. These run the loading in a child process: a library
# cut short kills its process with SIGBUS when loaded, and that must not be the test session.
_LOAD_AND_RUN = """
import torch
from fastnst.infer.backends.native import load_ops
ops = load_ops()
ops.stats(torch.randn(1, 16, 8, 8).contiguous(memory_format=torch.channels_last))
print(type(ops).__name__)
"""


def _load_in_child(cache, tmp_path, env_extra=None):
    import subprocess

    from tests.support import PYTHON, subprocess_env

    env = subprocess_env(tmp_path)
    env["FASTNST_CACHE"] = str(cache)
    env.pop("FASTNST_NATIVE", None)
    env.update(env_extra or {})
    return subprocess.run([PYTHON, "-c", _LOAD_AND_RUN], env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def built_cache(tmp_path_factory, native):
    """A cache directory holding a good build, made once; tests work on copies of it."""
    cache = tmp_path_factory.mktemp("kernel_cache")
    proc = _load_in_child(cache, cache)
    assert proc.stdout.strip() == "NativeOps", proc.stderr
    return cache


def _copy_cache(built_cache, tmp_path):
    import shutil

    cache = tmp_path / "cache"
    shutil.copytree(built_cache, cache, ignore=shutil.ignore_patterns("torch*", "tmp*"))
    libraries = sorted(cache.glob("int8_ops-*.so"))
    assert len(libraries) == 1
    return cache, libraries[0]


@pytest.mark.parametrize("damage", ["truncated", "empty"])
def test_a_damaged_cached_library_is_rebuilt_not_loaded(built_cache, tmp_path, damage):
    cache, library = _copy_cache(built_cache, tmp_path)
    size = library.stat().st_size
    with open(library, "r+b") as f:
        f.truncate(size // 3 if damage == "truncated" else 0)
    proc = _load_in_child(cache, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]  # not -7 (SIGBUS)
    assert proc.stdout.strip() == "NativeOps" and "damaged" in proc.stderr
    assert library.stat().st_size == size  # rebuilt in place
    assert proc.returncode == 0 and _load_in_child(cache, tmp_path).stderr == ""  # and then used as it is


def test_a_cached_library_is_used_without_a_compiler(built_cache, tmp_path, monkeypatch):
    cache, library = _copy_cache(built_cache, tmp_path)
    monkeypatch.setattr(int8_kernels, "_loaded", [])
    monkeypatch.setenv("FASTNST_CACHE", str(cache))
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(int8_kernels.shutil, "which", lambda name: None)  # no compiler on PATH
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert isinstance(load_ops(), NativeOps)


def test_without_a_compiler_a_damaged_library_is_deleted_and_the_torch_passes_used(built_cache, tmp_path):
    cache, library = _copy_cache(built_cache, tmp_path)
    with open(library, "r+b") as f:
        f.truncate(library.stat().st_size // 3)
    # no compiler: CXX names none and PATH holds only the interpreter's directory
    import sys

    proc = _load_in_child(cache, tmp_path, {"CXX": "", "PATH": os.path.dirname(sys.executable)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "TorchOps" and "damaged" in proc.stderr and "no C++ compiler" in proc.stderr
    assert list(cache.glob("int8_ops-*")) == []


def test_a_build_killed_midway_leaves_a_temporary_file_that_is_pruned_later(tmp_path):
    old, young = tmp_path / ".int8_ops-abc.123.tmp", tmp_path / ".int8_ops-abc.456.tmp"
    for f in (old, young):
        f.write_bytes(b"")
    os.utime(old, (time.time() - 2 * 3600, time.time() - 2 * 3600))
    int8_kernels._prune_stale_temps(tmp_path)
    assert [f.name for f in tmp_path.iterdir()] == [young.name]  # a younger one may be a build in progress
