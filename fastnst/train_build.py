"""The building blocks of a training run, made from a checked TrainConfig (as the torchvision reference
scripts' main() makes them): data, loader, transform network, perceptual loss, optimiser and schedule."""

from __future__ import annotations

import logging
import math
import signal
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from fastnst.assets import sample_image_paths
from fastnst.data import EpochSampler, PhotoDataset, center_square, collate_photos, image_paths
from fastnst.distributed import DistInfo
from fastnst.imageio import ImageError, load_image, open_image
from fastnst.losses import PerceptualLoss
from fastnst.modelfile import load_style_model
from fastnst.train_config import ConfigError, TrainConfig, active_layers, model_config, style_image_file
from fastnst.transformer import TransformNet
from fastnst.vgg import VGG19Features

log = logging.getLogger("fastnst.train")

# Bundled photos shown in TensorBoard when `sample_images` is empty (a cat, a cup, a face, a machine).
DEFAULT_SAMPLE_PHOTOS = ("chelsea.png", "coffee.png", "astronaut.png", "motorcycle_left.png")


def build_data(cfg: TrainConfig, info: DistInfo) -> tuple[PhotoDataset, EpochSampler]:
    d = cfg.data
    paths = image_paths(d.name.value, d.root, d.split, d.annotations, d.limit)
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


def build_model(cfg: TrainConfig, device: torch.device, memory_format: torch.memory_format) -> TransformNet:
    """The transform network: random weights, or a model file's with ``init_from`` (fine-tuning)."""
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
    return model.to(device=device, memory_format=memory_format)


def build_loss(cfg: TrainConfig, device: torch.device, memory_format: torch.memory_format) -> tuple[PerceptualLoss, Path]:
    """The perceptual loss with the style's Gram targets (computed once, here)."""
    s = cfg.style
    path = style_image_file(s.image)
    style = load_image(path, max_size=s.image_size)
    vgg = VGG19Features(cfg.vgg_weights, pooling=cfg.vgg_pooling.value).to(device=device, memory_format=memory_format)
    try:
        loss = PerceptualLoss(
            vgg,
            style.to(device),
            content_layers=active_layers(s.content_layers),
            style_layers=active_layers(s.style_layers),
            content_weight=s.content_weight,
            style_weight=s.style_weight,
            tv_weight=s.tv_weight,
            style_scales=s.style_scales,
        )
    except ValueError as exc:  # a pyramid level of this painting too small for VGG
        raise ConfigError(f"{path}: {exc}") from exc
    return loss, path


def lr_factor(step: int, warmup_steps: int, perceptual_steps: int, schedule: str, min_factor: float,
              ramp_steps: int = 0) -> float:
    """LR multiplier at optimiser step ``step``: constant in the identity warm-up; in the perceptual
    phase a linear ramp over its first ``ramp_steps`` steps, times the chosen schedule.

    Why the ramp: the perceptual phase starts with fresh Adam moments and gradients ~10x the warm-up's;
    Adam's first updates are then ~lr * sign(g) for every weight at once and knock the warmed-up
    network far from the identity map (the usual remedy for Adam's early variance, cf. Liu et al.
    2020, "On the Variance of the Adaptive Learning Rate and Beyond").
    """
    if step < warmup_steps:
        return 1.0
    k = step - warmup_steps
    ramp = min(1.0, (k + 1) / ramp_steps) if ramp_steps > 0 else 1.0
    if schedule == "constant" or perceptual_steps <= 1:
        return ramp
    t = min(1.0, k / (perceptual_steps - 1))
    return ramp * (min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * t)))


def build_optimizer(cfg: TrainConfig, model: torch.nn.Module, warmup_steps: int, perceptual_steps: int
                    ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    schedule, min_factor, ramp = cfg.lr_schedule.value, float(cfg.lr_min_factor), int(cfg.lr_warmup_steps)

    def factor(step: int) -> float:
        return lr_factor(step, warmup_steps, perceptual_steps, schedule, min_factor, ramp)

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def step_budget(cfg: TrainConfig, steps_per_epoch: int) -> tuple[int, int]:
    """(warm-up steps, perceptual steps) from epochs / max_steps."""
    warmup = math.ceil(cfg.warmup_epochs * steps_per_epoch - 1e-9)
    perceptual = cfg.max_steps if cfg.max_steps is not None else math.ceil(cfg.epochs * steps_per_epoch - 1e-9)
    return max(0, warmup), max(0, perceptual)


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
