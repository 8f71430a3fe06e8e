"""Labelled image grids (sweeps, side-by-side comparisons) for figures and quick visual checks."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image, ImageDraw, ImageFont

from fastnst.imageio import tensor_to_pil


def _as_pil(image: torch.Tensor | Image.Image) -> Image.Image:
    return tensor_to_pil(image) if isinstance(image, torch.Tensor) else image.convert("RGB")


def image_grid(
    images: Sequence[torch.Tensor | Image.Image],
    labels: Sequence[str] | None = None,
    columns: int | None = None,
    pad: int = 6,
    background: tuple[int, int, int] = (255, 255, 255),
) -> Image.Image:
    """Lay images out row by row in equal cells, each with its label underneath.

    Cells are as large as the largest image (and as wide as the longest label); smaller images are
    centred, never rescaled, so pixels stay comparable. ``columns`` defaults to all images in one row.
    Labels use Pillow's default font, sized to the cells.
    """
    if not images:
        raise ValueError("image_grid needs at least one image")
    pils = [_as_pil(im) for im in images]
    labels = list(labels) if labels is not None else [""] * len(pils)
    if len(labels) != len(pils):
        raise ValueError(f"{len(labels)} labels for {len(pils)} images")
    columns = max(1, min(columns or len(pils), len(pils)))
    rows = -(-len(pils) // columns)
    cell_h = max(im.height for im in pils)
    font = _font(max(11, min(32, cell_h // 24)))
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text_h = max((probe.textbbox((0, 0), t or "Ag", font=font)[3] for t in labels), default=0) + 4
    # Cells are wide enough for the longest label, so labels never run into each other.
    cell_w = max(max(im.width for im in pils), max(int(probe.textlength(t, font=font)) + 2 for t in labels))
    grid = Image.new(
        "RGB", (columns * (cell_w + pad) + pad, rows * (cell_h + text_h + pad) + pad), background
    )
    draw = ImageDraw.Draw(grid)
    for index, (im, text) in enumerate(zip(pils, labels)):
        row, col = divmod(index, columns)
        x0 = pad + col * (cell_w + pad)
        y0 = pad + row * (cell_h + text_h + pad)
        grid.paste(im, (x0 + (cell_w - im.width) // 2, y0 + (cell_h - im.height) // 2))
        if text:
            width = probe.textlength(text, font=font)
            draw.text((x0 + max(0, int(cell_w - width) // 2), y0 + cell_h + 2), text, fill=(0, 0, 0), font=font)
    return grid


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)  # scalable default font (Pillow >= 10.1)
    except TypeError:  # pragma: no cover - older Pillow: fixed-size bitmap font
        return ImageFont.load_default()

