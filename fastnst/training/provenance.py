"""What made a model file: the code (version, git commit), the machine (CPU or GPU name), the start file
and the training images, each by sha256, so a published model names everything needed to make it again."""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from fastnst import cpu_features
from fastnst.nets.multistyle import SHARED_NETWORK
from fastnst.training.config import TrainConfig, active_layers, painting_names, to_plain_dict
from fastnst.training.content_budget import style_weight_scale

PACKAGE_ROOT = Path(__file__).resolve().parents[2]


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def git_commit(root: Path = PACKAGE_ROOT) -> str | None:
    """The checkout's commit (with ``-dirty`` when tracked files differ from it), or None outside git."""
    if not (root / ".git").exists():
        return None
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def cpu_name() -> str:
    """The CPU's model and its class as capped (fastnst.cpu_features), e.g. ``AMD EPYC (family 25 model 1
    stepping 1) [avx2]``: the class says which training precision and kernels the figures come from."""
    cpu = cpu_features.read_cpu()
    return f"{cpu.model} [{cpu_features.cpu_class(cpu, cpu_features.effective_features(cpu, cpu_features.read_caps()))}]"


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_name()}, {os.cpu_count()} logical CPUs, torch threads {torch.get_num_threads()}"


def training_images(cfg: TrainConfig, paths: Sequence[Path]) -> dict[str, Any]:
    """The data a run saw: a COCO split by name, otherwise every file (relative name and sha256)."""
    d = cfg.data
    if d.name.value == "coco":
        return {"dataset": "coco", "split": d.split, "count": len(paths)}
    base = Path(d.root).expanduser().resolve() if d.root else None
    files = []
    for path in paths:
        p = Path(path).resolve()
        name = str(p.relative_to(base)) if base is not None and p.is_relative_to(base) else p.name
        try:
            digest = file_sha256(p)
        except OSError:
            digest = None
        files.append({"path": name, "sha256": digest})
    return {"dataset": d.name.value, "count": len(paths), "files": files}


def run_provenance(cfg: TrainConfig, paths: Sequence[Path], device: torch.device, processes: int) -> dict[str, Any]:
    init = None
    if cfg.init_from:
        from fastnst.nets.modelfile import resolve_model_path

        path = resolve_model_path(cfg.init_from)
        init = {"path": str(cfg.init_from), "sha256": file_sha256(path)}
    return {
        "git_commit": git_commit(),
        "torch_version": torch.__version__,
        "device_name": device_name(device) + (f" x{processes} processes" if processes > 1 else ""),
        "init_from_file": init,
        "training_images": training_images(cfg, paths),
    }


def model_info(ctx: Any, state: Any, style_paths: Sequence[Path], num_images: int, wall_time: float) -> dict[str, Any]:
    """Metadata stored in the exported model file: the loss in brief (for ``--list-models``) and what
    made the file: the recipe, the resolved config and overrides, the code, the data and the machine.
    ``ctx`` and ``state`` are the training loop's TrainContext and TrainState. For a multi-style run
    (``style.paintings``) this is the shared network's file (the paintings' mean norms); each painting's
    own file adds ``painting_info`` to it."""
    from fastnst import __version__

    cfg = ctx.cfg
    s = cfg.style
    done = {p.name: max(0, min(state.step, p.end) - p.start) for p in ctx.phases}
    identity = sum(done[p.name] for p in ctx.phases if p.loss == "identity")
    last = ctx.phases[-1] if ctx.phases else None
    multi = {}
    if s.paintings:
        multi = {"paintings": {name: path.name for name, path in zip(painting_names(s), style_paths)},
                 "network": SHARED_NETWORK}
    return {
        "style": s.name,
        "recipe": cfg.recipe,
        "style_image": None if s.paintings else style_paths[0].name,
        "style_image_size": s.image_size,
        "steps": state.step - identity,
        "warmup_steps": identity,
        "phase_steps": done,
        "content_weight": last.content_weight if last else s.content_weight,
        # With style.content_target, the weight the budget had come to by the end of the run.
        "style_weight": (last.style_weight if last else s.style_weight) * style_weight_scale(ctx.content_budget),
        "tv_weight": last.tv_weight if last else s.tv_weight,
        "content_layers": active_layers(s.content_layers),
        "style_layers": _trained_style_layers(ctx, 0),
        "style_scales": list(last.style_scales) if last else list(s.style_scales),
        "vgg_weights": cfg.vgg_weights,
        "vgg_pooling": cfg.vgg_pooling.value,
        "image_size": last.image_size if last else cfg.data.image_size,
        "batch_size": cfg.data.batch_size * ctx.dist.world_size,
        "lr": cfg.lr,
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
        "phases": [p.to_dict() for p in ctx.phases],
        "config": to_plain_dict(cfg),
        "overrides": list(ctx.overrides),
        **run_provenance(cfg, ctx.dataset.paths, ctx.device, ctx.dist.world_size),
        **multi,
    }


def painting_info(ctx: Any, run_info: dict[str, Any], style_paths: Sequence[Path], painting: int) -> dict[str, Any]:
    """The header of one painting's model file of a multi-style run: the run's (``model_info``'s, computed
    once) with the painting's own name, image and style layer weights."""
    names = painting_names(ctx.cfg.style)
    return {**run_info, "style": names[painting], "style_image": style_paths[painting].name,
            "style_layers": _trained_style_layers(ctx, painting),
            "network": f"painting {painting + 1} of {len(names)} of one network"}


def _trained_style_layers(ctx: Any, painting: int) -> dict[str, float]:
    """A painting's style layer weights as its last perceptual phase trained them (style.equalize_layers
    scales them per painting; a phase may give its own)."""
    last = [p.loss_key for p in ctx.phases if p.loss == "perceptual"]
    if last and (painting, last[-1]) in ctx.losses:
        return dict(ctx.losses[painting, last[-1]].style_layers)
    return dict(next(fn for (i, _), fn in ctx.losses.items() if i == painting).style_layers)
