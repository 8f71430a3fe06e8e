"""``python -m fastnst info``: what fastnst sees on this machine, as one block to paste into a bug report.

    python -m fastnst info                 # the path precision=auto takes for the shipped "starry" model
    python -m fastnst info --model scream  # ... for another model (name or file)
    python -m fastnst info --no-model      # skip the model (no quality guard run)

CPU model and features (/proc/cpuinfo on Linux, torch's probes, platform on ARM), the ISA caps in effect,
the path ``precision=auto`` picks and why, the native passes' build, library versions and CUDA devices.
The CPU lines come before torch is imported; the rest needs it.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from importlib import metadata

FEATURES_X86 = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx", "avx_vnni")
FEATURES_ARM = ("asimd", "asimddp", "i8mm", "bf16", "sve")
PACKAGES = ("torch", "torchvision", "onnxruntime", "av")


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _features(flags: frozenset[str], arch: str) -> str:
    if arch != "x86_64":
        names = FEATURES_ARM
        have = set(flags)
    else:
        names = FEATURES_X86
        have = set(flags) | ({"amx"} if {"amx_tile", "amx_int8", "amx_bf16"} & flags else set())
    return " ".join(f"{n}{'+' if n in have else '-'}" for n in names)


def cpu_lines() -> list[tuple[str, str]]:
    """The torch-free part: CPU, its features, the caps."""
    from fastnst import cpu_features as cf

    cpu = cf.read_cpu()
    caps = cf.read_caps()
    eff = cf.effective_features(cpu, caps)
    lines = [
        ("cpu", f"{cpu.model} [{cpu.arch}, {os.cpu_count()} logical CPUs]"),
        ("features", f"{_features(cpu.flags, cpu.arch)}   (from {cpu.source})"),
        ("caps", caps.describe()),
        ("as capped", f"{_features(eff, cpu.arch)}   -> class {cf.cpu_class(cpu, eff)}"),
    ]
    unknown = [v for v, ok in ((caps.onednn, caps.onednn is None or caps.onednn in ("DEFAULT", "ALL") or caps.onednn in cf.ONEDNN_ISA),
                               (caps.aten, caps.aten is None or caps.aten in cf.ATEN_LEVELS)) if not ok]
    if unknown:
        lines.append(("warning", f"unknown cap value(s) {', '.join(unknown)}: ignored here"))
    return lines


def torch_lines(model: str | None) -> list[tuple[str, str]]:
    import torch

    from fastnst import cpu_features as cf
    from fastnst.infer.backends.native import native_status
    from fastnst.runtime import auto_plan

    lines = []
    probes = {n: getattr(torch.cpu, f"_is_{n}_supported", None) for n in ("avx2", "avx512", "vnni", "avx512_bf16", "amx_tile")}
    seen = " ".join(f"{n}={bool(p())}" for n, p in probes.items() if p is not None)
    lines.append(("torch cpu", f"get_cpu_capability()={torch.backends.cpu.get_cpu_capability()}; probes (chip, not caps): {seen}"))
    lines.append(("threads", f"torch {torch.get_num_threads()} intra-op threads"))
    plan = auto_plan()
    lines.append(("auto (cpu)", f"{plan.precision}: {plan.reason}"))
    if model:
        from fastnst.infer.stylizer import Stylizer
        from fastnst.nets.modelfile import load_style_model, resolve_model_path

        try:
            st = Stylizer(load_style_model(resolve_model_path(model), torch.device("cpu")), "cpu", "auto")
            why = st.reason.removeprefix(plan.reason).lstrip("; ") or "as the CPU line above"
            lines.append((f"auto {model}", f"{st.path_name}: {why}"))
        except Exception as exc:  # a bad model name must not hide the rest of the report
            lines.append((f"auto {model}", f"could not load the model: {type(exc).__name__}: {exc}"))
    st_native = native_status(load=cf.read_cpu().is_x86 or plan.precision == "int8")
    state = st_native.get("state", "?")
    if state in ("built", "cached"):
        native = f"{state}, level {st_native.get('level')} (library took {st_native.get('isa_level')}) at {st_native.get('path')}"
    else:
        native = (f"{state}" + (f": {st_native['reason']}" if st_native.get("reason") else "")
                  + f"; level {st_native.get('level')}; the int8 path uses the torch fallback")
    lines.append(("native", native))
    lines.append(("native flags", st_native.get("flags", "")))
    if torch.cuda.is_available():
        devs = [f"{i}: {torch.cuda.get_device_name(i)}" for i in range(torch.cuda.device_count())]
        lines.append(("cuda", f"{torch.version.cuda}; " + "; ".join(devs)))
    else:
        lines.append(("cuda", f"no CUDA device (torch built with CUDA {torch.version.cuda or 'none'})"))
    return lines


def report(model: str | None = "starry") -> str:
    import fastnst

    lines = [("fastnst", f"{_version('fastnst')} at {os.path.dirname(fastnst.__file__)}"),
             ("python", f"{platform.python_version()} on {platform.platform()}")]
    lines += cpu_lines()
    lines.append(("versions", "  ".join(f"{p} {_version(p)}" for p in PACKAGES)))
    lines += torch_lines(model)
    width = max(len(k) for k, _ in lines)
    body = "\n".join(f"{k:<{width}}  {v}" for k, v in lines)
    return f"```text\n{body}\n```"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m fastnst info", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="starry", help="model whose precision=auto path to show (shipped name or file; default starry)")
    p.add_argument("--no-model", action="store_true", help="skip the model (and its quality guard)")
    args = p.parse_args(argv)
    print(report(None if args.no_model else args.model))
    sys.stdout.flush()
    return 0
