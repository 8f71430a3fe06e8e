#!/usr/bin/env python
"""Where the int8 network's time goes: each oneDNN convolution against everything else.

    python scripts/bench_int8_layers.py                    # 1024x1024, 1920x1080, 640x360
    python scripts/bench_int8_layers.py --sizes 1024 --threads 1

For each size, the shipped model runs through ``Int8Net`` (fastnst.infer.backends.int8) with each convolution call
timed (its median over the repeats; it includes the per-image weight packing of the convs that
need one); the table lists every convolution (input shape, kernel, multiply-adds, time per image, GMAC/s) and the
convolutions' sum beside the whole pass. The sum is the floor this network's int8 route can reach with
oneDNN's kernels: elementwise work (instance-norm statistics, rounding to u8, padding) comes on top.
Run it on a quiet machine; the process uses PyTorch's default thread count unless --threads.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def parse_size(text: str) -> tuple[int, int]:
    """'1024' -> (1024, 1024); '1920x1080' -> (1080, 1920) as (height, width)."""
    w, _, h = text.partition("x")
    return (int(h or w), int(w))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(ROOT / "checkpoints" / "starry.safetensors"))
    p.add_argument("--sizes", nargs="+", default=["1024", "1920x1080", "640x360"])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: PyTorch's)")
    args = p.parse_args(argv)

    from fastnst.cli.openmp import prefer_short_spin

    prefer_short_spin()  # as the stylize command does, before torch loads
    import torch

    from fastnst.infer.backends.int8 import Int8Net
    from fastnst.nets.modelfile import load_style_model
    from fastnst.runtime import reuse_freed_memory

    reuse_freed_memory()  # the opt-in the stylize command line and bench_stylize.py make

    if args.threads:
        torch.set_num_threads(args.threads)
    timings: dict[tuple, list[float]] = {}

    class Timed:
        """A conv of Int8Net.convs, called as Int8Net calls it (with its per-image weight packing), timed."""

        def __init__(self, conv) -> None:
            self.conv = conv

        def __call__(self, ops, x, *rest, **kwargs):
            t0 = time.perf_counter()
            y = self.conv(ops, x, *rest, **kwargs)
            key = (tuple(x.shape[1:]), tuple(self.conv.weight.shape), self.conv.stride, tuple(y.shape[2:]))
            timings.setdefault(key, []).append(time.perf_counter() - t0)
            return y

    net = Int8Net(load_style_model(args.model).net.eval())
    net.convs = [None if conv is None else Timed(conv) for conv in net.convs]
    print(f"model {args.model}, {torch.get_num_threads()} threads")
    for size in args.sizes:
        h, w = parse_size(size)
        x = torch.rand(1, 3, h, w)
        for _ in range(2):
            net(x)  # warm up (and build the native passes on first use)
        timings.clear()
        walls = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            net(x)
            walls.append(time.perf_counter() - t0)
        wall = statistics.median(walls) * 1e3
        print(f"\n{size}: whole pass {wall:.1f} ms (median of {args.repeats})")
        print(f"  {'convolution (in -> out, kernel, input)':<40} {'calls':>5} {'GMAC':>6} {'ms':>7} {'GMAC/s':>7}")
        conv_ms = conv_gmac = 0.0
        for (cin_hw, wshape, stride, out_hw), times in timings.items():
            cout, cin, kh, kw = wshape
            calls = len(times) // args.repeats
            ms = statistics.median(times) * 1e3 * calls  # per image
            gmac = cin * cout * kh * kw * out_hw[0] * out_hw[1] * calls / 1e9
            conv_ms, conv_gmac = conv_ms + ms, conv_gmac + gmac
            name = f"{cin}->{cout} {kh}x{kw}{' /2' if stride == 2 else ''} on {cin_hw[1]}x{cin_hw[2]}"
            print(f"  {name:<40} {calls:>5} {gmac:>6.2f} {ms:>7.1f} {gmac / ms * 1e3:>7.0f}")
        print(f"  {'all convolutions':<40} {'':>5} {conv_gmac:>6.2f} {conv_ms:>7.1f} {conv_gmac / conv_ms * 1e3:>7.0f}")
        print(f"  everything else: {wall - conv_ms:.1f} ms ({(wall - conv_ms) / wall:.0%} of the pass)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
