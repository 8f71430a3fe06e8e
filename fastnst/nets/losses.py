"""Perceptual losses: content (feature MSE), style (Gram-matrix MSE), total variation.

Definitions follow Gatys et al. 2016 and Johnson et al. 2016 with one deliberate normalisation: the
Gram matrix is divided by C*H*W (Johnson) rather than left unnormalised (Gatys), so style losses of
different layers and image sizes are comparable and the weights transfer between image sizes.
The same code serves training and the Gatys baseline, so their numbers are directly comparable.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from fastnst.nets.vgg import VGG19Features

# The default layers, in one place. Gatys et al. name conv4_2 and conv1_1..conv5_1; their Caffe network
# applies ReLU in place, so those blobs hold the rectified activations: relu4_2 and relu*_1 here.
STYLE_LAYERS: tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")  # Gatys et al. 2016
GATYS_CONTENT_LAYERS: tuple[str, ...] = ("relu4_2",)  # Gatys et al. 2016: pixel optimisation
JOHNSON_CONTENT_LAYERS: tuple[str, ...] = ("relu2_2",)  # Johnson et al. 2016: feed-forward training


class _Gram(torch.autograd.Function):
    """G = X X^T / n (``nhwc=False``, X is (B, C, N)) or X^T X / n (``nhwc=True``, X is (B, N, C)).

    The backward uses the symmetry of G: dX = (dG + dG^T) X / n, one matrix product where autograd's
    generic bmm backward does two (the Gram products are a sizeable part of a Gatys step on CPU).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, n: int, nhwc: bool) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.n, ctx.nhwc = n, nhwc
        return (torch.bmm(x.transpose(1, 2), x) if nhwc else torch.bmm(x, x.transpose(1, 2))) / n

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        sym = (grad + grad.transpose(1, 2)) / ctx.n
        return (torch.bmm(x, sym) if ctx.nhwc else torch.bmm(sym, x)), None, None


def gram_matrix(features: torch.Tensor, in_float32: bool = True) -> torch.Tensor:
    """Gram matrix G = F F^T / (C*H*W) of a (B, C, H, W) batch, computed in float32.

    Float32 because bf16 sums over H*W terms lose too many bits for a loss target. ``in_float32=False``
    multiplies in the features' own dtype (bf16 under autocast) and returns float32: the speed
    comparison of scripts/bench_train.py.
    """
    b, c, h, w = features.shape
    x = features.float() if in_float32 else features
    with torch.autocast(device_type=features.device.type, enabled=False):
        if not features.is_contiguous() and features.is_contiguous(memory_format=torch.channels_last):
            # Channels-last (NHWC) features: G = F^T F over a free (B, H*W, C) view. Reshaping to
            # (B, C, H*W) would copy, and its gradient would come back NCHW and make autograd's
            # accumulation with the NHWC convolution gradients very slow (2-3x a whole VGG step on CPU).
            return _Gram.apply(x.permute(0, 2, 3, 1).reshape(b, h * w, c), c * h * w, True).float()
        return _Gram.apply(x.reshape(b, c, h * w), c * h * w, False).float()


def content_loss(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error between feature maps (target broadcast over the batch)."""
    return F.mse_loss(features.float(), target.float().expand_as(features))


def style_loss(gram: torch.Tensor, target_gram: torch.Tensor) -> torch.Tensor:
    """Mean squared error between Gram matrices (target broadcast over the batch)."""
    return F.mse_loss(gram, target_gram.expand_as(gram))


def tv_loss(image: torch.Tensor) -> torch.Tensor:
    """Total variation: mean squared difference of horizontally and vertically adjacent pixels."""
    image = image.float()
    dh = (image[..., 1:, :] - image[..., :-1, :]).pow(2).mean()
    dw = (image[..., :, 1:] - image[..., :, :-1]).pow(2).mean()
    return dh + dw


def feature_power(features: torch.Tensor) -> torch.Tensor:
    """Mean squared activation of a feature map: the unit of a content distance."""
    return features.detach().float().pow(2).mean()


@torch.no_grad()
def mean_power(vgg: VGG19Features, photos: torch.Tensor, layer: str = "relu4_2") -> float:
    """The photos' mean squared activation at ``layer``."""
    return float(feature_power(vgg(photos, (layer,))[layer]))


@torch.no_grad()
def equal_say_factors(vgg: VGG19Features, painting: torch.Tensor, photos: torch.Tensor, layers: Sequence[str],
                      unit_layer: str = "relu4_2") -> dict[str, float]:
    """Per style layer: the photos' mean squared ``unit_layer`` activation / their Gram MSE against the painting.

    Raw Gram losses of a photo against a painting differ by ~10^4 between VGG layers (relu4_1 large,
    relu1_1 and relu5_1 small), so equal layer weights train almost only relu4_1. Multiplied by these
    factors, each layer starts at about the photo's relu4_2 power, the unit in which a relu4_2 content loss
    measures one unit of content distance: every layer has the same say, and a style weight carries over
    between paintings.
    """
    targets = {k: gram_matrix(v) for k, v in vgg(painting, tuple(layers)).items()}
    feats = vgg(photos, (*layers, unit_layer))
    power = float(feature_power(feats[unit_layer]))  # as mean_power, from the same pass
    mse = {k: float(((gram_matrix(feats[k]) - targets[k]) ** 2).mean()) for k in layers}
    return {k: power / max(mse[k], 1e-30) for k in layers}


MIN_LEVEL_SIDE = 16  # relu5_1 lies behind four 2x poolings


def check_style_scales(scales: Sequence[float], smallest_side: int | None = None, what: str = "an image") -> tuple[float, ...]:
    """The style pyramid's factors as floats; ValueError unless they are distinct, in (0, 1], and (given the
    smallest side of the images the loss will see, ``what``) leave every level at least MIN_LEVEL_SIDE px."""
    out = tuple(float(x) for x in scales)
    if not out or any(not 0.0 < x <= 1.0 for x in out) or len(set(out)) != len(out):
        raise ValueError(f"style_scales must be distinct factors in (0, 1], got {list(scales)}")
    if smallest_side is not None and smallest_side * min(out) < MIN_LEVEL_SIDE:
        raise ValueError(f"style_scales: the {min(out):g} level of {what} would be under {MIN_LEVEL_SIDE} px, "
                         "too small for VGG's style layers (use larger images or a larger scale)")
    return out


def rescale(image: torch.Tensor, scale: float, what: str = "image") -> torch.Tensor:
    """``image`` resized by ``scale`` (antialiased bilinear): one level of a style pyramid."""
    if scale == 1.0:
        return image
    h, w = image.shape[-2:]
    if min(h, w) * scale < MIN_LEVEL_SIDE:
        raise ValueError(f"style_scales: at {scale:g} the {what} ({w}x{h} px) would be under {MIN_LEVEL_SIDE} px, "
                         "too small for VGG's style layers; use larger images or a larger scale")
    return F.interpolate(image.float(), scale_factor=scale, mode="bilinear", antialias=True, align_corners=False,
                         recompute_scale_factor=True)


def _as_weights(layers: Sequence[str] | Mapping[str, float]) -> dict[str, float]:
    if isinstance(layers, Mapping):
        return {str(k): float(v) for k, v in layers.items()}
    return {str(name): 1.0 for name in layers}


class PerceptualLoss(nn.Module):
    """Content + style + TV loss against fixed style target(s).

    The style Gram targets are computed once here (blended over several style images if given).
    ``forward`` returns the unweighted terms by name (``content``, ``style``, ``tv``, and per layer
    ``style/<layer>``, ``content/<layer>``) plus the weighted ``total``.

    Args:
        vgg: the frozen loss network.
        style_images: one (1, 3, H, W) image or a list of them; ``None`` for content-only losses.
        content_layers / style_layers: layer names (equal weights) or ``{layer: weight}``.
        style_blend: per-style-image weights for the blended Gram target (normalised to sum 1).
        style_scales: the style loss is summed over the output and the painting each resized by these
            factors, with the same layer weights (terms ``style/<layer>@<scale>`` for scales other
            than 1). A level at 0.5 lets each VGG layer see twice the area of the image at the same
            motif scale: a multi-scale Gram loss as in Snelgrove 2017 ("High-resolution multi-scale
            neural texture synthesis"), which asks for structure larger than relu5_1's window.
        log_style: the style loss is the weighted mean over layers (and scales) of log(Gram MSE), times
            ``content_power`` (the training photos' mean squared activation at the first content layer;
            None: the batch's).
            Its gradient divides each layer's by that layer's current loss, so every layer keeps the
            same say however far it has come, as in the geometric mean that ``fastnst.evaluate``'s style
            distance takes; the layer weights then need no per-painting scaling, and ``style_weight``
            is the exchange rate between log style distance and content distance. (Gatys et al. and
            Johnson et al. sum the raw layer losses, which differ by ~10^4 between layers.)
    """

    def __init__(
        self,
        vgg: VGG19Features,
        style_images: torch.Tensor | Sequence[torch.Tensor] | None,
        content_layers: Sequence[str] | Mapping[str, float] = JOHNSON_CONTENT_LAYERS,
        style_layers: Sequence[str] | Mapping[str, float] = STYLE_LAYERS,
        content_weight: float = 1.0,
        style_weight: float = 1.0,  # as the training configs' schema (fastnst.training.config.StyleConfig)
        tv_weight: float = 0.0,
        style_blend: Sequence[float] | None = None,
        style_scales: Sequence[float] = (1.0,),
        log_style: bool = False,
        content_power: float | None = None,
    ) -> None:
        super().__init__()
        self.vgg = vgg
        self.log_style = bool(log_style)
        self.content_power = content_power
        self.content_layers = _as_weights(content_layers)
        self.style_layers = _as_weights(style_layers)
        self.content_weight = float(content_weight)
        self.style_weight = float(style_weight)
        self.tv_weight = float(tv_weight)
        self.style_scales = check_style_scales(style_scales)
        self.has_style_targets = False
        if style_images is not None and self.style_layers:
            images = [style_images] if isinstance(style_images, torch.Tensor) else list(style_images)
            blend = list(style_blend) if style_blend is not None else [1.0] * len(images)
            if len(blend) != len(images):
                raise ValueError(f"style_blend has {len(blend)} weights for {len(images)} style images")
            total = sum(blend)
            if total <= 0:
                raise ValueError("style_blend weights must sum to a positive number")
            self.set_style_targets(images, [w / total for w in blend])

    @torch.no_grad()
    def set_style_targets(self, images: Sequence[torch.Tensor], blend: Sequence[float]) -> None:
        """Compute (and cache) the blended Gram targets of the style images, at every style scale."""
        device = self.vgg.mean.device
        for scale in self.style_scales:
            targets: dict[str, torch.Tensor] = {}
            for image, w in zip(images, blend):
                feats = self.vgg(rescale(image.to(device).float(), scale, "painting"), self.style_layers)
                for name, f in feats.items():
                    g = gram_matrix(f) * w
                    targets[name] = targets[name] + g if name in targets else g
            for name, g in targets.items():
                # Buffers move with .to(device) and are excluded from state_dict (persistent=False).
                self.register_buffer(self._buffer_name(name, scale), g, persistent=False)
        self.has_style_targets = True

    @property
    def scaled_style_targets(self) -> dict[float, dict[str, torch.Tensor]]:
        """The Gram targets by scale and layer (read from the buffers, so they follow ``.to(device)``)."""
        if not self.has_style_targets:
            return {}
        return {scale: {name: self._style_target(name, scale) for name in self.style_layers} for scale in self.style_scales}

    @property
    def style_targets(self) -> dict[str, torch.Tensor]:
        """The Gram targets of the first style scale (1 unless the pyramid leaves it out), by layer."""
        return self.scaled_style_targets.get(self.style_scales[0], {})

    @staticmethod
    def _buffer_name(layer: str, scale: float) -> str:
        return f"_gram_{layer}" if scale == 1.0 else f"_gram_{layer}_x{round(scale * 1000)}"

    def _style_target(self, name: str, scale: float = 1.0) -> torch.Tensor:
        return getattr(self, self._buffer_name(name, scale))  # a buffer: follows .to(device)

    @torch.no_grad()
    def content_targets(self, content: torch.Tensor) -> dict[str, torch.Tensor]:
        """Content features of an image, to pass to ``forward`` when the content is fixed (Gatys)."""
        return {k: v.detach() for k, v in self.vgg(content, self.content_layers).items()}

    def forward(
        self,
        output: torch.Tensor,
        content: torch.Tensor | Mapping[str, torch.Tensor] | None,
    ) -> dict[str, torch.Tensor]:
        """Loss terms of ``output`` against ``content`` (an image batch or precomputed features)."""
        want_content = content is not None and self.content_layers and self.content_weight != 0
        layers = set(self.style_layers) if self.has_style_targets and 1.0 in self.style_scales else set()
        if want_content:
            layers |= set(self.content_layers)
        feats = self.vgg(output, layers)

        terms: dict[str, torch.Tensor] = {}
        zero = output.new_zeros((), dtype=torch.float32)

        c_total = zero
        power = self.content_power  # the unit of log_style: the first content layer's mean squared activation
        if want_content:
            if isinstance(content, torch.Tensor):
                with torch.no_grad():
                    targets = self.vgg(content, self.content_layers)
            else:
                targets = content
            if self.log_style and power is None:
                power = feature_power(targets[next(iter(self.content_layers))])
            for name, w in self.content_layers.items():
                term = content_loss(feats[name], targets[name])
                terms[f"content/{name}"] = term.detach()
                c_total = c_total + w * term
        terms["content"] = c_total

        s_total, weights = zero, 0.0
        if self.has_style_targets:
            for scale in self.style_scales:
                scaled = feats if scale == 1.0 else self.vgg(rescale(output, scale, "output"), self.style_layers)
                suffix = "" if scale == 1.0 else f"@{scale:g}"
                for name, w in self.style_layers.items():
                    term = style_loss(gram_matrix(scaled[name]), self._style_target(name, scale))
                    terms[f"style/{name}{suffix}"] = term.detach()
                    if self.log_style:
                        term = torch.log(term.float().clamp_min(1e-30))
                    s_total, weights = s_total + w * term, weights + w
            if self.log_style and weights > 0:
                s_total = s_total / weights * (power if power is not None else 1.0)
        terms["style"] = s_total

        terms["tv"] = tv_loss(output)
        terms["total"] = (
            self.content_weight * terms["content"] + self.style_weight * terms["style"] + self.tv_weight * terms["tv"]
        )
        return terms
