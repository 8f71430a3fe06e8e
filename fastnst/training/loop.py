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
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf

from fastnst.checkpoint import (
    CheckpointError,
    capture_rng_state,
    keep_copy,
    last_checkpoint_path,
    load_checkpoint,
    remove_stale_temp_files,
    restore_rng_state,
    save_checkpoint,
    step_checkpoint_path,
)
from fastnst.imageio import ImageError, save_image
from fastnst.nets.losses import PerceptualLoss
from fastnst.nets.modelfile import ModelFileError, save_style_model
from fastnst.nets.multistyle import MultiStyleNet
from fastnst.nets.transform_net import TransformerConfig, TransformNet, count_parameters
from fastnst.nets.vgg import WeightsError
from fastnst.runtime import autocast, resolve_precision
from fastnst.training.build import (
    LossKey,
    build_data,
    build_losses,
    build_model,
    build_optimizer,
    load_sample_photos,
    make_loader,
)
from fastnst.training.config import ConfigError, TrainConfig, TrainingError, painting_names, to_plain_dict, validate_config
from fastnst.training.content_budget import ContentBudget, style_weight_scale
from fastnst.training.data import Batch, DataError, EpochSampler
from fastnst.training.distributed import DistInfo, mean_over_processes, min_over_processes, setup_distributed, teardown_distributed
from fastnst.training.interrupt import InterruptFlag
from fastnst.training.metric_log import MetricWindow
from fastnst.training.phases import Phase, phase_index, plan_phases
from fastnst.training.phases import total_steps as plan_total_steps
from fastnst.training.provenance import model_info, painting_info

log = logging.getLogger("fastnst.train")

__all__ = ["ConfigError", "NonFiniteLossError", "TrainingError", "TrainingInterrupted", "USER_ERRORS", "train",
           "train_one_epoch"]


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
    model_path: Path | None  # the exported style model (rank 0); a multi-style run's shared network
    exported_to: Path | None  # the copy requested by export_to
    checkpoint: Path | None
    steps: int
    painting_models: list[Path] = field(default_factory=list)  # a multi-style run: a model file per painting
    skipped_images: dict[str, str] = field(default_factory=dict)  # path -> reason
    final_terms: dict[str, float] = field(default_factory=dict)


@dataclass
class TrainState:
    """Where a run is: everything besides the module states that resuming needs."""

    step: int = 0  # optimiser steps done (warm-up + perceptual)
    epoch: int = 0
    batch_in_epoch: int = 0  # batches of `epoch` consumed (the data-order position)
    images_seen: int = 0  # over all processes
    wall_time: float = 0.0  # seconds spent in earlier sessions of this run
    skipped: dict[str, str] = field(default_factory=dict)


@dataclass
class TrainContext:
    """Everything train_one_epoch needs, built once by train()."""

    cfg: TrainConfig  # checked once, by validate_config
    run_dir: Path
    dist: DistInfo
    device: torch.device
    dtype: torch.dtype
    memory_format: torch.memory_format
    model: TransformNet | MultiStyleNet  # the plain module (saved, exported, used for samples)
    step_model: torch.nn.Module  # what the step runs: the model, maybe wrapped in DDP and/or compiled
    loss_fn: PerceptualLoss  # the current phase's
    losses: dict[LossKey, PerceptualLoss]  # one per painting and distinct style pyramid among the phases
    phases: list[Phase]
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler  # enabled for fp16 only; a pass-through otherwise
    sampler: EpochSampler
    dataset: Any
    warmup_steps: int  # steps in identity phases
    total_steps: int
    start_step: int
    callbacks: Sequence[ProgressCallback]
    interrupt: InterruptFlag
    overrides: list[str]
    content_budget: ContentBudget | None = None  # style.content_target's controller of the style weight
    tb: Any = None  # TensorBoardLogger on rank 0
    sample_photos: torch.Tensor | None = None
    session_start: float = field(default_factory=time.perf_counter)
    metrics: MetricWindow = field(default_factory=MetricWindow)  # terms and images/s since the last log line


# --------------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------------


def compute_loss(ctx: TrainContext, images: torch.Tensor, phase: Phase) -> dict[str, torch.Tensor]:
    """Forward pass and loss terms; ``total`` is what is optimised."""
    with autocast(ctx.device, ctx.dtype):
        output = ctx.step_model(images)
        if phase.loss == "identity":
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
    values = mean_over_processes(values, ctx.dist)
    flat = values.cpu().tolist()
    return dict(zip(names, flat[:-1])), flat[-1] > 0



def _non_finite_message(ctx: TrainContext, state: TrainState, phase: str, what: str, terms: dict[str, float]) -> str:
    shown = ", ".join(f"{k}={v:.4g}" for k, v in terms.items() if "/" not in k)
    ckpt = last_checkpoint_path(ctx.run_dir)
    last = f"last good checkpoint: {ckpt}" if ckpt.is_file() else "no checkpoint was written"
    return (f"non-finite {what} at step {state.step + 1} ({phase} phase; {shown}); stopped. "
            f"Lower lr (now {ctx.optimizer.param_groups[0]['lr']:.3g}) or the loss weights, or try precision=fp32; {last}")


def style_weight_now(ctx: TrainContext, phase: Phase) -> float:
    """The phase's style weight, times the content budget's scale when there is one."""
    return phase.style_weight * style_weight_scale(ctx.content_budget)


def set_loss_weights(ctx: TrainContext, phase: Phase) -> None:
    """The phase's loss weights on every painting's loss of the phase's form."""
    for (_, key), loss in ctx.losses.items():
        if key == phase.loss_key:
            loss.content_weight, loss.style_weight, loss.tv_weight = (phase.content_weight, style_weight_now(ctx, phase),
                                                                      phase.tv_weight)


def enter_phase(ctx: TrainContext, phase: Phase) -> None:
    """Set the phase's crop size and loss weights (before its batches are loaded)."""
    ctx.dataset.image_size = phase.image_size
    if phase.loss == "perceptual":
        set_loss_weights(ctx, phase)
        ctx.loss_fn = ctx.losses[0, phase.loss_key]


def select_painting(ctx: TrainContext, step: int, phase: Phase) -> None:
    """A multi-style run paints one painting a step, in turn (as Dumoulin et al.: one style a batch);
    the step alone decides which, so a resumed run goes on with the same one."""
    if not isinstance(ctx.model, MultiStyleNet):
        return
    index = step % len(ctx.model.styles)
    ctx.model.select(index)
    if phase.loss == "perceptual":
        ctx.loss_fn = ctx.losses[index, phase.loss_key]


def train_one_epoch(ctx: TrainContext, state: TrainState, loader: Iterable[Batch]) -> str:
    """Run the optimiser over one epoch of batches (from ``state.batch_in_epoch`` on), within one phase.

    Returns "done" when the step budget is spent, "phase" when the phase the call started in is over
    (the caller sets up the next one and goes on in the same epoch), "epoch" when the batches ran out.
    State is advanced only after a step completes, so a checkpoint taken at any point between steps
    resumes exactly.
    """
    params = [p for p in ctx.model.parameters() if p.requires_grad]
    clip = ctx.cfg.grad_clip
    index = phase_index(ctx.phases, state.step)
    phase = ctx.phases[index]
    for batch in loader:
        for bad in batch.bad:
            if bad.path not in state.skipped:
                log.warning("skipping unreadable image: %s", bad.reason)
            state.skipped[bad.path] = bad.reason
        n = batch.images.shape[0] if batch.images is not None else 0
        if min_over_processes(n, ctx.dist, ctx.device) == 0:  # DDP: a step needs data on every process
            state.batch_in_epoch += 1
            continue
        if state.step == phase.start and index > 0 and phase.reset_optimizer:
            # Fresh Adam moments for a new phase. Kept from the identity warm-up, its second moments
            # would reflect pixel-loss gradients orders of magnitude smaller than the perceptual ones,
            # and m/sqrt(v) would scale the first few hundred steps to ~5x the learning rate: seen to
            # collapse the network into dark blobs that 200 steps did not undo.
            ctx.optimizer.state.clear()
        images = batch.images.to(ctx.device, non_blocking=True).contiguous(memory_format=ctx.memory_format)

        select_painting(ctx, state.step, phase)
        terms = compute_loss(ctx, images, phase)
        values, stop = reduce_terms(ctx, terms, ctx.interrupt.requested)
        if not math.isfinite(values["total"]):
            raise NonFiniteLossError(_non_finite_message(ctx, state, phase, "loss", values))

        ctx.optimizer.zero_grad(set_to_none=True)
        ctx.scaler.scale(terms["total"]).backward()
        ctx.scaler.unscale_(ctx.optimizer)
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, clip if clip is not None else float("inf")))
        if not math.isfinite(grad_norm) and not ctx.scaler.is_enabled():  # fp16's scaler skips such steps by design
            raise NonFiniteLossError(_non_finite_message(ctx, state, phase, "gradient", values))
        lr = ctx.optimizer.param_groups[0]["lr"]
        ctx.scaler.step(ctx.optimizer)
        ctx.scaler.update()
        ctx.scheduler.step()

        state.step += 1
        state.batch_in_epoch += 1
        state.images_seen += n * ctx.dist.world_size
        values["grad_norm"] = grad_norm
        if ctx.content_budget is not None and phase.loss == "perceptual":
            values["style_weight"] = ctx.loss_fn.style_weight  # the weight this step trained with
            ctx.content_budget.update(values["content"])  # the same on every process: values are averaged
            set_loss_weights(ctx, phase)
        _after_step(ctx, state, phase.name, values, lr, n * ctx.dist.world_size)
        if stop:
            raise KeyboardInterrupt
        if state.step >= ctx.total_steps:
            return "done"
        if state.step >= phase.end:
            return "phase"
    return "epoch"


def _after_step(ctx: TrainContext, state: TrainState, phase: str, values: dict[str, float], lr: float, images: int) -> None:
    """Progress callbacks, log lines, TensorBoard, periodic checkpoints and samples (rank 0)."""
    ctx.metrics.update(values, images)
    if not ctx.dist.is_main:
        return
    progress = Progress(step=state.step, total_steps=ctx.total_steps, start_step=ctx.start_step, phase=phase,
                        epoch=state.epoch, loss=values["total"], terms=dict(values), lr=lr,
                        images_per_sec=ctx.metrics.smoothed_rate)
    for callback in ctx.callbacks:
        callback(progress)

    last = state.step >= ctx.total_steps
    if state.step % ctx.cfg.log_every == 0 or last:
        rate, mean = ctx.metrics.rate(), ctx.metrics.means()
        shown = " ".join(f"{k}={v:.4g}" for k, v in sorted(mean.items()) if "/" not in k and k != "grad_norm")
        log.info("step %d/%d [%s] epoch %d %s lr=%.3g %.2f img/s", state.step, ctx.total_steps, phase, state.epoch,
                 shown, lr, rate)
        if ctx.tb is not None:
            scalars = {f"loss/{k}": v for k, v in mean.items() if k != "grad_norm"}
            scalars.update({"train/lr": lr, "train/images_per_sec": rate, "train/grad_norm": mean.get("grad_norm", 0.0),
                            "train/epoch": state.epoch, "data/skipped_images": len(state.skipped)})
            ctx.tb.scalars(state.step, scalars)
        ctx.metrics.reset()
    if ctx.cfg.checkpoint_every and state.step % ctx.cfg.checkpoint_every == 0 and not last:
        save_training_checkpoint(ctx, state)
    if ctx.cfg.sample_every and state.step % ctx.cfg.sample_every == 0 and not last:
        render_samples(ctx, state)


def checkpoint_payload(ctx: TrainContext, state: TrainState) -> dict[str, Any]:
    from fastnst import __version__

    return {
        "model": ctx.model.state_dict(),
        "model_config": ctx.model.config.to_dict(),
        "paintings": list(ctx.model.styles) if isinstance(ctx.model, MultiStyleNet) else None,
        "optimizer": ctx.optimizer.state_dict(),
        "scheduler": ctx.scheduler.state_dict(),
        "scaler": ctx.scaler.state_dict() if ctx.scaler.is_enabled() else None,
        "step": state.step,
        "epoch": state.epoch,
        "batch_in_epoch": state.batch_in_epoch,
        "images_seen": state.images_seen,
        "wall_time": state.wall_time + (time.perf_counter() - ctx.session_start),
        "skipped": dict(state.skipped),
        "content_budget": ctx.content_budget.state_dict() if ctx.content_budget is not None else None,
        "warmup_steps": ctx.warmup_steps,
        "total_steps": ctx.total_steps,
        "phases": [p.to_dict() for p in ctx.phases],
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
    if ctx.cfg.keep_checkpoints:
        keep_copy(path, step_checkpoint_path(ctx.run_dir, state.step))
    log.debug("checkpoint %s (step %d)", path, state.step)
    return path


@torch.no_grad()
def render_samples(ctx: TrainContext, state: TrainState) -> None:
    """Stylize the fixed validation photos: TensorBoard image + samples/step_<N>.jpg (photos above, output
    below: a row per painting)."""
    if ctx.sample_photos is None or not ctx.dist.is_main:
        return
    photos = ctx.sample_photos.to(ctx.device).contiguous(memory_format=ctx.memory_format)
    multi = isinstance(ctx.model, MultiStyleNet)
    selected = ctx.model.style_index if multi else 0
    rows = [torch.cat(list(ctx.sample_photos), dim=2)]
    ctx.model.eval()
    try:
        for index in range(len(ctx.model.styles) if multi else 1):  # a row per painting
            if multi:
                ctx.model.select(index)
            with autocast(ctx.device, ctx.dtype):
                out = ctx.model(photos)
            rows.append(torch.cat(list(out.float().clamp(0, 1).cpu()), dim=2))
    finally:
        ctx.model.train()
        if multi:
            ctx.model.select(selected)
    grid = torch.cat(rows, dim=1)
    if ctx.tb is not None:
        ctx.tb.image(state.step, "samples", grid)
    save_image(grid, ctx.run_dir / "samples" / f"step_{state.step:06d}.jpg", quality=90)


def check_checkpoint_model(ckpt: dict[str, Any], config: TransformerConfig, resume: str,
                           paintings: Sequence[str] | None = None) -> None:
    """Refuse a checkpoint whose network differs from the one the config builds (``paintings``: a
    multi-style network's)."""
    saved_model = ckpt.get("model_config")
    if saved_model != config.to_dict():
        raise CheckpointError(
            f"{resume}: checkpoint has model {saved_model}, this run builds {config.to_dict()} "
            "(resume with the same model settings)"
        )
    saved = ckpt.get("paintings")
    if (list(saved) if saved else None) != (list(paintings) if paintings else None):
        raise CheckpointError(f"{resume}: checkpoint was trained on the paintings {saved or 'of one network'}, this run "
                              f"on {list(paintings) if paintings else 'one'} (resume with the same style.paintings)")


def restore_from_checkpoint(ctx: TrainContext, ckpt: dict[str, Any], cfg: TrainConfig) -> TrainState:
    """Load module/optimiser/scheduler/RNG states and the loop position from a checkpoint."""
    check_checkpoint_model(ckpt, ctx.model.config, cfg.resume,
                           ctx.model.styles if isinstance(ctx.model, MultiStyleNet) else None)
    try:
        ctx.model.load_state_dict(ckpt["model"])
        ctx.optimizer.load_state_dict(ckpt["optimizer"])
        ctx.scheduler.load_state_dict(ckpt["scheduler"])
        if ctx.scaler.is_enabled() and ckpt.get("scaler"):
            ctx.scaler.load_state_dict(ckpt["scaler"])
    except (KeyError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"{cfg.resume}: checkpoint does not fit this run ({str(exc).splitlines()[0]})") from exc
    if ckpt.get("data") != ctx.sampler.state():
        log.warning("resume: data settings changed since the checkpoint (%s -> %s); the data order will differ",
                    ckpt.get("data"), ctx.sampler.state())
    changed = _config_changes(ckpt.get("config", {}), to_plain_dict(cfg))
    if changed:
        log.info("resume: settings changed since the checkpoint: %s", ", ".join(changed))
    if ctx.content_budget is not None and ckpt.get("content_budget"):
        ctx.content_budget.load_state_dict(ckpt["content_budget"])
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


def export_destination(export_to: str, style: str) -> Path:
    """``export_to`` is a directory (gets ``<style>.safetensors``) or a ``.safetensors`` file path."""
    path = Path(export_to).expanduser()
    return path if path.suffix == ".safetensors" else path / f"{style}.safetensors"


def model_file_names(cfg: TrainConfig) -> list[str]:
    """The model files a run ends with, by name: the style's, and with ``style.paintings`` one per painting."""
    return [cfg.style.name, *painting_names(cfg.style)]


def check_export_destination(cfg: TrainConfig) -> list[Path]:
    """Where ``export_to`` will write, checked before any training: a model file already there is
    refused unless ``overwrite`` (``export_to=checkpoints/`` would replace a shipped model), and so is a
    destination that cannot be written. Empty without ``export_to``."""
    if not cfg.export_to:
        return []
    names = model_file_names(cfg)
    if len(names) > 1 and Path(str(cfg.export_to)).suffix == ".safetensors":
        raise ConfigError(f"export_to={cfg.export_to}: style.paintings makes {len(names)} model files; give a directory")
    dests = [export_destination(str(cfg.export_to), name) for name in names]
    for dest in dests:
        if dest.is_dir():
            raise ConfigError(f"export_to={cfg.export_to}: {dest} is a directory")
        if dest.exists() and not cfg.overwrite:
            raise ConfigError(f"export_to={cfg.export_to}: {dest} exists (add overwrite=true to replace it, or export elsewhere)")
    parent = dests[0].parent
    while not parent.exists() and parent != parent.parent:  # the nearest existing directory, created at the end
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"export_to={cfg.export_to}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"export_to={cfg.export_to}: cannot write in {parent} (permission denied)")
    return dests


def _export_model(path: Path, model: TransformNet, meta: dict[str, Any], overwrite: bool) -> Path:
    """Write the exported copy. Without ``overwrite`` a file that appeared during the run (another run
    exporting to the same place) is not replaced: the copy is linked in under its name only if the
    name is still free, atomically."""
    if overwrite:
        return save_style_model(path, model, meta)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.export.tmp")
    try:
        save_style_model(tmp, model, meta)
        try:
            os.link(tmp, path)  # fails if the name exists: no window between a check and the write
        except FileExistsError:
            raise ConfigError(f"export_to: {path} appeared during the run (another run exported there?); not "
                              "replaced (add overwrite=true to replace it)") from None
        except OSError:  # a file system without hard links: check, then rename
            if path.exists():
                raise ConfigError(f"export_to: {path} appeared during the run; not replaced "
                                  "(add overwrite=true to replace it)") from None
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def model_files(ctx: TrainContext, state: TrainState, style_paths: list[Path], wall: float
                ) -> list[tuple[str, TransformNet, dict[str, Any]]]:
    """The model files a run ends with (``model_file_names``), as (name, network, header info): the style's;
    for a multi-style run the shared network (the paintings' mean norms) and then each painting's. The
    run's provenance (git, sha256 of every training file) is taken once for all of them."""
    names = model_file_names(ctx.cfg)
    info = model_info(ctx, state, style_paths, len(ctx.dataset), wall)
    if not isinstance(ctx.model, MultiStyleNet):
        return [(names[0], ctx.model, info)]
    return [(names[0], ctx.model.mean_net(), info)] + [
        (name, ctx.model.style_net(i), painting_info(ctx, info, style_paths, i)) for i, name in enumerate(names[1:])]


# --------------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------------


def train(cfg: DictConfig | TrainConfig, run_dir: str | os.PathLike, callbacks: Sequence[ProgressCallback] = (),
          overrides: Sequence[str] = ()) -> TrainResult:
    """Train a style model as ``cfg`` says, writing into ``run_dir`` (rank 0); return what was written.

    ``cfg`` is a composed Hydra config (or a TrainConfig): checked once here, then the loop gets the
    typed TrainConfig.

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


def _train(cfg: TrainConfig, run_dir: Path, info: DistInfo, device: torch.device,
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

    # An export that would be refused is refused now, not after the run.
    check_export_destination(cfg)
    # Data first: a wrong data root should fail before anything slow happens.
    dataset, sampler = build_data(cfg, info)
    phases = plan_phases(cfg, sampler.batches_per_epoch)
    total_steps = plan_total_steps(phases)
    warmup_steps = sum(p.steps for p in phases if p.loss == "identity")
    losses, style_paths = build_losses(cfg, phases, device, memory_format, dataset)
    model = build_model(cfg, device, memory_format)
    optimizer, scheduler = build_optimizer(cfg, model, phases)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)  # loss scaling: fp16 only
    ckpt = load_checkpoint(cfg.resume) if cfg.resume else None

    ctx = TrainContext(cfg=cfg, run_dir=run_dir, dist=info, device=device, dtype=dtype, memory_format=memory_format,
                       model=model, step_model=model, loss_fn=next(iter(losses.values())), losses=losses, phases=phases,
                       optimizer=optimizer, scheduler=scheduler, scaler=scaler, sampler=sampler, dataset=dataset,
                       warmup_steps=warmup_steps, total_steps=total_steps, start_step=0, callbacks=callbacks,
                       interrupt=InterruptFlag(), overrides=overrides)
    if cfg.style.content_target is not None:
        ctx.content_budget = ContentBudget(cfg.style.content_target, ctx.loss_fn.content_power)
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
            from fastnst.training.tensorboard import TensorBoardLogger

            ctx.tb = TensorBoardLogger(run_dir / "tb", purge_step=state.step + 1 if state.step else None)
            ctx.tb.text("config", "```\n" + OmegaConf.to_yaml(OmegaConf.create(to_plain_dict(cfg))) + "\n```")
        ctx.sample_photos = load_sample_photos(cfg)
    log.info(
        "%s: %s data, %d images, %d steps/epoch (x%d processes, batch %d each); phases %s; "
        "%s net (%d params) on %s, %s%s%s",
        cfg.style.name, cfg.data.name.value, len(dataset), sampler.batches_per_epoch, info.world_size,
        cfg.data.batch_size, ", ".join(f"{p.name} {p.steps} steps" for p in phases) or "none",
        cfg.model.name, count_parameters(model), device,
        str(dtype).replace("torch.", ""), ", channels_last" if cfg.channels_last else "", ", compiled" if cfg.compile else "",
    )
    if state.step:
        log.info("resumed from %s at step %d (epoch %d, batch %d)", cfg.resume, state.step, state.epoch, state.batch_in_epoch)
    if info.is_main:
        log.info("run directory: %s", run_dir)

    model.train()
    ctx.metrics.restart()
    try:
        with ctx.interrupt:
            while state.step < total_steps:
                enter_phase(ctx, phases[phase_index(phases, state.step)])
                sampler.set_epoch(state.epoch, min(state.batch_in_epoch, sampler.batches_per_epoch))
                steps_before, batches_before = state.step, state.batch_in_epoch
                outcome = train_one_epoch(ctx, state, make_loader(dataset, sampler, cfg, device))
                if outcome == "done":
                    break
                if outcome == "phase":
                    continue  # the next phase goes on in the same epoch, from the next batch
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
        files = model_files(ctx, state, style_paths, wall)
        for name, net, meta in files:
            path = run_dir / f"{name}.safetensors"
            try:
                written = save_style_model(path, net, meta)
            except OSError as exc:  # a full disk: the weights are safe in the checkpoint just written
                raise TrainingError(f"{path}: could not write the model file ({exc.strerror or exc}); the weights are in "
                                    f"{result.checkpoint}") from exc
            if result.model_path is None:
                result.model_path = written
            else:
                result.painting_models.append(written)
        export_error = None
        if cfg.export_to:
            try:
                for name, net, meta in files:
                    exported = _export_model(export_destination(cfg.export_to, name), net, meta, cfg.overwrite)
                    result.exported_to = result.exported_to or exported
            except ConfigError as exc:  # the run's own model file is written: say where it is
                export_error = ConfigError(f"{exc}; the model is in {result.model_path}")
            except OSError as exc:  # a full disk or a folder made read-only meanwhile
                export_error = TrainingError(f"export_to: could not write {exc.filename or cfg.export_to} "
                                             f"({exc.strerror or exc}); the model is in {result.model_path}")
        if state.skipped:
            log.warning("skipped %d unreadable image(s) in total, e.g. %s", len(state.skipped), next(iter(state.skipped)))
        if ctx.tb is not None:
            ctx.tb.close()
        log.info("done: %d steps in %.0f s; model file %s%s", state.step, wall, result.model_path,
                 f" and one per painting: {', '.join(p.name for p in result.painting_models)}" if result.painting_models else "")
        if export_error is not None:
            raise export_error
    return result
