"""The inference path by CPU class (fastnst.cpu_features): the choice for each class with the probes
monkeypatched, the caps, the probe's disk cache, the int8 network's float32 layers and pair-bounded
weights where the CPU lacks bf16 units / VNNI, the native build's flags per ISA level (ARM included),
and ``python -m fastnst info``. No timing assertions: the probe's timings are faked."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys

import pytest
import torch

from fastnst import cpu_features as cf
from fastnst import runtime
from fastnst.cpu_features import Caps, CpuInfo, Int8Probe, Int8Variant
from fastnst.infer.backends import native as int8_kernels
from fastnst.infer.backends.int8 import GUARD_MIN_PSNR, Int8Net, guard_image
from fastnst.infer.backends.native import NativeOps, TorchOps, build_flags, index_map
from fastnst.nets.modelfile import CHECKPOINTS_DIR, load_style_model
from tests.support import random_style_net

pytestmark = pytest.mark.usefixtures("default_malloc")

X86 = {
    "avx2": {"avx2", "fma"},
    "avx512": {"avx2", "fma", "avx512f", "avx512bw"},
    "avx512_vnni": {"avx2", "fma", "avx512f", "avx512bw", "avx512_vnni"},
    "avx512_bf16": {"avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16"},
    "amx": {"avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16"},
    "avx_vnni": {"avx2", "fma", "avx_vnni"},
}


def chip(name: str) -> CpuInfo:
    if name == "aarch64":
        return CpuInfo("aarch64", "Neoverse-V1", frozenset({"asimd", "asimddp", "i8mm", "bf16", "sve"}), "/proc/cpuinfo")
    return CpuInfo("x86_64", f"test {name}", frozenset(X86[name]), "/proc/cpuinfo")


def probe_of(fast: bool, seen: list | None = None):
    def probe(variant: Int8Variant) -> Int8Probe:
        if seen is not None:
            seen.append(variant)
        return Int8Probe(0.5e-3 if fast else 50e-3, 1e-3, True)

    return probe


@pytest.fixture(scope="module")
def starry():
    return load_style_model(CHECKPOINTS_DIR / "starry.safetensors").net.eval()


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a.double() - b.double()) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


# -- the choice per CPU class -------------------------------------------------------------------------


@pytest.mark.parametrize("name, klass, float_dtype, pairs, out_dtype, fallback", [
    ("avx2", "avx2", "float32", True, "float32", "fp32"),  # most laptops: no VNNI, no bf16 units
    ("avx512", "avx512", "float32", True, "bfloat16", "fp32"),  # Skylake-SP: AVX-512 without VNNI
    ("avx512_vnni", "avx512_vnni", "float32", False, "bfloat16", "fp32"),  # Cascade/Ice Lake: VNNI, no bf16 units
    ("avx_vnni", "avx_vnni", "float32", False, "float32", "fp32"),  # Alder Lake: AVX-VNNI
    ("avx512_bf16", "avx512_bf16", "bfloat16", False, "bfloat16", "bf16"),  # Cooper Lake, Zen 4
    ("amx", "amx", "bfloat16", False, "bfloat16", "bf16"),  # Sapphire Rapids
])
def test_each_x86_class_gets_its_variant_and_int8_only_when_the_probe_finds_it_fast(name, klass, float_dtype, pairs, out_dtype,
                                                                                   fallback):
    seen: list[Int8Variant] = []
    plan = cf.plan_auto(chip(name), Caps(), has_qconv=True, probe=probe_of(True, seen))
    assert (plan.cpu_class, plan.precision, plan.fallback) == (klass, "int8", fallback)
    variant = Int8Variant(float_dtype, pairs, out_dtype)
    assert seen == [variant]  # the probe times the variant the network will run
    assert plan.variant == variant and "int8" in plan.reason and klass in plan.reason
    slow = cf.plan_auto(chip(name), Caps(), has_qconv=True, probe=probe_of(False))
    assert slow.precision == fallback and "not fast" in slow.reason
    assert cf.plan_auto(chip(name), Caps(), has_qconv=False, probe=probe_of(True)).precision == fallback


def test_an_inexact_or_failed_probe_never_picks_int8():
    inexact = cf.plan_auto(chip("avx2"), Caps(), has_qconv=True, probe=lambda v: Int8Probe(1e-4, 1e-3, exact=False))
    failed = cf.plan_auto(chip("avx2"), Caps(), has_qconv=True, probe=lambda v: Int8Probe(math.inf, 0.0, False, error="boom"))
    assert inexact.precision == failed.precision == "fp32"
    assert "saturates" in inexact.reason and "boom" in failed.reason


def test_arm_takes_fp32_without_probing_and_builds_generic(monkeypatch):
    def no_probe(variant):
        raise AssertionError("no int8 probe on ARM")

    plan = cf.plan_auto(chip("aarch64"), Caps(), has_qconv=True, probe=no_probe)
    assert plan.precision == plan.fallback == "fp32" and "aarch64" in plan.reason
    monkeypatch.setattr(cf, "read_cpu", lambda: chip("aarch64"))
    assert not runtime.cpu_supports_bf16()
    assert runtime.resolve_precision("auto", torch.device("cpu")) == torch.float32
    assert int8_kernels.native_level() == "generic"
    flags = build_flags()
    assert not [f for f in flags if f.startswith(("-m", "-march"))] and "-O3" in flags


def test_build_flags_follow_the_isa_level_and_the_caps(monkeypatch):
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)
    monkeypatch.setattr(cf, "read_cpu", lambda: chip("amx"))
    assert int8_kernels.native_level() == "avx512" and "-mavx512bw" in build_flags()
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    assert int8_kernels.native_level() == "avx2" and "-mavx512f" not in build_flags() and "-mavx2" in build_flags()
    monkeypatch.setattr(cf, "read_cpu", lambda: CpuInfo("x86_64", "old", frozenset(), "/proc/cpuinfo"))
    assert int8_kernels.native_level() == "generic"
    assert all("-march=native" not in build_flags(level) for level in int8_kernels.LEVEL_FLAGS)


@pytest.mark.parametrize("caps, klass, bf16, pairs, bf16_out", [
    (Caps("AVX2", "avx2"), "avx2", False, True, False),  # the Xeon capped to look like a laptop
    (Caps("AVX2", None), "avx2", False, True, False),
    (Caps(None, "avx2"), "avx2", False, True, False),  # ATEN's cap below avx512: no VNNI, no bf16 either
    (Caps("AVX512_CORE", None), "avx512", False, True, True),
    (Caps("AVX512_CORE_VNNI", None), "avx512_vnni", False, False, True),
    (Caps("AVX512_CORE_BF16", "avx512"), "avx512_bf16", True, False, True),
    (Caps("AVX10_1_512_AMX", None), "amx", True, False, True),
    (Caps("DEFAULT", None), "amx", True, False, True),
])
def test_caps_lower_what_an_amx_chip_may_use(caps, klass, bf16, pairs, bf16_out):
    feats = cf.effective_features(chip("amx"), caps)
    assert cf.cpu_class(chip("amx"), feats) == klass
    assert cf.has_bf16_units(feats) == bf16
    assert cf.int8_variant(feats) == Int8Variant("bfloat16" if bf16 else "float32", pairs, "bfloat16" if bf16_out else "float32")
    plan = cf.plan_auto(chip("amx"), caps, has_qconv=True, probe=probe_of(False))
    assert plan.precision == ("bf16" if bf16 else "fp32")
    if caps.onednn not in (None, "DEFAULT"):
        assert "capped" in plan.reason


def test_caps_are_read_from_the_environment_and_honoured_by_bf16(monkeypatch):
    monkeypatch.setattr(cf, "read_cpu", lambda: chip("amx"))
    monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "avx512_core_bf16")
    assert cf.read_caps() == Caps("AVX512_CORE_BF16", None) and runtime.cpu_supports_bf16()
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert not runtime.cpu_supports_bf16()
    assert runtime.resolve_precision("auto", torch.device("cpu")) == torch.float32
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    monkeypatch.setenv("DNNL_MAX_CPU_ISA", "AVX512_CORE_AMX")  # oneDNN's older name
    assert cf.read_caps().onednn == "AVX512_CORE_AMX" and runtime.cpu_supports_bf16()


def test_cpuinfo_parsing_x86_and_arm():
    x86 = ("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 1\nmodel name\t: AMD EPYC 7B13\n"
           "stepping\t: 1\nflags\t\t: fpu sse2 avx avx2 fma f16c bmi2 sha_ni\n\nprocessor\t: 1\nflags\t\t: avx512f\n")
    model, flags = cf.parse_cpuinfo(x86, "x86_64")
    assert model == "AMD EPYC 7B13 (family 25 model 1 stepping 1)" and flags == {"avx2", "fma"}
    arm = ("processor\t: 0\nBogoMIPS\t: 243.75\nFeatures\t: fp asimd evtstrm aes asimddp i8mm bf16 sve\n"
           "CPU implementer\t: 0x41\nCPU part\t: 0xd40\n")
    model, flags = cf.parse_cpuinfo(arm, "aarch64")
    assert "0xd40" in model and flags == {"asimd", "asimddp", "i8mm", "bf16", "sve"}
    assert cf.parse_cpuinfo("", "riscv64") == ("riscv64 CPU", frozenset())
    assert cf.normalise_arch("arm64") == "aarch64" and cf.normalise_arch("AMD64") == "x86_64"


# -- the probe's disk cache -------------------------------------------------------------------------


def test_probe_is_measured_once_cached_on_disk_and_keyed_by_the_caps(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTNST_CACHE", str(tmp_path))
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)
    calls = []

    def measure(variant):
        calls.append(variant)
        return 0.001, 0.002, True

    v = Int8Variant("float32", True)
    first = cf.int8_probe(v, measure=measure)
    again = cf.int8_probe(v, measure=measure)
    assert len(calls) == 1 and not first.cached and again.cached and again.ratio == pytest.approx(0.5) and again.fast
    entries = json.loads((tmp_path / cf.PROBE_FILE).read_text())
    assert list(entries) == [first.key] and entries[first.key]["variant"] == {"float_dtype": "float32", "pair_bound": True,
                                                                        "out_dtype": "float32"}
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")  # another cap is another key
    capped = cf.int8_probe(v, measure=measure)
    assert len(calls) == 2 and capped.key != first.key and not capped.cached
    assert cf.int8_probe(Int8Variant("bfloat16", False), measure=measure).key not in (first.key, capped.key)
    assert len(json.loads((tmp_path / cf.PROBE_FILE).read_text())) == 3
    (tmp_path / cf.PROBE_FILE).write_text("not json")  # a damaged cache is measured again, not an error
    assert not cf.int8_probe(v, measure=measure).cached and len(calls) == 4


def test_probe_key_names_cpu_caps_torch_and_variant():
    base = cf.probe_key(chip("avx2"), Caps(), Int8Variant("float32", True), "2.5.0")
    assert base != cf.probe_key(chip("avx512"), Caps(), Int8Variant("float32", True), "2.5.0")
    assert base != cf.probe_key(chip("avx2"), Caps(None, "avx2"), Int8Variant("float32", True), "2.5.0")
    assert base != cf.probe_key(chip("avx2"), Caps(), Int8Variant("float32", True), "2.6.0")


@pytest.mark.skipif(not hasattr(torch.ops.onednn, "qconv2d_pointwise"), reason="no oneDNN int8 convolution")
def test_the_real_probe_finds_the_pair_bound_exact_where_full_range_saturates():
    feats = cf.effective_features(cf.read_cpu(), Caps())
    pair = cf._measure(Int8Variant("float32", True))
    assert pair[2] and pair[0] > 0 and pair[1] > 0  # exact on the largest pair-bounded values, on every CPU
    if not cf.has_int8_dot(feats):  # this CPU saturates u8 x s8 pairs at 16 bits: full-range weights are wrong
        assert not cf._measure(Int8Variant("float32", False))[2]


# -- the int8 network's float32 layers and pair-bounded weights -------------------------------------------


def test_int8_float_layers_are_float32_without_bf16_units(monkeypatch, starry):
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)
    monkeypatch.setattr(cf, "read_cpu", lambda: chip("avx512_vnni"))
    net = Int8Net(starry)
    float_convs = [c for c, reads_float in zip(net.convs[1:], net.float_reader) if reads_float]
    assert float_convs and all(c.weight.dtype == torch.float32 for c in float_convs)
    # AVX-512 without bf16 units: the float conv computes in float32, the int8 convs still write bf16
    assert net.float_dtype == torch.float32 and net.mid_dtype == torch.bfloat16 and not net.variant.pair_bound
    monkeypatch.setattr(cf, "read_cpu", lambda: chip("amx"))
    assert Int8Net(starry).float_dtype == Int8Net(starry).mid_dtype == torch.bfloat16
    monkeypatch.setattr(cf, "read_cpu", lambda: chip("avx2"))  # oneDNN writes bf16 slowly there: all float32
    net = Int8Net(starry)
    assert net.variant == Int8Variant("float32", True) and net.mid_dtype == net.float_dtype == torch.float32


@pytest.mark.usefixtures("one_thread")
def test_int8_with_float32_layers_is_within_the_int8_tolerance_of_fp32(starry):
    photo = guard_image(160)[..., :, :144]
    # The pair bound where this CPU needs it (no VNNI), so the check runs on every x86 CPU.
    feats = cf.effective_features(cf.read_cpu(), cf.read_caps())
    pairs = not cf.has_int8_dot(feats)
    with torch.inference_mode():
        ref = starry(photo).clamp(0, 1)
    variants = {Int8Variant("float32", pairs), Int8Variant("float32", True)}
    if cf.has_avx512_core(feats):  # elsewhere oneDNN's reference kernel: slow
        variants.add(Int8Variant("float32", pairs, "bfloat16"))
    for variant in variants:
        net = Int8Net(starry, variant=variant)
        got = net(photo).clamp(0, 1)
        assert got.dtype == torch.float32 and net.float_dtype == torch.float32
        assert psnr(got, ref) >= GUARD_MIN_PSNR + 3  # as tests/test_int8.py for the bf16 layers
    dilated = random_style_net(8, 3, norm_scale=(-1.5, 1.5), dilations=(1, 2, 1))
    with torch.inference_mode():
        ref = dilated(photo).clamp(0, 1)
    assert psnr(Int8Net(dilated, variant=Int8Variant("float32", True))(photo).clamp(0, 1), ref) >= GUARD_MIN_PSNR


@pytest.mark.parametrize("shape", [(16, 3, 9, 9), (32, 16, 3, 3), (64, 64, 3, 3), (12, 48, 5, 5)])
def test_pair_bounded_quantization_keeps_every_pair_at_most_128(shape):
    g = torch.Generator().manual_seed(0)
    w = torch.randn(shape, generator=g)
    scale_in = torch.rand(shape[1], generator=g) + 0.5
    zero = torch.randint(0, 255, (shape[1],), generator=g).float()
    q, scale, shift = TorchOps.quantize_weight(w, scale_in, zero, pair_bound=True)
    a = q.abs().int()
    a = torch.nn.functional.pad(a, (0, 0, 0, 0, 0, shape[1] % 2))
    pairs = a.view(shape[0], -1, 2, *shape[2:]).sum(2)
    assert int(pairs.max()) <= 128 and int(pairs.amax(dim=(1, 2, 3)).min()) >= 126  # the bound, and used
    full, _, _ = TorchOps.quantize_weight(w, scale_in, zero)
    assert int(full.abs().amax()) == 127
    ops = int8_kernels.load_ops()
    if isinstance(ops, NativeOps):
        nq, ns, nshift = ops.quantize_weight(w.contiguous(), scale_in, zero, pair_bound=True)
        assert torch.equal(nq, q) and torch.allclose(ns, scale) and torch.allclose(nshift, shift, rtol=1e-4, atol=1e-3)


def test_native_remap_to_float32_is_relu_of_the_affine():
    ops = int8_kernels.load_ops()
    if not isinstance(ops, NativeOps):
        pytest.skip("native passes unavailable")
    g = torch.Generator().manual_seed(1)
    src = torch.randn(1, 16, 9, 11, generator=g).contiguous(memory_format=torch.channels_last)
    m, z = torch.rand(16, generator=g), torch.randn(16, generator=g)
    out = torch.empty(1, 16, 11, 13).contiguous(memory_format=torch.channels_last)
    ref = torch.empty_like(out)
    rows, cols = index_map(11, 1, 9), index_map(13, 1, 11)
    ops.remap(src, m, z, out, rows, cols)
    TorchOps.remap(src, m, z, ref, rows, cols)
    assert torch.allclose(out, ref, atol=1e-6)


def test_native_build_takes_this_cpus_level():
    status = int8_kernels.native_status(load=True)
    if status["state"] not in ("built", "cached"):
        pytest.skip(f"native passes unavailable: {status}")
    assert status["isa_level"] == status["level"] == int8_kernels.native_level()
    assert "-march=native" not in status["flags"]


@pytest.mark.parametrize("level", ["generic", "avx512"])
def test_the_source_compiles_at_every_level(tmp_path, level):
    """Compiled (not run: AVX-512 code would fault on a CPU without it) wherever g++ takes the flags; this
    CPU's own level is built, loaded and run by the kernel tests (test_native_build_takes_this_cpus_level)."""
    cxx = shutil.which("g++")
    if cxx is None or sys.platform != "linux":
        pytest.skip("no g++")
    machine = subprocess.run([cxx, "-dumpmachine"], capture_output=True, text=True).stdout
    if level != "generic" and not machine.startswith("x86_64"):
        pytest.skip("x86 flags")
    flags = [f for f in build_flags(level) if f not in ("-O3", "-shared")] + ["-O1", "-c"]
    r = subprocess.run([cxx, *flags, "-o", str(tmp_path / "o.o"), str(int8_kernels.SOURCE)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    symbols = subprocess.run(["nm", str(tmp_path / "o.o")], capture_output=True, text=True).stdout
    assert "fastnst_quantize_weight_pairs" in symbols and "fastnst_remap_f32_relu" in symbols


# -- python -m fastnst info ---------------------------------------------------------------------------


def test_info_names_the_chosen_path_and_why(capsys):
    from fastnst.cli.info import main
    from fastnst.infer.stylizer import Stylizer

    assert main(["--model", "starry"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("```text") and out.rstrip().endswith("```")
    chosen = str(Stylizer(load_style_model(CHECKPOINTS_DIR / "starry.safetensors", torch.device("cpu")), "cpu", "auto").dtype)
    line = next(x for x in out.splitlines() if x.startswith("auto starry"))
    assert line.split()[2].rstrip(":") == chosen.removeprefix("torch.")  # "auto starry  <path> ...: <why>"
    assert ": " in line and len(line) > 40
    for key in ("cpu ", "features", "caps", "ONEDNN_MAX_CPU_ISA", "get_cpu_capability", "native", "torch ", "cuda"):
        assert key in out


def test_info_reads_the_cpu_before_torch_loads():
    code = "import sys; from fastnst.cli.info import cpu_lines; print(len(cpu_lines()), 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[1] == "False" and int(out[0]) >= 4
