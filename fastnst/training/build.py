"""The building blocks of a training run, made from a checked TrainConfig (as the torchvision reference
scripts' main() makes them): data, loader, transform network, perceptual loss, optimiser and schedule."""

from __future__ import annotations

import logging
import math
import signal
from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from fastnst.assets import sample_image_paths
from fastnst.imageio import ImageError, open_image, open_painting, pil_to_tensor, resize_long_side
from fastnst.nets.losses import MIN_LEVEL_SIDE, PerceptualLoss, equal_say_factors, mean_power
from fastnst.nets.modelfile import load_style_model
from fastnst.nets.multistyle import MultiStyleNet
from fastnst.nets.transform_net import TransformNet
from fastnst.nets.vgg import VGG19Features
from fastnst.training.config import ConfigError, Trainable, TrainConfig, active_layers, model_config, painting_names, style_image_file
from fastnst.training.data import DataError, EpochSampler, PhotoDataset, center_square, collate_photos, image_paths
from fastnst.training.distributed import DistInfo
from fastnst.training.phases import Phase, StyleForm, phase_lr_factor

log = logging.getLogger("fastnst.train")

# Bundled photos shown in TensorBoard when `sample_images` is empty (a cat, a cup, a face, a machine).
DEFAULT_SAMPLE_PHOTOS = ("chelsea.png", "coffee.png", "astronaut.png", "motorcycle_left.png")


def build_data(cfg: TrainConfig, info: DistInfo) -> tuple[PhotoDataset, EpochSampler]:
    d = cfg.data
    paths = image_paths(d.name.value, d.root, d.split, d.annotations, d.limit, d.files)
    # One readable photo before anything is written: a folder of nothing but unreadable files would
    # otherwise be found out an epoch later, with a run directory already made. The first readable
    # one ends the search, so a good data set costs one decode.
    reasons = []
    for path in paths:
        try:
            open_image(path)
            break
        except (ImageError, OSError) as exc:
            reasons.append(str(exc))
    else:
        raise DataError(f"no readable image among the {len(paths)} files of the data set (e.g. {reasons[0]})")
    dataset = PhotoDataset(paths, d.image_size, d.crop_min_scale, d.hflip)
    sampler = EpochSampler(len(dataset), d.batch_size, cfg.seed, d.repeat, info.rank, info.world_size)
    return dataset, sampler


def _ignore_interrupts_in_worker(_: int) -> None:
    # Ctrl-C reaches the whole process group; workers must keep serving until the main process has
    # finished its step and saved a checkpoint, then it shuts them down.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def make_loader(dataset: PhotoDataset, sampler: EpochSampler, cfg: TrainConfig, device: torch.device) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=cfg.data.batch_size,
        sampler=sampler,
        num_workers=cfg.data.num_workers,
        collate_fn=collate_photos,
        pin_memory=device.type == "cuda",
        worker_init_fn=_ignore_interrupts_in_worker if cfg.data.num_workers > 0 else None,
    )


def build_model(cfg: TrainConfig, device: torch.device, memory_format: torch.memory_format
                ) -> TransformNet | MultiStyleNet:
    """The transform network: random weights, or a model file's with ``init_from`` (fine-tuning); with
    ``style.paintings``, one network for all of them (random weights)."""
    if cfg.style.paintings:
        model = MultiStyleNet(model_config(cfg), painting_names(cfg.style))
    else:
        model = _single_network(cfg)
    if cfg.trainable == Trainable.norms:
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d):
                module.requires_grad_(False)
    return model.to(device=device, memory_format=memory_format)


def _single_network(cfg: TrainConfig) -> TransformNet:
    model = TransformNet(model_config(cfg))
    if cfg.init_from:
        start = load_style_model(cfg.init_from)
        have, want = start.config, model.config
        # Dilation has no parameters: a file's weights fit a network that differs from it only there
        # (fine-tuning an undilated model into a dilated one). Width and depth must match.
        if (have.base_channels, have.num_residual_blocks) != (want.base_channels, want.num_residual_blocks):
            raise ConfigError(f"init_from={cfg.init_from}: the file holds a network with base_channels="
                              f"{have.base_channels}, {have.num_residual_blocks} residual blocks; the config asks for "
                              f"{want.base_channels}, {want.num_residual_blocks} (choose the matching model=...)")
        model.load_state_dict(start.net.state_dict())
        if have.dilations != want.dilations:
            log.info("init_from %s: its weights, with residual dilations %s instead of the file's %s",
                     cfg.init_from, list(want.dilations), list(have.dilations))
        else:
            log.info("init_from %s: starting from its weights", cfg.init_from)
    return model


def load_paintings(cfg: TrainConfig) -> list[tuple[torch.Tensor, Path]]:
    """Every painting the run trains on: ``style.paintings``, or ``style.image`` alone."""
    return [_training_painting(cfg, image) for image in cfg.style.paintings or [cfg.style.image]]


def _training_painting(cfg: TrainConfig, image: str | None = None) -> tuple[torch.Tensor, Path]:
    """A style image (``style.image`` by default) at its training size, its uniform frame cut off
    (``style.trim_frame``)."""
    s = cfg.style
    path = style_image_file(image or s.image, s.paintings_dir, "style.paintings:" if image else "style.image")
    img, cut = open_painting(path, s.trim_frame)
    if any(cut):
        log.info("%s: cut a uniform frame off the painting (top, bottom, left, right: %s px)", path, cut)
    w, h = img.size
    img = resize_long_side(img, s.image_size)
    if min(img.size) < MIN_LEVEL_SIDE:  # relu5_1 lies behind four 2x poolings
        raise ConfigError(f"{path}: {w}x{h} px is too thin: at style.image_size={s.image_size} it is {img.width}x{img.height}, "
                          f"and the VGG-19 style layers need a short side of at least {MIN_LEVEL_SIDE} px (crop the painting)")
    return pil_to_tensor(img), path


EQUALIZE_PHOTOS = 16  # photos (centre crops) that style.equalize_layers measures the layers' losses on


def measuring_crops(dataset: PhotoDataset, what: str) -> torch.Tensor:
    """Centre crops of the first training photos: the same on every run and resume."""
    crops = [dataset[i] for i in range(min(EQUALIZE_PHOTOS, len(dataset)))]
    crops = [c for c in crops if isinstance(c, torch.Tensor)]
    if not crops:
        raise ConfigError(f"{what}: no readable training photo to measure the layers on")
    return torch.stack(crops)


def style_layer_weights(cfg: TrainConfig, vgg: VGG19Features, style: torch.Tensor, dataset: PhotoDataset | None,
                        device: torch.device) -> dict[str, float]:
    """``style.style_layers``, times each layer's equal-say factor when ``style.equalize_layers`` (measured
    on the centre crops of the first training photos)."""
    layers = active_layers(cfg.style.style_layers)
    if not cfg.style.equalize_layers or dataset is None:
        return layers
    crops = measuring_crops(dataset, "style.equalize_layers")
    factors = equal_say_factors(vgg, style.to(device), crops.to(device), list(layers))
    weights = {k: layers[k] * factors[k] for k in layers}
    log.info("style.equalize_layers: style layer weights %s", ", ".join(f"{k} {v:.4g}" for k, v in weights.items()))
    return weights


LossKey = tuple[int, StyleForm]  # (painting index, the phase's style pyramid and form of the style loss)


def build_losses(cfg: TrainConfig, phases: Sequence[Phase], device: torch.device, memory_format: torch.memory_format,
                 dataset: PhotoDataset | None = None) -> tuple[dict[LossKey, PerceptualLoss], list[Path]]:
    """One perceptual loss per painting and distinct style pyramid among the phases (all sharing one
    VGG-19), each with the painting's Gram targets computed once, here; and the paintings' files. Phase
    weights are set on them as a phase starts. ``dataset``: the training photos, for
    ``style.equalize_layers`` and ``style.log_style``."""
    s = cfg.style
    paintings = load_paintings(cfg)
    vgg = VGG19Features(cfg.vgg_weights, pooling=cfg.vgg_pooling.value).to(device=device, memory_format=memory_format)
    content_layers = active_layers(s.content_layers)
    keys = (list(dict.fromkeys(p.loss_key for p in phases if p.loss == "perceptual"))
            or [StyleForm(tuple(s.style_scales), s.log_style)])
    # The unit of log_style and of a content budget, measured once so that every batch is weighed alike.
    power = None
    if (any(key.log_style for key in keys) or s.content_target is not None) and dataset is not None and content_layers:
        crops = measuring_crops(dataset, "style.log_style" if s.content_target is None else "style.content_target").to(device)
        power = mean_power(vgg, crops, next(iter(content_layers)))
        log.info("content power %.4g (the unit of style.log_style and style.content_target)", power)
    losses = {}
    for index, (style, path) in enumerate(paintings):
        group_weights = None  # the style group's layers, measured once per painting when a phase needs them
        for key in keys:
            if key.layers is None and group_weights is None:
                group_weights = style_layer_weights(cfg, vgg, style, dataset, device)
            try:
                losses[index, key] = PerceptualLoss(
                    vgg,
                    style.to(device),
                    content_layers=content_layers,
                    style_layers=group_weights if key.layers is None else dict(key.layers),
                    content_weight=s.content_weight,
                    style_weight=s.style_weight,
                    tv_weight=s.tv_weight,
                    style_scales=key.scales,
                    log_style=key.log_style,
                    content_power=power,
                )
            except ValueError as exc:  # a pyramid level of this painting too small for VGG
                raise ConfigError(f"{path}: {exc}") from exc
    return losses, [path for _, path in paintings]


def build_optimizer(cfg: TrainConfig, model: torch.nn.Module, phases: Sequence[Phase]
                    ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """Adam at ``cfg.lr``, scaled at every step by the phase plan (each phase's lr, ramp and schedule).

    A multi-style network's per-painting norms get ``cfg.lr * sqrt(n)`` for n paintings: each sees a
    gradient one step in n and zero between, so Adam's mean gradient falls to 1/n of the dense one and its
    root mean square to 1/sqrt(n); its steps on them are 1/sqrt(n) of the shared weights' without this."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    if isinstance(model, MultiStyleNet):
        own = {id(p) for p in model.painting_parameters()}
        groups = [{"params": [p for p in trainable if id(p) not in own]},
                  {"params": [p for p in trainable if id(p) in own], "lr": cfg.lr * math.sqrt(len(model.styles))}]
        optimizer = torch.optim.Adam(groups, lr=cfg.lr)
    else:
        optimizer = torch.optim.Adam(trainable, lr=cfg.lr)
    plan, base = list(phases), float(cfg.lr)

    def factor(step: int) -> float:
        return phase_lr_factor(plan, step, base)

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def load_sample_photos(cfg: TrainConfig) -> torch.Tensor | None:
    """The fixed validation photos as a (N, 3, S, S) batch (None when there are none)."""
    if cfg.sample_images:
        paths = [Path(p).expanduser() for p in cfg.sample_images]
    else:
        bundled = {p.name: p for p in sample_image_paths()}
        paths = [bundled[n] for n in DEFAULT_SAMPLE_PHOTOS if n in bundled]
    photos = []
    for path in paths:
        try:
            photos.append(center_square(open_image(path), cfg.sample_size))
        except (ImageError, OSError) as exc:
            log.warning("sample photo skipped: %s", exc)
    return torch.cat(photos) if photos else None
