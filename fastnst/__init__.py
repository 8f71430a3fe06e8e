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
    "Stylizer": "fastnst.infer.stylizer",
    "load_model": "fastnst.infer.stylizer",
    "stylize_image": "fastnst.infer.stylizer",
    "PerceptualLoss": "fastnst.nets.losses",
    "gram_matrix": "fastnst.nets.losses",
    "ModelFileError": "fastnst.nets.modelfile",
    "StyleModel": "fastnst.nets.modelfile",
    "load_style_model": "fastnst.nets.modelfile",
    "save_style_model": "fastnst.nets.modelfile",
    "TransformerConfig": "fastnst.nets.transform_net",
    "TransformNet": "fastnst.nets.transform_net",
    "VGG19Features": "fastnst.nets.vgg",
    "FrameStylizer": "fastnst.video.temporal",
    "Stabilization": "fastnst.video.temporal",
    "VideoError": "fastnst.video.container",
    "stylize_video": "fastnst.video.pipeline",
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
    from fastnst.infer.stylizer import Stylizer, load_model, stylize_image
    from fastnst.nets.losses import PerceptualLoss, gram_matrix
    from fastnst.nets.modelfile import ModelFileError, StyleModel, load_style_model, save_style_model
    from fastnst.nets.transform_net import TransformerConfig, TransformNet
    from fastnst.nets.vgg import VGG19Features
    from fastnst.video.container import VideoError
    from fastnst.video.pipeline import stylize_video
    from fastnst.video.temporal import FrameStylizer, Stabilization


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'fastnst' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
