#!/usr/bin/env python
"""The README gallery: for a few photos, the photo, each style model's output, and a Gatys result.

The networks run here (fast path, the photo at --size long side); the Gatys images are not recomputed
but taken from a scripts/compare.py output directory (`<dir>/images/<photo stem>_gatys.png`), so the
gallery shows exactly the images whose losses the comparison tables report.

    python scripts/gallery.py --photo dog.jpg --photo fruits.jpg --model starry --model scream \\
        --gatys compare_starry -o docs/gallery.jpg
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from fastnst.baseline.grid import image_grid
from fastnst.cli.evaluate import split_label
from fastnst.imageio import ImageError, load_image, save_image
from fastnst.infer.stylizer import load_model, stylize_image
from fastnst.nets.modelfile import ModelFileError


def gallery_row(photo_path: Path, models: Sequence, size: int, gatys_dir: Path | None,
                gatys_label: str = "Gatys (L-BFGS)", model_labels: Sequence[str | None] = ()
                ) -> tuple[list[torch.Tensor], list[str]]:
    """One row of images and labels: photo, each model's output, then the Gatys image if there is one."""
    photo = load_image(photo_path, max_size=size)
    images, labels = [photo], [photo_path.stem]
    for i, model in enumerate(models):
        images.append(stylize_image(model, photo).clamp(0, 1))
        label = model_labels[i] if i < len(model_labels) else None
        labels.append(label or f"fastnst {model.style}")
    if gatys_dir is not None:
        gatys_path = gatys_dir / "images" / f"{photo_path.stem}_gatys.png"
        gatys = load_image(gatys_path)  # ImageError names the file when the compare run lacks this photo
        if gatys.shape[-2:] != photo.shape[-2:]:
            gatys = torch.nn.functional.interpolate(gatys, size=photo.shape[-2:], mode="bilinear", antialias=True)
        images.append(gatys)
        labels.append(gatys_label)
    return images, labels


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--photo", action="append", required=True, type=Path, help="a content photo (repeatable)")
    p.add_argument("--model", action="append", required=True, help="a model name or file, optionally LABEL=MODEL (repeatable)")
    p.add_argument("--gatys", type=Path, default=None, help="a scripts/compare.py --out-dir for the Gatys column")
    p.add_argument("--gatys-label", default="Gatys (L-BFGS)", help="caption of the Gatys column")
    p.add_argument("--size", type=int, default=256, help="long side of each cell (compare.py's --size)")
    p.add_argument("-o", "--output", type=Path, required=True)
    args = p.parse_args(argv)
    try:
        specs = [split_label(m) for m in args.model]
        models = [load_model(target) for _, target in specs]
        model_labels = [label for label, _ in specs]
        cells: list[torch.Tensor] = []
        labels: list[str] = []
        for photo in args.photo:
            row, row_labels = gallery_row(photo, models, args.size, args.gatys, args.gatys_label, model_labels)
            cells += row
            labels += row_labels
    except (ImageError, ModelFileError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    save_image(image_grid(cells, labels, columns=len(cells) // len(args.photo)), args.output, quality=90)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
