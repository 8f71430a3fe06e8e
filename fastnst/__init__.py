"""fastnst: fast neural style transfer (Johnson et al. 2016) with the Gatys et al. baseline."""

from fastnst.imageio import ImageError, load_image, save_image
from fastnst.inference import Stylizer, load_model, stylize_image
from fastnst.losses import PerceptualLoss, gram_matrix
from fastnst.modelfile import ModelFileError, StyleModel, load_style_model, save_style_model
from fastnst.temporal import FrameStylizer, Stabilization
from fastnst.transformer import TransformerConfig, TransformNet
from fastnst.vgg import VGG19Features
from fastnst.video import VideoError, stylize_video

__version__ = "0.1.0"

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
