"""Train a feed-forward style network (Johnson, Alahi & Fei-Fei 2016): ``python -m fastnst.train style=starry``.

Layout follows the torchvision reference scripts: :func:`train` builds the data, model, loss and
optimiser, then calls :func:`train_one_epoch` until the step budget is spent. A run has two phases:

1. identity warm-up (``warmup_epochs``): loss = pixel MSE between the network's output and its input,
   so the network starts perceptual training as (nearly) the identity map instead of from noise;
2. perceptual training (``epochs`` or ``max_steps``): content + style + TV loss of the frozen VGG-19.

The library reports progress through callbacks (crowsonkb/style-transfer-pytorch); only the CLI draws
a progress bar. A non-finite loss stops the run at once with a clear message (as DINO does); Ctrl-C
saves a checkpoint first. ``torchrun --nproc_per_node=N -m fastnst.train ...`` trains with
DistributedDataParallel; rank 0 alone logs and writes files.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

from fastnst.assets import STYLE_IMAGES, sample_image_paths, style_image_path
from fastnst.checkpoint import (
    CheckpointError,
    capture_rng_state,
    last_checkpoint_path,
    load_checkpoint,
    remove_stale_temp_files,
    restore_rng_state,
    save_checkpoint,
)
from fastnst.data import (
    Batch,
    DataError,
    EpochSampler,
    PhotoDataset,
    center_square,
    collate_photos,
    image_paths,
)
from fastnst.imageio import ImageError, load_image, open_image, save_image
from fastnst.losses import PerceptualLoss
from fastnst.modelfile import ModelFileError, load_style_model, save_style_model
from fastnst.runtime import autocast, resolve_device, resolve_precision
from fastnst.train_config import DataSource, TrainConfig, to_plain_dict
from fastnst.transformer import TransformerConfig, TransformNet, count_parameters
from fastnst.vgg import LAYER_NAMES, VGG19Features, WeightsError

log = logging.getLogger("fastnst.train")

# Bundled photos shown in TensorBoard when `sample_images` is empty (a cat, a cup, a face, a machine).
DEFAULT_SAMPLE_PHOTOS = ("chelsea.png", "coffee.png", "astronaut.png", "motorcycle_left.png")


class TrainingError(RuntimeError):
    """Training cannot start or go on; the message is one line saying why and what to do."""


class ConfigError(TrainingError):
    """A configuration value is out of range or inconsistent."""


class NonFiniteLossError(TrainingError):
    """The loss or the gradient became NaN or infinite."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) stopped the run; a checkpoint was saved first (rank 0)."""

    def __init__(self, step: int, checkpoint: Path | None) -> None:
        super().__init__(f"interrupted at step {step}")
        self.step = step
        self.checkpoint = checkpoint


# Errors that the CLI reports as one line (no traceback).
USER_ERRORS = (TrainingError, DataError, ImageError, CheckpointError, ModelFileError, WeightsError)


@dataclass
class Progress:
    """What a progress callback receives after every optimiser step (rank 0 only)."""

    step: int  # optimiser steps done, warm-up included
    total_steps: int
    start_step: int  # where this session started (non-zero after resume)
    phase: str  # "warmup" or "perceptual"
    epoch: int
    loss: float  # the optimised (weighted) total
    terms: dict[str, float]  # every loss term, averaged over processes
    lr: float
    images_per_sec: float  # smoothed, all processes together


ProgressCallback = Callable[[Progress], None]


@dataclass
class TrainResult:
    run_dir: Path
    model_path: Path | None  # the exported style model (rank 0)
    exported_to: Path | None  # the copy requested by export_to
    checkpoint: Path | None
    steps: int
    skipped_images: dict[str, str] = field(default_factory=dict)  # path -> reason
    final_terms: dict[str, float] = field(default_factory=dict)


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


@dataclass
class TrainState:
    """Where a run is: everything besides the module states that resuming needs."""

    step: int = 0  # optimiser steps done (warm-up + perceptual)
    epoch: int = 0
    batch_in_epoch: int = 0  # batches of `epoch` consumed (the data-order position)
    images_seen: int = 0  # over all processes
    wall_time: float = 0.0  # seconds spent in earlier sessions of this run
    skipped: dict[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------------


def validate_config(cfg: DictConfig) -> DictConfig:
    """Re-check ``cfg`` against the schema (catches keys added with ``+``) and check value ranges."""
    try:
        # Merge a plain copy: merging a typed node would carry keys forced in with '+' past the schema.
        plain = OmegaConf.to_container(cfg, resolve=False, enum_to_str=True)
        merged = OmegaConf.merge(OmegaConf.structured(TrainConfig), plain)
        OmegaConf.resolve(merged)
    except Exception as exc:  # omegaconf's ValidationError / ConfigKeyError / InterpolationResolutionError
        raise ConfigError(f"invalid configuration: {str(exc).splitlines()[0]}") from exc
    missing = sorted(OmegaConf.missing_keys(merged))
    if missing:
        hint = " (data=folder data.root=/path/to/images)" if "data.root" in missing else ""
        raise ConfigError(f"missing value for {', '.join(missing)}{hint}")
    c = merged
    checks = [
        (c.data.name == DataSource.sample or bool(c.data.root),
         f"data={c.data.name.value} needs data.root=/path/to/{'coco' if c.data.name == DataSource.coco else 'images'}"),
        (c.data.image_size >= 16, f"data.image_size must be >= 16, got {c.data.image_size}"),
        (c.data.batch_size >= 1, f"data.batch_size must be >= 1, got {c.data.batch_size}"),
        (c.data.num_workers >= 0, f"data.num_workers must be >= 0, got {c.data.num_workers}"),
        (c.data.repeat >= 1, f"data.repeat must be >= 1, got {c.data.repeat}"),
        (0.0 < c.data.crop_min_scale <= 1.0, f"data.crop_min_scale must be in (0, 1], got {c.data.crop_min_scale}"),
        (c.data.limit is None or c.data.limit >= 1, f"data.limit must be >= 1 or null, got {c.data.limit}"),
        (c.epochs >= 0, f"epochs must be >= 0, got {c.epochs}"),
        (c.warmup_epochs >= 0, f"warmup_epochs must be >= 0, got {c.warmup_epochs}"),
        (c.max_steps is None or c.max_steps >= 0, f"max_steps must be >= 0 or null, got {c.max_steps}"),
        (c.lr > 0, f"lr must be > 0, got {c.lr}"),
        (0.0 <= c.lr_min_factor <= 1.0, f"lr_min_factor must be in [0, 1], got {c.lr_min_factor}"),
        (c.lr_warmup_steps >= 0, f"lr_warmup_steps must be >= 0, got {c.lr_warmup_steps}"),
        (c.grad_clip is None or c.grad_clip > 0, f"grad_clip must be > 0 or null, got {c.grad_clip}"),
        (c.seed >= 0, f"seed must be >= 0, got {c.seed}"),
        (c.log_every >= 1, f"log_every must be >= 1, got {c.log_every}"),
        (c.checkpoint_every >= 0, f"checkpoint_every must be >= 0, got {c.checkpoint_every}"),
        (c.sample_every >= 0, f"sample_every must be >= 0, got {c.sample_every}"),
        (c.sample_size >= 16, f"sample_size must be >= 16, got {c.sample_size}"),
        (c.style.image_size >= 16, f"style.image_size must be >= 16, got {c.style.image_size}"),
        (c.style.content_weight >= 0 and c.style.style_weight >= 0 and c.style.tv_weight >= 0,
         "style.content_weight, style.style_weight and style.tv_weight must be >= 0"),
        (bool(str(c.style.name).strip()) and "/" not in str(c.style.name),
         f"style.name must be a non-empty name without '/', got {c.style.name!r}"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    for group in ("content_layers", "style_layers"):
        for layer, weight in c.style[group].items():
            if layer not in LAYER_NAMES:
                raise ConfigError(f"style.{group}: unknown VGG-19 layer {layer!r} (valid: conv1_1 ... relu5_4)")
            if weight < 0:
                raise ConfigError(f"style.{group}.{layer}: weight must be >= 0, got {weight}")
    if not _active_layers(c.style.style_layers) and c.style.style_weight > 0:
        raise ConfigError("style.style_layers has no layer with a positive weight")
    try:
        model_config(c)
    except ValueError as exc:
        raise ConfigError(f"model: {exc}") from exc
    return merged


def model_config(cfg: DictConfig) -> TransformerConfig:
    return TransformerConfig(base_channels=int(cfg.model.base_channels),
                             num_residual_blocks=int(cfg.model.num_residual_blocks))


def _active_layers(layers: Any) -> dict[str, float]:
    """Layers with a non-zero weight (a zero weight turns a layer off without deleting the key)."""
    return {str(k): float(v) for k, v in dict(layers).items() if float(v) != 0.0}


def style_image_file(image: str) -> Path:
    """``style.image``: a bundled painting's name (starry, scream) or a path to an image file."""
    path = Path(str(image)).expanduser()
    if str(image) in STYLE_IMAGES and not path.exists():
        return style_image_path(str(image))
    if not path.is_file():
        raise ConfigError(
            f"style.image {image}: no such file (give a path to a painting, or a bundled name: {', '.join(STYLE_IMAGES)})"
        )
    return path


# --------------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------------


def setup_distributed(device_name: str) -> tuple[DistInfo, torch.device]:
    """Join the process group torchrun set up (gloo on CPU, nccl on CUDA), or run as a single process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    device = resolve_device(device_name)
    if world_size <= 1:
        return DistInfo(), device
    import torch.distributed as dist

    info = DistInfo(rank=int(os.environ["RANK"]), world_size=world_size,
                    local_rank=int(os.environ.get("LOCAL_RANK", "0")))
    if device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return info, device


def teardown_distributed(info: DistInfo) -> None:
    if info.enabled:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def build_data(cfg: DictConfig, info: DistInfo) -> tuple[PhotoDataset, EpochSampler]:
    d = cfg.data
    paths = image_paths(d.name.value, d.root, d.split, d.annotations, d.limit)
    dataset = PhotoDataset(paths, d.image_size, d.crop_min_scale, d.hflip)
    sampler = EpochSampler(len(dataset), d.batch_size, cfg.seed, d.repeat, info.rank, info.world_size)
    return dataset, sampler


def _ignore_interrupts_in_worker(_: int) -> None:
    # Ctrl-C reaches the whole process group; workers must keep serving until the main process has
    # finished its step and saved a checkpoint, then it shuts them down.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def make_loader(dataset: PhotoDataset, sampler: EpochSampler, cfg: DictConfig, device: torch.device) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=cfg.data.batch_size,
        sampler=sampler,
        num_workers=cfg.data.num_workers,
        collate_fn=collate_photos,
        pin_memory=device.type == "cuda",
        worker_init_fn=_ignore_interrupts_in_worker if cfg.data.num_workers > 0 else None,
    )


def build_model(cfg: DictConfig, device: torch.device, memory_format: torch.memory_format) -> TransformNet:
    """The transform network: random weights, or a model file's with ``init_from`` (fine-tuning)."""
    model = TransformNet(model_config(cfg))
    if cfg.init_from:
        start = load_style_model(cfg.init_from)
        if start.config != model.config:
            have, want = start.config, model.config
            raise ConfigError(f"init_from={cfg.init_from}: the file holds a network with base_channels="
                              f"{have.base_channels}, {have.num_residual_blocks} residual blocks; the config asks for "
                              f"{want.base_channels}, {want.num_residual_blocks} (choose the matching model=...)")
        model.load_state_dict(start.net.state_dict())
    return model.to(device=device, memory_format=memory_format)


def build_loss(cfg: DictConfig, device: torch.device, memory_format: torch.memory_format) -> tuple[PerceptualLoss, Path]:
    """The perceptual loss with the style's Gram targets (computed once, here)."""
    s = cfg.style
    path = style_image_file(s.image)
    style = load_image(path, max_size=s.image_size)
    vgg = VGG19Features(cfg.vgg_weights, pooling=cfg.vgg_pooling.value).to(device=device, memory_format=memory_format)
    loss = PerceptualLoss(
        vgg,
        style.to(device),
        content_layers=_active_layers(s.content_layers),
        style_layers=_active_layers(s.style_layers),
        content_weight=s.content_weight,
        style_weight=s.style_weight,
        tv_weight=s.tv_weight,
    )
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


def build_optimizer(cfg: DictConfig, model: torch.nn.Module, warmup_steps: int, perceptual_steps: int
                    ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    schedule, min_factor, ramp = cfg.lr_schedule.value, float(cfg.lr_min_factor), int(cfg.lr_warmup_steps)

    def factor(step: int) -> float:
        return lr_factor(step, warmup_steps, perceptual_steps, schedule, min_factor, ramp)

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def step_budget(cfg: DictConfig, steps_per_epoch: int) -> tuple[int, int]:
    """(warm-up steps, perceptual steps) from epochs / max_steps."""
    warmup = math.ceil(cfg.warmup_epochs * steps_per_epoch - 1e-9)
    perceptual = cfg.max_steps if cfg.max_steps is not None else math.ceil(cfg.epochs * steps_per_epoch - 1e-9)
    return max(0, warmup), max(0, perceptual)


def load_sample_photos(cfg: DictConfig) -> torch.Tensor | None:
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


class InterruptFlag:
    """Turns the first Ctrl-C / SIGTERM into a request to stop after the current step.

    Stopping at a step boundary keeps the saved checkpoint consistent (never a half-applied update).
    A second Ctrl-C aborts at once. Only the main thread can install signal handlers; elsewhere this
    is a no-op and a KeyboardInterrupt simply propagates.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        log.warning("stop requested: finishing this step and saving a checkpoint (Ctrl-C again to abort at once)")

    def __enter__(self) -> "InterruptFlag":
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


@dataclass
class TrainContext:
    """Everything train_one_epoch needs, built once by train()."""

    cfg: DictConfig
    run_dir: Path
    dist: DistInfo
    device: torch.device
    dtype: torch.dtype
    memory_format: torch.memory_format
    model: TransformNet  # the plain module (saved, exported, used for samples)
    step_model: torch.nn.Module  # what the step runs: the model, maybe wrapped in DDP and/or compiled
    loss_fn: PerceptualLoss
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler | None
    sampler: EpochSampler
    warmup_steps: int
    total_steps: int
    start_step: int
    callbacks: Sequence[ProgressCallback]
    interrupt: InterruptFlag
    overrides: list[str]
    tb: Any = None  # TensorBoardLogger on rank 0
    sample_photos: torch.Tensor | None = None
    session_start: float = field(default_factory=time.perf_counter)
    window: dict[str, float] = field(default_factory=dict)  # sums of terms since the last log line
    window_counts: dict[str, int] = field(default_factory=dict)  # steps that had each term (phases differ)
    window_images: int = 0
    window_start: float = field(default_factory=time.perf_counter)
    last_step_end: float = field(default_factory=time.perf_counter)
    smoothed_rate: float = 0.0  # images/s, exponential moving average over steps (progress display)


# --------------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------------


def compute_loss(ctx: TrainContext, images: torch.Tensor, phase: str) -> dict[str, torch.Tensor]:
    """Forward pass and loss terms; ``total`` is what is optimised."""
    with autocast(ctx.device, ctx.dtype):
        output = ctx.step_model(images)
        if phase == "warmup":
            # Identity warm-up: pixel MSE to the input drives the network toward the identity map.
            pixel = F.mse_loss(output.float(), images.float())
            return {"pixel": pixel, "total": pixel}
        terms = ctx.loss_fn(output, images)
    s = ctx.loss_fn
    terms["weighted/content"] = (s.content_weight * terms["content"]).detach()
    terms["weighted/style"] = (s.style_weight * terms["style"]).detach()
    terms["weighted/tv"] = (s.tv_weight * terms["tv"]).detach()
    return terms


def reduce_terms(ctx: TrainContext, terms: dict[str, torch.Tensor], stop: bool) -> tuple[dict[str, float], bool]:
    """Loss terms averaged over processes (one collective that also carries the stop request)."""
    names = sorted(terms)
    values = torch.stack([terms[n].detach().float().reshape(()) for n in names] + [torch.tensor(float(stop), device=ctx.device)])
    if ctx.dist.enabled:
        import torch.distributed as dist

        dist.all_reduce(values)
        values[:-1] /= ctx.dist.world_size
    flat = values.cpu().tolist()
    return dict(zip(names, flat[:-1])), flat[-1] > 0


def _batch_count_everywhere(ctx: TrainContext, n: int) -> int:
    """The smallest batch over processes: a step needs every process to have data (DDP syncs gradients)."""
    if not ctx.dist.enabled:
        return n
    import torch.distributed as dist

    t = torch.tensor([n], device=ctx.device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return int(t.item())


def _non_finite_message(ctx: TrainContext, state: TrainState, phase: str, what: str, terms: dict[str, float]) -> str:
    shown = ", ".join(f"{k}={v:.4g}" for k, v in terms.items() if "/" not in k)
    ckpt = last_checkpoint_path(ctx.run_dir)
    last = f"last good checkpoint: {ckpt}" if ckpt.is_file() else "no checkpoint was written"
    return (f"non-finite {what} at step {state.step + 1} ({phase} phase; {shown}); stopped. "
            f"Lower lr (now {ctx.optimizer.param_groups[0]['lr']:.3g}) or the loss weights, or try precision=fp32; {last}")


def train_one_epoch(ctx: TrainContext, state: TrainState, loader: Iterable[Batch]) -> bool:
    """Run the optimiser over one epoch of batches (from ``state.batch_in_epoch`` on).

    Returns True when the step budget is spent. State is advanced only after a step completes, so a
    checkpoint taken at any point between steps resumes exactly.
    """
    params = [p for p in ctx.model.parameters() if p.requires_grad]
    clip = ctx.cfg.grad_clip
    for batch in loader:
        for bad in batch.bad:
            if bad.path not in state.skipped:
                log.warning("skipping unreadable image: %s", bad.reason)
            state.skipped[bad.path] = bad.reason
        n = batch.images.shape[0] if batch.images is not None else 0
        if _batch_count_everywhere(ctx, n) == 0:
            state.batch_in_epoch += 1
            continue
        phase = "warmup" if state.step < ctx.warmup_steps else "perceptual"
        if state.step == ctx.warmup_steps > 0:
            # Fresh Adam moments for the perceptual phase. Kept from the warm-up, its second moments
            # would reflect pixel-loss gradients orders of magnitude smaller than the perceptual ones,
            # and m/sqrt(v) would scale the first few hundred steps to ~5x the learning rate: seen to
            # collapse the network into dark blobs that 200 steps did not undo.
            ctx.optimizer.state.clear()
        images = batch.images.to(ctx.device, non_blocking=True).contiguous(memory_format=ctx.memory_format)

        terms = compute_loss(ctx, images, phase)
        values, stop = reduce_terms(ctx, terms, ctx.interrupt.requested)
        if not math.isfinite(values["total"]):
            raise NonFiniteLossError(_non_finite_message(ctx, state, phase, "loss", values))

        ctx.optimizer.zero_grad(set_to_none=True)
        if ctx.scaler is not None:
            ctx.scaler.scale(terms["total"]).backward()
            ctx.scaler.unscale_(ctx.optimizer)
        else:
            terms["total"].backward()
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, clip if clip is not None else float("inf")))
        if not math.isfinite(grad_norm) and ctx.scaler is None:  # fp16's scaler skips such steps by design
            raise NonFiniteLossError(_non_finite_message(ctx, state, phase, "gradient", values))
        lr = ctx.optimizer.param_groups[0]["lr"]
        if ctx.scaler is not None:
            ctx.scaler.step(ctx.optimizer)
            ctx.scaler.update()
        else:
            ctx.optimizer.step()
        ctx.scheduler.step()

        state.step += 1
        state.batch_in_epoch += 1
        state.images_seen += n * ctx.dist.world_size
        values["grad_norm"] = grad_norm
        _after_step(ctx, state, phase, values, lr, n * ctx.dist.world_size)
        if stop:
            raise KeyboardInterrupt
        if state.step >= ctx.total_steps:
            return True
    return False


def _after_step(ctx: TrainContext, state: TrainState, phase: str, values: dict[str, float], lr: float, images: int) -> None:
    """Progress callbacks, log lines, TensorBoard, periodic checkpoints and samples (rank 0)."""
    for k, v in values.items():
        ctx.window[k] = ctx.window.get(k, 0.0) + v
        ctx.window_counts[k] = ctx.window_counts.get(k, 0) + 1
    ctx.window_images += images
    now = time.perf_counter()
    step_rate = images / max(now - ctx.last_step_end, 1e-9)
    ctx.last_step_end = now
    ctx.smoothed_rate = step_rate if ctx.smoothed_rate == 0.0 else 0.9 * ctx.smoothed_rate + 0.1 * step_rate
    if not ctx.dist.is_main:
        return
    progress = Progress(step=state.step, total_steps=ctx.total_steps, start_step=ctx.start_step, phase=phase,
                        epoch=state.epoch, loss=values["total"], terms=dict(values), lr=lr,
                        images_per_sec=ctx.smoothed_rate)
    for callback in ctx.callbacks:
        callback(progress)

    last = state.step >= ctx.total_steps
    if state.step % ctx.cfg.log_every == 0 or last:
        rate = ctx.window_images / max(now - ctx.window_start, 1e-9)  # exact average since the last log line
        mean = {k: v / ctx.window_counts[k] for k, v in ctx.window.items()}
        shown = " ".join(f"{k}={v:.4g}" for k, v in sorted(mean.items()) if "/" not in k and k != "grad_norm")
        log.info("step %d/%d [%s] epoch %d %s lr=%.3g %.2f img/s", state.step, ctx.total_steps, phase, state.epoch,
                 shown, lr, rate)
        if ctx.tb is not None:
            scalars = {f"loss/{k}": v for k, v in mean.items() if k != "grad_norm"}
            scalars.update({"train/lr": lr, "train/images_per_sec": rate, "train/grad_norm": mean.get("grad_norm", 0.0),
                            "train/epoch": state.epoch, "data/skipped_images": len(state.skipped)})
            ctx.tb.scalars(state.step, scalars)
        ctx.window.clear()
        ctx.window_counts.clear()
        ctx.window_images = 0
        ctx.window_start = time.perf_counter()
    if ctx.cfg.checkpoint_every and state.step % ctx.cfg.checkpoint_every == 0 and not last:
        save_training_checkpoint(ctx, state)
    if ctx.cfg.sample_every and state.step % ctx.cfg.sample_every == 0 and not last:
        render_samples(ctx, state)


def checkpoint_payload(ctx: TrainContext, state: TrainState) -> dict[str, Any]:
    from fastnst import __version__

    return {
        "model": ctx.model.state_dict(),
        "model_config": ctx.model.config.to_dict(),
        "optimizer": ctx.optimizer.state_dict(),
        "scheduler": ctx.scheduler.state_dict(),
        "scaler": ctx.scaler.state_dict() if ctx.scaler is not None else None,
        "step": state.step,
        "epoch": state.epoch,
        "batch_in_epoch": state.batch_in_epoch,
        "images_seen": state.images_seen,
        "wall_time": state.wall_time + (time.perf_counter() - ctx.session_start),
        "skipped": dict(state.skipped),
        "warmup_steps": ctx.warmup_steps,
        "total_steps": ctx.total_steps,
        "data": ctx.sampler.state(),
        "rng": capture_rng_state(),
        "config": to_plain_dict(ctx.cfg),
        "overrides": list(ctx.overrides),
        "fastnst_version": __version__,
    }


def save_training_checkpoint(ctx: TrainContext, state: TrainState) -> Path | None:
    """Write ``checkpoints/last.pt`` atomically (rank 0 only)."""
    if not ctx.dist.is_main:
        return None
    path = save_checkpoint(last_checkpoint_path(ctx.run_dir), checkpoint_payload(ctx, state))
    log.debug("checkpoint %s (step %d)", path, state.step)
    return path


@torch.no_grad()
def render_samples(ctx: TrainContext, state: TrainState) -> None:
    """Stylize the fixed validation photos: TensorBoard image + samples/step_<N>.jpg (photos above, output below)."""
    if ctx.sample_photos is None or not ctx.dist.is_main:
        return
    photos = ctx.sample_photos.to(ctx.device).contiguous(memory_format=ctx.memory_format)
    ctx.model.eval()
    try:
        with autocast(ctx.device, ctx.dtype):
            out = ctx.model(photos)
    finally:
        ctx.model.train()
    out = out.float().clamp(0, 1).cpu()
    grid = torch.cat([torch.cat(list(ctx.sample_photos), dim=2), torch.cat(list(out), dim=2)], dim=1)
    if ctx.tb is not None:
        ctx.tb.image(state.step, "samples", grid)
    save_image(grid, ctx.run_dir / "samples" / f"step_{state.step:06d}.jpg", quality=90)


def check_checkpoint_model(ckpt: dict[str, Any], config: TransformerConfig, resume: str) -> None:
    """Refuse a checkpoint whose network differs from the one the config builds."""
    saved_model = ckpt.get("model_config")
    if saved_model != config.to_dict():
        raise CheckpointError(
            f"{resume}: checkpoint has model {saved_model}, this run builds {config.to_dict()} "
            "(resume with the same model settings)"
        )


def restore_from_checkpoint(ctx: TrainContext, ckpt: dict[str, Any], cfg: DictConfig) -> TrainState:
    """Load module/optimiser/scheduler/RNG states and the loop position from a checkpoint."""
    check_checkpoint_model(ckpt, ctx.model.config, cfg.resume)
    try:
        ctx.model.load_state_dict(ckpt["model"])
        ctx.optimizer.load_state_dict(ckpt["optimizer"])
        ctx.scheduler.load_state_dict(ckpt["scheduler"])
        if ctx.scaler is not None and ckpt.get("scaler"):
            ctx.scaler.load_state_dict(ckpt["scaler"])
    except (KeyError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"{cfg.resume}: checkpoint does not fit this run ({str(exc).splitlines()[0]})") from exc
    if ckpt.get("data") != ctx.sampler.state():
        log.warning("resume: data settings changed since the checkpoint (%s -> %s); the data order will differ",
                    ckpt.get("data"), ctx.sampler.state())
    changed = _config_changes(ckpt.get("config", {}), to_plain_dict(cfg))
    if changed:
        log.info("resume: settings changed since the checkpoint: %s", ", ".join(changed))
    restore_rng_state(ckpt["rng"])
    return TrainState(step=int(ckpt["step"]), epoch=int(ckpt["epoch"]), batch_in_epoch=int(ckpt["batch_in_epoch"]),
                      images_seen=int(ckpt.get("images_seen", 0)), wall_time=float(ckpt.get("wall_time", 0.0)),
                      skipped=dict(ckpt.get("skipped", {})))


def _config_changes(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    changes = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        name = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            changes += _config_changes(a, b, name + ".")
        elif a != b and name != "resume":
            changes.append(f"{name}: {a} -> {b}")
    return changes


def model_info(ctx: TrainContext, state: TrainState, style_path: Path, num_images: int, wall_time: float) -> dict[str, Any]:
    """Metadata stored in the exported model file."""
    from fastnst import __version__

    cfg = ctx.cfg
    s = cfg.style
    return {
        "style": s.name,
        "style_image": style_path.name,
        "style_image_size": s.image_size,
        "steps": max(0, state.step - ctx.warmup_steps),
        "warmup_steps": min(state.step, ctx.warmup_steps),
        "epochs": cfg.epochs,
        "warmup_epochs": cfg.warmup_epochs,
        "max_steps": cfg.max_steps,
        "content_weight": s.content_weight,
        "style_weight": s.style_weight,
        "tv_weight": s.tv_weight,
        "content_layers": _active_layers(s.content_layers),
        "style_layers": _active_layers(s.style_layers),
        "vgg_weights": cfg.vgg_weights,
        "vgg_pooling": cfg.vgg_pooling.value,
        "image_size": cfg.data.image_size,
        "batch_size": cfg.data.batch_size * ctx.dist.world_size,
        "lr": cfg.lr,
        "lr_schedule": cfg.lr_schedule.value,
        "lr_warmup_steps": cfg.lr_warmup_steps,
        "data": cfg.data.name.value,
        "data_images": num_images,
        "images_seen": state.images_seen,
        "seed": cfg.seed,
        "init_from": str(cfg.init_from) if cfg.init_from else None,
        "wall_time_s": round(wall_time, 1),
        "device": str(ctx.device),
        "processes": ctx.dist.world_size,
        "precision": str(ctx.dtype).replace("torch.", ""),
        "compile": bool(cfg.compile),
        "fastnst_version": __version__,
    }


def export_destination(export_to: str, style: str) -> Path:
    """``export_to`` is a directory (gets ``<style>.safetensors``) or a ``.safetensors`` file path."""
    path = Path(export_to).expanduser()
    return path if path.suffix == ".safetensors" else path / f"{style}.safetensors"


# --------------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------------


def train(cfg: DictConfig, run_dir: str | os.PathLike, callbacks: Sequence[ProgressCallback] = (),
          overrides: Sequence[str] = ()) -> TrainResult:
    """Train a style model as ``cfg`` says, writing into ``run_dir`` (rank 0); return what was written.

    Raises TrainingError (and subclasses), DataError, CheckpointError, ImageError, WeightsError with
    one-line messages; TrainingInterrupted after Ctrl-C (a checkpoint saved first).
    """
    cfg = validate_config(cfg)
    info, device = setup_distributed(cfg.device)
    flush_denormal = device.type == "cpu" and torch.set_flush_denormal(True)
    try:
        return _train(cfg, Path(run_dir), info, device, callbacks, list(overrides))
    finally:
        if flush_denormal:
            torch.set_flush_denormal(False)
        teardown_distributed(info)


def _train(cfg: DictConfig, run_dir: Path, info: DistInfo, device: torch.device,
           callbacks: Sequence[ProgressCallback], overrides: list[str]) -> TrainResult:
    if not info.is_main:
        logging.getLogger("fastnst").setLevel(logging.WARNING)
    try:
        dtype = resolve_precision(cfg.precision.value, device)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(cfg.seed)

    # Data first: a wrong data root should fail before anything slow happens.
    dataset, sampler = build_data(cfg, info)
    warmup_steps, perceptual_steps = step_budget(cfg, sampler.batches_per_epoch)
    total_steps = warmup_steps + perceptual_steps
    loss_fn, style_path = build_loss(cfg, device, memory_format)
    model = build_model(cfg, device, memory_format)
    optimizer, scheduler = build_optimizer(cfg, model, warmup_steps, perceptual_steps)
    scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 else None
    ckpt = load_checkpoint(cfg.resume) if cfg.resume else None

    ctx = TrainContext(cfg=cfg, run_dir=run_dir, dist=info, device=device, dtype=dtype, memory_format=memory_format,
                       model=model, step_model=model, loss_fn=loss_fn, optimizer=optimizer, scheduler=scheduler,
                       scaler=scaler, sampler=sampler, warmup_steps=warmup_steps, total_steps=total_steps,
                       start_step=0, callbacks=callbacks, interrupt=InterruptFlag(), overrides=overrides)
    state = restore_from_checkpoint(ctx, ckpt, cfg) if ckpt is not None else TrainState()
    ctx.start_step = state.step
    if ckpt is not None and info.is_main:
        for stale in remove_stale_temp_files(last_checkpoint_path(run_dir)):  # left by a kill mid-write
            log.info("removed %s, an unfinished checkpoint write", stale)

    step_model: torch.nn.Module = model
    if info.enabled:
        from torch.nn.parallel import DistributedDataParallel

        step_model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.compile:
        step_model = torch.compile(step_model)
    ctx.step_model = step_model

    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(to_plain_dict(cfg))))
        if cfg.tensorboard:
            from fastnst.logging_tb import TensorBoardLogger

            ctx.tb = TensorBoardLogger(run_dir / "tb", purge_step=state.step + 1 if state.step else None)
            ctx.tb.text("config", "```\n" + OmegaConf.to_yaml(cfg) + "\n```")
        ctx.sample_photos = load_sample_photos(cfg)
    log.info(
        "%s: %s data, %d images, %d steps/epoch (x%d processes, batch %d each); warm-up %d steps, perceptual %d steps; "
        "%s net (%d params) on %s, %s%s%s",
        cfg.style.name, cfg.data.name.value, len(dataset), sampler.batches_per_epoch, info.world_size,
        cfg.data.batch_size, warmup_steps, perceptual_steps, cfg.model.name, count_parameters(model), device,
        str(dtype).replace("torch.", ""), ", channels_last" if cfg.channels_last else "", ", compiled" if cfg.compile else "",
    )
    if state.step:
        log.info("resumed from %s at step %d (epoch %d, batch %d)", cfg.resume, state.step, state.epoch, state.batch_in_epoch)
    if info.is_main:
        log.info("run directory: %s", run_dir)

    model.train()
    ctx.window_start = ctx.last_step_end = time.perf_counter()
    try:
        with ctx.interrupt:
            while state.step < total_steps:
                sampler.set_epoch(state.epoch, min(state.batch_in_epoch, sampler.batches_per_epoch))
                steps_before, batches_before = state.step, state.batch_in_epoch
                done = train_one_epoch(ctx, state, make_loader(dataset, sampler, cfg, device))
                if done:
                    break
                if state.step == steps_before and state.batch_in_epoch > batches_before:
                    raise DataError(f"no readable image in a whole epoch ({len(state.skipped)} unreadable files)")
                state.epoch += 1
                state.batch_in_epoch = 0
    except KeyboardInterrupt as exc:
        path = save_training_checkpoint(ctx, state)
        if ctx.tb is not None:
            ctx.tb.close()
        if info.is_main:
            log.warning("interrupted at step %d/%d; checkpoint: %s", state.step, total_steps, path)
        raise TrainingInterrupted(state.step, path) from exc
    except BaseException:
        if ctx.tb is not None:
            ctx.tb.close()
        raise

    # End of the run: last checkpoint, final samples, the style model file.
    result = TrainResult(run_dir=run_dir, model_path=None, exported_to=None, checkpoint=None, steps=state.step,
                         skipped_images=dict(state.skipped), final_terms={})
    if info.is_main:
        result.checkpoint = save_training_checkpoint(ctx, state)
        render_samples(ctx, state)
        wall = state.wall_time + (time.perf_counter() - ctx.session_start)
        meta = model_info(ctx, state, style_path, len(dataset), wall)
        result.model_path = save_style_model(run_dir / f"{cfg.style.name}.safetensors", model, meta)
        if cfg.export_to:
            result.exported_to = save_style_model(export_destination(cfg.export_to, cfg.style.name), model, meta)
        if state.skipped:
            log.warning("skipped %d unreadable image(s) in total, e.g. %s", len(state.skipped), next(iter(state.skipped)))
        if ctx.tb is not None:
            ctx.tb.close()
        log.info("done: %d steps in %.0f s; model file %s", state.step, wall, result.model_path)
    return result
