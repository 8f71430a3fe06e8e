"""fastnst: fast neural style transfer (Johnson et al. 2016) with the Gatys et al. baseline.

The public names below are imported on first use (PEP 562), so ``import fastnst`` and the command
lines' shims load no torch until they need it: the command lines set process-wide options that must
precede torch's start (fastnst.cli.openmp) first.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "ImageError": "fastnst.imageio",
    "load_image": "fastnst.imageio",
    "save_image": "fastnst.imageio",
    "Stylizer": "fastnst.inference",
    "load_model": "fastnst.inference",
    "stylize_image": "fastnst.inference",
    "PerceptualLoss": "fastnst.losses",
    "gram_matrix": "fastnst.losses",
    "ModelFileError": "fastnst.modelfile",
    "StyleModel": "fastnst.modelfile",
    "load_style_model": "fastnst.modelfile",
    "save_style_model": "fastnst.modelfile",
    "TransformerConfig": "fastnst.transformer",
    "TransformNet": "fastnst.transformer",
    "VGG19Features": "fastnst.vgg",
    "FrameStylizer": "fastnst.temporal",
    "Stabilization": "fastnst.temporal",
    "VideoError": "fastnst.video_io",
    "stylize_video": "fastnst.video",
}

__all__ = [
    "ImageError",
    "FrameStylizer",
    "ModelFileError",
    "PerceptualLoss",
    "Stabilization",
    "StyleModel",
    "Stylizer",
    "TransformNet",
    "TransformerConfig",
    "VGG19Features",
    "VideoError",
    "gram_matrix",
    "load_image",
    "load_model",
    "load_style_model",
    "save_image",
    "save_style_model",
    "stylize_image",
    "stylize_video",
]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from fastnst.imageio import ImageError, load_image, save_image
    from fastnst.inference import Stylizer, load_model, stylize_image
    from fastnst.losses import PerceptualLoss, gram_matrix
    from fastnst.modelfile import ModelFileError, StyleModel, load_style_model, save_style_model
    from fastnst.temporal import FrameStylizer, Stabilization
    from fastnst.transformer import TransformerConfig, TransformNet
    from fastnst.vgg import VGG19Features
    from fastnst.video import stylize_video
    from fastnst.video_io import VideoError


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'fastnst' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
