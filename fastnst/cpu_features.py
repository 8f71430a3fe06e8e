"""What this CPU can really do for fastnst's inference paths, and which one ``precision="auto"`` takes.

Three questions, answered from the chip *and* the caps in effect:

* **Features**: the chip's (``/proc/cpuinfo`` on Linux, torch's probes elsewhere, ``platform`` on ARM),
  minus what the caps forbid: ``ONEDNN_MAX_CPU_ISA`` (oneDNN's own cap, read as its ISA bit masks) and
  ``ATEN_CPU_CAPABILITY`` (PyTorch's; ``avx2`` or ``default`` is read as "an AVX2-class CPU": no
  AVX-512, no VNNI, no bf16 units). torch's ``torch.cpu._is_*_supported`` probes read the chip and not
  the caps, which is why they are not the answer here.
* **bf16** pays only with bf16 units (AVX-512 BF16 or AMX); elsewhere oneDNN emulates it, ~2x slower
  than fp32.
* **int8** pays only where oneDNN runs a fast int8 kernel for the int8 network's convolutions. That is
  measured, not guessed: one small u8 x s8 convolution against the same convolution in float32 (a
  few ms, once per CPU model, caps and torch version; cached on disk beside the native library, in
  ``$FASTNST_CACHE`` or ``~/.cache/fastnst``). Without VNNI, oneDNN multiplies u8 by s8 with
  ``vpmaddubsw``, which saturates pairs of products at 16 bits: the int8 network then bounds its
  weights per pair of input channels (``Int8Variant.pair_bound``), and the probe also checks that the
  kernel's result is exact on the largest values that allows.

This module imports torch only where a question needs it (the probe), so ``python -m fastnst info``
can print the CPU before torch loads.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

__all__ = [
    "Caps",
    "CpuInfo",
    "Int8Probe",
    "Int8Variant",
    "Plan",
    "cache_dir",
    "cpu_class",
    "effective_features",
    "has_avx512_core",
    "has_bf16_units",
    "has_int8_dot",
    "int8_probe",
    "int8_variant",
    "native_level",
    "plan_auto",
    "read_caps",
    "read_cpu",
]

# The chip features that matter here, with /proc/cpuinfo's names (x86 and aarch64).
X86_FEATURES = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16", "avx_vnni")
ARM_FEATURES = ("asimd", "asimddp", "i8mm", "bf16", "sve")

# oneDNN's ISA bit masks (dnnl_cpu_isa_t): a cap allows an ISA when the ISA's bits are all in the cap's.
ONEDNN_ISA = {
    "SSE41": 0x1, "AVX": 0x3, "AVX2": 0x7, "AVX2_VNNI": 0xF, "AVX2_VNNI_2": 0x1F,
    "AVX512_CORE": 0x27, "AVX512_CORE_VNNI": 0x67, "AVX512_CORE_BF16": 0xE7,
    "AVX10_1_512": 0x1EF, "AVX512_CORE_FP16": 0x1EF,
    "AVX10_1_512_AMX": 0xFEF, "AVX512_CORE_AMX": 0xFEF, "AVX10_1_512_AMX_FP16": 0x1FEF, "AVX512_CORE_AMX_FP16": 0x1FEF,
}
_UNCAPPED = ("", "DEFAULT", "ALL")
# The oneDNN ISA that uses each feature.
_FEATURE_ISA = {
    "avx2": 0x7, "fma": 0x7, "avx_vnni": 0xF, "avx512f": 0x27, "avx512bw": 0x27, "avx512_vnni": 0x67,
    "avx512_bf16": 0xE7, "amx_tile": 0xFEF, "amx_int8": 0xFEF, "amx_bf16": 0xFEF,
}
# ATEN_CPU_CAPABILITY levels, and the level each feature needs to count (VNNI and bf16 units need avx512:
# a cap of avx2 reads as "an AVX2-class CPU").
ATEN_LEVELS = {"default": 0, "avx2": 1, "avx512": 2}
_FEATURE_ATEN = {"avx2": 1, "fma": 1, "avx_vnni": 2, "avx512f": 2, "avx512bw": 2, "avx512_vnni": 2, "avx512_bf16": 2,
                 "amx_tile": 2, "amx_int8": 2, "amx_bf16": 2}

# int8 is a candidate for precision="auto" only if the probe's int8 convolution takes at most this share
# of the float32 one's CPU time: the int8 network adds per-image weight packing and u8 passes around
# its convolutions (AVX2 without VNNI: ~0.5 at the convolution, ~0.7 for the whole network; oneDNN's
# reference kernel, where it has no int8 kernel for the case: 50-150x).
INT8_MAX_RATIO = 0.75
PROBE_VERSION = 2
PROBE_FILE = "cpu_probe.json"


# ----------------------------------------------------------------------------------------------
# The chip
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CpuInfo:
    """A CPU as the choice logic sees it: its architecture, a readable model and its relevant features."""

    arch: str  # "x86_64", "aarch64", or platform.machine() lower-cased
    model: str
    flags: frozenset[str]
    source: str  # where the flags came from: "/proc/cpuinfo", "torch", "platform"

    @property
    def is_x86(self) -> bool:
        return self.arch == "x86_64"


def normalise_arch(machine: str) -> str:
    m = machine.lower()
    return {"amd64": "x86_64", "x64": "x86_64", "em64t": "x86_64", "arm64": "aarch64", "armv8l": "aarch64"}.get(m, m)


def parse_cpuinfo(text: str, arch: str) -> tuple[str, frozenset[str]]:
    """The model and the relevant features of /proc/cpuinfo's first processor (x86 or aarch64 layout)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break  # the first processor is enough
            continue
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip().lower(), value.strip())
    if arch == "x86_64":
        flags = set(fields.get("flags", "").split())
        model = fields.get("model name", "unknown x86-64 CPU")
        if "cpu family" in fields and "model" in fields:
            model += f" (family {fields['cpu family']} model {fields['model']}" + (
                f" stepping {fields['stepping']})" if "stepping" in fields else ")")
        return model, frozenset(flags & set(X86_FEATURES))
    flags = set(fields.get("features", "").split())
    parts = [fields[k] for k in ("model name", "hardware", "model") if k in fields]
    if "cpu implementer" in fields:
        parts.append(f"implementer {fields['cpu implementer']} part {fields.get('cpu part', '?')}")
    return (" / ".join(parts) or f"{arch} CPU"), frozenset(flags & set(ARM_FEATURES))


def _torch_flags() -> frozenset[str]:
    """The chip's x86 features from torch's probes (which read CPUID, not the caps)."""
    import torch

    probes = {"avx2": "_is_avx2_supported", "avx512f": "_is_avx512_supported", "avx512_vnni": "_is_vnni_supported",
              "avx512_bf16": "_is_avx512_bf16_supported", "amx_tile": "_is_amx_tile_supported"}
    flags = set()
    for name, attr in probes.items():
        probe = getattr(torch.cpu, attr, None)
        try:
            if probe is not None and probe():
                flags.add(name)
        except Exception:  # pragma: no cover - a probe that cannot run
            pass
    if "avx2" in flags:
        flags.add("fma")  # every AVX2 CPU has FMA3
    if "avx512f" in flags:
        flags.add("avx512bw")  # torch's avx512 level means AVX512F+BW+VL+DQ
    if "amx_tile" in flags:
        flags |= {"amx_int8", "amx_bf16"}  # no shipped CPU has AMX tiles without both
    return frozenset(flags)


@lru_cache(maxsize=1)
def read_cpu() -> CpuInfo:
    """This machine's CPU (cached for the process): /proc/cpuinfo on Linux; torch's probes on other
    x86 systems; the architecture alone elsewhere (e.g. macOS on Apple silicon)."""
    arch = normalise_arch(platform.machine() or "unknown")
    if sys.platform.startswith("linux"):
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
                model, flags = parse_cpuinfo(f.read(), arch)
            return CpuInfo(arch, model, flags, "/proc/cpuinfo")
        except OSError:
            pass
    model = platform.processor() or f"{arch} CPU"
    if arch == "x86_64":
        try:
            return CpuInfo(arch, model, _torch_flags(), "torch")
        except Exception:  # pragma: no cover - torch without the probes
            pass
    return CpuInfo(arch, model, frozenset(), "platform")


# ----------------------------------------------------------------------------------------------
# The caps
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Caps:
    """The ISA caps in the environment (None: not set). ``onednn``: ONEDNN_MAX_CPU_ISA (or the older
    DNNL_MAX_CPU_ISA), upper-cased; ``aten``: ATEN_CPU_CAPABILITY, lower-cased."""

    onednn: str | None = None
    aten: str | None = None

    def onednn_mask(self) -> int | None:
        """The cap's oneDNN bit mask; None for no cap (unset, DEFAULT, ALL, or a name oneDNN does not know)."""
        if self.onednn is None or self.onednn in _UNCAPPED:
            return None
        return ONEDNN_ISA.get(self.onednn)

    def aten_level(self) -> int | None:
        return None if self.aten is None else ATEN_LEVELS.get(self.aten)

    def describe(self) -> str:
        return f"ONEDNN_MAX_CPU_ISA={self.onednn or '(unset)'} ATEN_CPU_CAPABILITY={self.aten or '(unset)'}"


def read_caps(environ: Mapping[str, str] | None = None) -> Caps:
    env = os.environ if environ is None else environ
    onednn = env.get("ONEDNN_MAX_CPU_ISA") or env.get("DNNL_MAX_CPU_ISA")
    aten = env.get("ATEN_CPU_CAPABILITY")
    return Caps(onednn.strip().upper() if onednn else None, aten.strip().lower() if aten else None)


def effective_features(cpu: CpuInfo, caps: Caps) -> frozenset[str]:
    """The chip's features that the caps leave usable (every feature on a non-x86 CPU)."""
    if not cpu.is_x86:
        return cpu.flags
    mask, level = caps.onednn_mask(), caps.aten_level()
    out = set()
    for f in cpu.flags:
        if mask is not None and _FEATURE_ISA.get(f, 0) & ~mask:
            continue
        if level is not None and _FEATURE_ATEN.get(f, 0) > level:
            continue
        out.add(f)
    return frozenset(out)


def has_bf16_units(features: frozenset[str]) -> bool:
    """bf16 dot-product units: AVX-512 BF16 or AMX-BF16 (where bf16 beats fp32)."""
    return "avx512_bf16" in features or "amx_bf16" in features


def has_int8_dot(features: frozenset[str]) -> bool:
    """u8 x s8 dot products into int32 without 16-bit saturation: AVX-512 VNNI, AVX-VNNI or AMX-INT8."""
    return bool({"avx512_vnni", "avx_vnni", "amx_int8"} & features)


def cpu_class(cpu: CpuInfo, features: frozenset[str]) -> str:
    """A one-word class of the CPU as capped: amx, avx512_bf16, avx512_vnni, avx_vnni, avx512, avx2,
    x86_64 (older), or the architecture (aarch64, ...)."""
    if not cpu.is_x86:
        return cpu.arch
    for name, needs in (("amx", {"amx_int8", "amx_bf16"}), ("avx512_bf16", {"avx512_bf16"}), ("avx512_vnni", {"avx512_vnni"}),
                        ("avx_vnni", {"avx_vnni"}), ("avx512", {"avx512f"}), ("avx2", {"avx2", "fma"})):
        if needs <= features:
            return name
    return "x86_64"


def native_level(cpu: CpuInfo, features: frozenset[str]) -> str:
    """The ISA level to build the native passes for: "avx512" (AVX-512 F+BW, their intrinsics), "avx2"
    (AVX2 + FMA, vectorised by the compiler) or "generic" (the target's baseline: ARM, older x86, unknown)."""
    if not cpu.is_x86:
        return "generic"
    if has_avx512_core(features):
        return "avx512"
    if {"avx2", "fma"} <= features:
        return "avx2"
    return "generic"


# ----------------------------------------------------------------------------------------------
# The int8 network's variant for this CPU, and the probe
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Int8Variant:
    """How fastnst.int8_net.Int8Net runs on a CPU.

    ``float_dtype``: its float layer's dtype ("bfloat16" with bf16 units, else "float32"): the second
    convolution, kept float, and the activation it reads.
    ``pair_bound`` (CPUs without VNNI): oneDNN multiplies u8 by s8 there with ``vpmaddubsw``, which adds
    the products of input channels 2k and 2k+1 in 16 bits with saturation (255 * 127 * 2 does not fit),
    so every weight is scaled so that |q| of such a pair sums to at most 128 (fastnst.int8_kernels
    quantize_weight). That costs ~0.5 dB on the guard image, where 7-bit activations cost ~1.5 dB.
    ``out_dtype``: what the int8 convolutions write (default: ``float_dtype``). Only the statistics of
    those outputs matter, and the passes after each convolution read them: bf16 halves that traffic.
    oneDNN's AVX-512 kernels write bf16 without bf16 units (converted in their JIT code, as fast as
    float32); on AVX2 only its reference kernel does, 50-150x slower, so float32 there.
    """

    float_dtype: str = "bfloat16"
    pair_bound: bool = False
    out_dtype: str = ""

    def __post_init__(self) -> None:
        if not self.out_dtype:
            object.__setattr__(self, "out_dtype", self.float_dtype)

    def describe(self) -> str:
        outs = f", {self.out_dtype} conv outputs" if self.out_dtype != self.float_dtype else ""
        pairs = ", weights bounded per input-channel pair (no VNNI)" if self.pair_bound else ""
        return f"{self.float_dtype} float layers{outs}{pairs}"


def int8_variant(features: frozenset[str] | None = None) -> Int8Variant:
    """The variant for this CPU as capped (``features``: effective features; default this machine's)."""
    if features is None:
        features = effective_features(read_cpu(), read_caps())
    bf16 = has_bf16_units(features)
    out_dtype = "bfloat16" if bf16 or has_avx512_core(features) else "float32"
    return Int8Variant("bfloat16" if bf16 else "float32", not has_int8_dot(features), out_dtype)


def has_avx512_core(features: frozenset[str]) -> bool:
    """AVX-512 F and BW (every such chip has VL and DQ too): oneDNN's avx512_core, whose int8 kernels write
    bf16 fast."""
    return {"avx512f", "avx512bw"} <= features


@dataclass(frozen=True)
class Int8Probe:
    """One small u8 x s8 convolution (oneDNN, as Int8Net runs it) against the same convolution in float32:
    the smallest CPU time of a few runs each, and whether the int8 result was exact on the largest
    inputs the variant produces (a kernel that saturates 16-bit pair sums is not)."""

    int8_s: float
    fp32_s: float
    exact: bool
    key: str = ""
    cached: bool = False
    error: str = ""

    @property
    def ratio(self) -> float:
        return self.int8_s / self.fp32_s if self.fp32_s > 0 else float("inf")

    @property
    def fast(self) -> bool:
        return not self.error and self.exact and self.ratio <= INT8_MAX_RATIO

    def describe(self) -> str:
        if self.error:
            return f"int8 probe failed: {self.error}"
        how = "cached" if self.cached else "measured"
        return (f"int8 conv {self.int8_s * 1e3:.2f} ms vs fp32 {self.fp32_s * 1e3:.2f} ms CPU ({self.ratio:.2f}x, "
                f"{'exact' if self.exact else 'NOT exact: saturates'}; {how})")


def cache_dir() -> Path:
    """Where fastnst caches per-machine builds and measurements: $FASTNST_CACHE, else
    $XDG_CACHE_HOME/fastnst or ~/.cache/fastnst."""
    root = os.environ.get("FASTNST_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "fastnst")
    return Path(root)


def probe_key(cpu: CpuInfo, caps: Caps, variant: Int8Variant, torch_version: str) -> str:
    text = json.dumps([PROBE_VERSION, cpu.arch, cpu.model, sorted(cpu.flags), caps.onednn, caps.aten, asdict(variant),
                       torch_version])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _read_probe_file(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_probe_file(path: Path, key: str, entry: dict) -> None:
    """Add one entry, atomically (a concurrent reader sees the old file or the new one); best effort."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = _read_probe_file(path)
        data[key] = entry
        fd, tmp = tempfile.mkstemp(suffix=".json", dir=path.parent)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except OSError:
        pass


def int8_probe(variant: Int8Variant | None = None, *, use_cache: bool = True,
               measure: Callable[[Int8Variant], tuple[float, float, bool]] | None = None) -> Int8Probe:
    """The probe for this CPU and variant: from the disk cache when the key (CPU model and features, caps,
    torch version, variant) was measured before, else measured now (a few ms) and written there.
    ``measure`` (variant -> (int8_s, fp32_s, exact)) replaces the measurement (tests)."""
    import torch

    variant = variant or int8_variant()
    key = probe_key(read_cpu(), read_caps(), variant, torch.__version__)
    path = cache_dir() / PROBE_FILE
    if use_cache:
        entry = _read_probe_file(path).get(key)
        if isinstance(entry, dict):
            try:
                return Int8Probe(float(entry["int8_s"]), float(entry["fp32_s"]), bool(entry["exact"]), key, cached=True)
            except (KeyError, TypeError, ValueError):
                pass
    try:
        int8_s, fp32_s, exact = (measure or _measure)(variant)
    except Exception as exc:  # no oneDNN int8 convolution in this build, or it failed: int8 is not a candidate
        return Int8Probe(float("inf"), 0.0, False, key, error=f"{type(exc).__name__}: {exc}"[:200])
    if use_cache:
        _write_probe_file(path, key, {"int8_s": int8_s, "fp32_s": fp32_s, "exact": exact, "cpu": read_cpu().model,
                                      "caps": read_caps().describe(), "torch": torch.__version__, "variant": asdict(variant)})
    return Int8Probe(int8_s, fp32_s, exact, key)


PROBE_CHANNELS, PROBE_SIDE, PROBE_RUNS = 64, 32, 5


def _measure(variant: Int8Variant) -> tuple[float, float, bool]:
    """Time a 64 -> 64 3x3 convolution on a 32x32 map (a residual block's, 38 M multiply-adds) as
    Int8Net runs it (u8 x s8, its float dtype out) and in float32 (channels_last), interleaved, the
    smallest CPU time of PROBE_RUNS each; then check the int8 kernel on the variant's largest inputs."""
    import time

    import torch
    import torch.nn.functional as F

    c, s = PROBE_CHANNELS, PROBE_SIDE
    out_dtype = getattr(torch, variant.out_dtype)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (1, c, s + 2, s + 2), generator=g, dtype=torch.uint8)
    x = x.contiguous(memory_format=torch.channels_last)
    q = torch.randint(-127, 128, (c, c, 3, 3), generator=g, dtype=torch.int8)
    w_scale = torch.full((c,), 1e-3)
    zero = torch.zeros(c, dtype=torch.int64)

    def qconv(inp: torch.Tensor, qw: torch.Tensor) -> torch.Tensor:
        packed = torch.ops.onednn.qconv_prepack(qw, w_scale, 1.0, 0, [1, 1], [0, 0], [1, 1], 1, None)
        return torch.ops.onednn.qconv2d_pointwise(inp, 1.0, 0, packed, w_scale, zero, None, [1, 1], [0, 0], [1, 1], 1, 1.0, 0,
                                                  out_dtype, "none", [], "")

    packed = torch.ops.onednn.qconv_prepack(q, w_scale, 1.0, 0, [1, 1], [0, 0], [1, 1], 1, None)
    xf = x.float().contiguous(memory_format=torch.channels_last)
    wf = (q.float() * 1e-3).contiguous(memory_format=torch.channels_last)

    def run_int8() -> None:
        torch.ops.onednn.qconv2d_pointwise(x, 1.0, 0, packed, w_scale, zero, None, [1, 1], [0, 0], [1, 1], 1, 1.0, 0,
                                           out_dtype, "none", [], "")

    def run_fp32() -> None:
        F.conv2d(xf, wf)

    with torch.inference_mode():
        times: dict[str, list[float]] = {"int8": [], "fp32": []}
        for name, fn in (("int8", run_int8), ("fp32", run_fp32)):
            t0 = time.process_time()
            fn()  # builds the primitive; a reference kernel shows here already
            times[name].append(time.process_time() - t0)
        slow = times["int8"][0] > 50 * max(times["fp32"][0], 1e-4)  # no need to time a reference kernel further
        for _ in range(0 if slow else PROBE_RUNS):
            for name, fn in (("int8", run_int8), ("fp32", run_fp32)):
                t0 = time.process_time()
                fn()
                times[name].append(time.process_time() - t0)
        # Exactness where a kernel could saturate: every input at 255 with weights at the variant's bound,
        # laid out so that a kernel pairing other channels than (2k, 2k+1) would overflow too
        # (pair-bound: |q| 1, 126, 126, 1, ...; else every weight at 127).
        xm = torch.full((1, c, 4, 4), 255, dtype=torch.uint8).contiguous(memory_format=torch.channels_last)
        if variant.pair_bound:
            qm = torch.tensor([1, 126, 126, 1], dtype=torch.int8).repeat(c // 4).view(1, c, 1, 1).expand(c, c, 3, 3).contiguous()
        else:
            qm = torch.full((c, c, 3, 3), 127, dtype=torch.int8)
        got = float(qconv(xm, qm)[0, 0, 0, 0])
        want = 255.0 * float(qm[0].sum()) * 1e-3
        exact = abs(got - want) <= 1e-2 * want
    return min(times["int8"]), min(times["fp32"]), exact


# ----------------------------------------------------------------------------------------------
# The choice
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """What ``precision="auto"`` does on a CPU before it sees the model: ``int8`` (if the model passes
    the quality guard there, else ``fallback``), ``bf16`` or ``fp32``; ``reason`` says why in one line."""

    precision: str
    fallback: str
    reason: str
    cpu_class: str
    variant: Int8Variant
    probe: Int8Probe | None = None


def plan_auto(cpu: CpuInfo | None = None, caps: Caps | None = None, *, has_qconv: bool | None = None,
              probe: Callable[[Int8Variant], Int8Probe] | None = None) -> Plan:
    """The path ``precision="auto"`` takes on this CPU (or on ``cpu`` with ``caps``, for tests).

    int8 where this torch has oneDNN's quantized convolution and the probe finds its kernel fast and exact
    for the variant this CPU gets; bf16 where the CPU as capped has bf16 units; fp32 otherwise. The
    int8 choice is then subject to the model's quality guard (fastnst.inference.Stylizer).
    """
    cpu = cpu or read_cpu()
    caps = caps or read_caps()
    feats = effective_features(cpu, caps)
    klass = cpu_class(cpu, feats)
    variant = int8_variant(feats)
    capped = " (capped by " + caps.describe() + ")" if (caps.onednn_mask() is not None or caps.aten_level() is not None) else ""
    bf16 = has_bf16_units(feats)
    fallback = "bf16" if bf16 else "fp32"
    why_fallback = ("bf16 units (AVX-512 BF16 / AMX)" if bf16 else "no bf16 units: fp32 beats emulated bf16")
    if not cpu.is_x86:
        return Plan("fp32", "fp32", f"{klass}: fastnst's int8 and bf16 CPU paths are x86 (oneDNN) only; fused fp32",
                    klass, variant)
    if has_qconv is None:
        import torch

        has_qconv = hasattr(torch.ops.onednn, "qconv2d_pointwise")
    if not has_qconv:
        return Plan(fallback, fallback, f"{klass}{capped}: this PyTorch has no oneDNN int8 convolution; {why_fallback}",
                    klass, variant)
    if "avx2" not in feats:
        return Plan(fallback, fallback, f"{klass}{capped}: no AVX2, int8 not tried; {why_fallback}",
                    klass, variant)
    result = (probe or int8_probe)(variant)
    if result.fast:
        return Plan("int8", fallback, f"{klass}{capped}: int8 ({variant.describe()}) measured fast: {result.describe()}; "
                    f"else {fallback}", klass, variant, result)
    return Plan(fallback, fallback, f"{klass}{capped}: int8 not fast here ({result.describe()}); {why_fallback}",
                klass, variant, result)
