"""Peak memory and time of ``python -m fastnst.stylize`` on one large photo (default 8000x8000, 64 MP).

    python scripts/bench_large_image.py                     # default settings
    python scripts/bench_large_image.py --size 6000 -- --tile 2048

Makes the photo once (a bundled sample photo upscaled, saved as JPEG in a temporary directory), runs
the command line in a subprocess with the given extra options and reports its wall time and peak
resident set size (the child's ru_maxrss: Python, PyTorch, the model, the decoded photo, the result).
Run it on a quiet machine for figures to quote; say which CPU they come from.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def make_photo(path: Path, size: int) -> None:
    from PIL import Image

    from fastnst.assets import sample_image_paths

    sources = [p for p in sample_image_paths() if p.name == "astronaut.png"]
    if sources:
        image = Image.open(sources[0]).convert("RGB").resize((size, size), Image.BICUBIC)
    else:  # no scikit-image photos: a smooth synthetic image
        image = Image.radial_gradient("L").convert("RGB").resize((size, size))
    image.save(path, quality=92)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=8000, help="side of the square photo (default 8000)")
    p.add_argument("--model", default="starry")
    p.add_argument("extra", nargs="*", help="options passed on to the stylize CLI (after --)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        photo, out = Path(tmp) / "large.jpg", Path(tmp) / "large_out.jpg"
        make_photo(photo, args.size)
        cmd = [sys.executable, "-m", "fastnst.stylize", "--model", args.model, str(photo), "-o", str(out), *args.extra]
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ})
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            return proc.returncode
        peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024 / 1e9
    print(f"{args.size}x{args.size} ({args.size * args.size / 1e6:.0f} MP), options {' '.join(args.extra) or '(defaults)'}: "
          f"{seconds:.1f} s wall, peak RSS {peak_gb:.2f} GB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
