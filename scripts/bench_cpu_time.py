"""Single-thread CPU time of the stylize paths: comparable on a loaded machine, unlike wall-clock.

    python scripts/bench_cpu_time.py                    # starry, 512x512, fp32 and int8, median of 5
    python scripts/bench_cpu_time.py --size 256 --paths fp32 int8 auto --repeats 5

Each path runs with ``torch.set_num_threads(1)`` and is timed with ``time.process_time()`` (the CPU
time of this process: other processes sharing the cores do not count, though they still slow it down
through shared caches and memory bandwidth, so treat the figures as "single-thread CPU time under load").
One warm-up run first; the median of ``--repeats`` runs is printed with the min and max.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(ROOT / "checkpoints" / "starry.safetensors"))
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--paths", nargs="+", default=["fp32", "int8"], help="precisions: fp32, bf16, int8, auto")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    from fastnst.infer.stylizer import Stylizer
    from fastnst.nets.modelfile import load_style_model

    model = load_style_model(args.model, torch.device("cpu"))
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, args.size, args.size, generator=g)
    for path in args.paths:
        st = Stylizer(model, "cpu", path)
        st.stylize_tensor(x, tile=0)  # warm-up (native build, oneDNN primitive cache)
        times = []
        for _ in range(args.repeats):
            t0 = time.process_time()
            st.stylize_tensor(x, tile=0)
            times.append(time.process_time() - t0)
        print(f"{path:>5} -> {str(st.dtype):15} {args.size}x{args.size}: median {statistics.median(times):.3f} s CPU "
              f"(min {min(times):.3f}, max {max(times):.3f}, n={len(times)}; single-thread CPU time under load)", flush=True)


if __name__ == "__main__":
    main()
