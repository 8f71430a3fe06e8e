"""Style model files: safetensors weights plus the model config and training metadata.

A file carries everything needed to rebuild its network (as nanoGPT's checkpoints carry their config),
so ``load_style_model(path)`` needs nothing else. Safetensors holds only tensors and a JSON header,
so loading never unpickles anything and cannot run code. A training checkpoint (``checkpoints/last.pt``
of a run, finished or not) loads the same way: it is read with ``weights_only=True`` and carries the
network's config too, so a run can be tried before it ends.

Header metadata (all strings, as safetensors requires):
    ``format``        = "fastnst.style-model"
    ``format_version``= "1"
    ``model_config``  = JSON of TransformerConfig
    ``info``          = JSON of free metadata: style name, steps, loss weights, ...
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as safetensors_bytes

from fastnst.assets import STYLE_IMAGES
from fastnst.atomic import atomic_path
from fastnst.checkpoint import CheckpointError, load_checkpoint  # the trainer's reader: weights_only, format checked
from fastnst.nets.multistyle import SHARED_NETWORK, MultiStyleNet
from fastnst.nets.transform_net import TransformerConfig, TransformNet, unwrap

FORMAT = "fastnst.style-model"
FORMAT_VERSION = "1"
MODEL_SUFFIX = ".safetensors"
CHECKPOINT_SUFFIX = ".pt"  # a training checkpoint, also accepted wherever a model file is
# Trained models that ship with the project (`--model starry` -> checkpoints/starry.safetensors).
CHECKPOINTS_DIR = Path(__file__).resolve().parents[2] / "checkpoints"


class ModelFileError(ValueError):
    """A style model file is missing, corrupt, or not for this architecture."""


@dataclass
class StyleModel:
    """A loaded style model: the network (eval mode) plus what its file says about it."""

    net: TransformNet
    config: TransformerConfig
    info: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def style(self) -> str:
        return str(self.info.get("style", self.path.stem if self.path else "style"))


def save_style_model(path: str | os.PathLike, net: TransformNet, info: dict[str, Any] | None = None) -> Path:
    """Write ``net`` (unwrapped: not compiled / DDP) and its metadata to ``path`` atomically."""
    path = Path(path)
    net = unwrap(net)  # torch.compile / DistributedDataParallel wrappers
    if not isinstance(net, TransformNet):
        raise TypeError(f"expected a TransformNet, got {type(net).__name__}")
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in net.state_dict().items()}
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_config": json.dumps(net.config.to_dict()),
        "info": json.dumps(info or {}, default=str),
    }
    with atomic_path(path) as tmp:
        # Bytes, not safetensors' save_file: that replaces the file with a new one of mode 0600.
        tmp.write_bytes(safetensors_bytes(tensors, metadata=metadata))
    return path


def resolve_model_path(name_or_path: str | os.PathLike) -> Path:
    """A shipped model's name (``starry``) or a path to a model file -> the file's path.

    A name is looked up in the project's ``checkpoints/`` directory; anything that looks like a path
    (has a suffix or a directory part, or exists) is taken as a path.
    """
    text = str(name_or_path)
    candidate = Path(text).expanduser()
    if candidate.exists() or candidate.suffix or len(candidate.parts) > 1:
        return candidate
    shipped = CHECKPOINTS_DIR / f"{text}{MODEL_SUFFIX}"
    if shipped.is_file():
        return shipped
    available = ", ".join(sorted(p.stem for p in CHECKPOINTS_DIR.glob(f"*{MODEL_SUFFIX}"))) or "none"
    raise ModelFileError(f"{text}: no such model file, and no shipped model of that name (shipped: {available})")


def list_shipped_models() -> list[Path]:
    """Model files in the project's ``checkpoints/`` directory."""
    return sorted(CHECKPOINTS_DIR.glob(f"*{MODEL_SUFFIX}"))


def is_shared_network(info: dict[str, Any]) -> bool:
    """Whether a header is that of a multi-style run's shared network (``base``): no painting of its own,
    the mean of its paintings' norms, a start to fine-tune a new painting from."""
    paintings = info.get("paintings")
    return isinstance(paintings, dict) and bool(paintings) and info.get("style") not in paintings


def read_model_header(path: str | os.PathLike) -> tuple[TransformerConfig, dict[str, Any]]:
    """Validate a model file's header and return its config and info, without loading weights."""
    path = Path(path)
    if path.suffix == CHECKPOINT_SUFFIX:
        config, info, _ = _read_training_checkpoint(path)
        return config, info
    _require_file(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelFileError(
            f"{path}: not a valid safetensors model file (corrupt, truncated, or another format such as a pickle): {exc}"
        ) from exc
    if metadata.get("format") != FORMAT:
        raise ModelFileError(f"{path}: safetensors file is not a fastnst style model (no '{FORMAT}' header)")
    if metadata.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(
            f"{path}: model file format version {metadata.get('format_version')!r} is not supported (expected {FORMAT_VERSION})"
        )
    try:
        config = TransformerConfig.from_dict(json.loads(metadata["model_config"]))
        info = json.loads(metadata.get("info", "{}"))
    except (KeyError, ValueError, TypeError) as exc:
        raise ModelFileError(f"{path}: invalid model config in header: {exc}") from exc
    return config, info


def _require_file(path: Path) -> None:
    if not path.exists():
        raise ModelFileError(f"{path}: model file not found")
    if not path.is_file():
        raise ModelFileError(f"{path}: not a file")


def _read_training_checkpoint(path: Path) -> tuple[TransformerConfig, dict[str, Any], dict[str, torch.Tensor]]:
    """A training checkpoint's network config, a model-file-like info, and its weights."""
    _require_file(path)
    try:
        ckpt = load_checkpoint(path)
    except CheckpointError as exc:
        raise ModelFileError(str(exc)) from exc
    paintings = list(ckpt.get("paintings") or [])
    try:
        config = TransformerConfig.from_dict(ckpt["model_config"])
        state = dict(ckpt["model"])
        if paintings:  # one network for several paintings: its shared network, as the run's <name>.safetensors
            multi = MultiStyleNet(config, paintings)
            multi.load_state_dict(state)
            state = multi.mean_net().state_dict()
    except (KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise ModelFileError(f"{path}: training checkpoint without a usable network ({str(exc).splitlines()[0]})") from exc
    run = ckpt.get("config") if isinstance(ckpt.get("config"), dict) else {}
    style = run.get("style") if isinstance(run.get("style"), dict) else {}
    info = {
        "style": style.get("name"),
        "recipe": run.get("recipe"),
        "style_image": _painting_name(str(style["image"])) if style.get("image") else None,
        "checkpoint_step": ckpt.get("step"),
        "total_steps": ckpt.get("total_steps"),
        "fastnst_version": ckpt.get("fastnst_version"),
        "config": run,
        "overrides": list(ckpt.get("overrides") or []),
        "paintings": paintings or None,
        "network": SHARED_NETWORK if paintings else None,
    }
    return config, {k: v for k, v in info.items() if v is not None}, state


def _painting_name(image: str) -> str:
    """The painting's file name, as a model file records it (``starry`` -> ``starry_night.jpg``)."""
    return STYLE_IMAGES[image].name if image in STYLE_IMAGES else Path(image).name


def _read_safetensors_weights(path: Path) -> dict[str, torch.Tensor]:
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}
    except SafetensorError as exc:
        raise ModelFileError(f"{path}: corrupt tensor data: {exc}") from exc


def load_style_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> StyleModel:
    """Rebuild the network from a model file, a training checkpoint (``.pt``) or a shipped model's name;
    any inconsistency raises ModelFileError."""
    path = resolve_model_path(path)
    if path.suffix == CHECKPOINT_SUFFIX:
        config, info, state = _read_training_checkpoint(path)
    else:
        config, info = read_model_header(path)
        state = _read_safetensors_weights(path)
    net = TransformNet(config)
    expected = net.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ModelFileError(
            f"{path}: weights do not match the {config.arch} architecture in its header "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise ModelFileError(f"{path}: entry {key} is not a tensor")
        if value.shape != expected[key].shape:
            raise ModelFileError(
                f"{path}: tensor {key} has shape {tuple(value.shape)}, expected {tuple(expected[key].shape)}"
            )
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise ModelFileError(f"{path}: tensor {key} contains NaN or infinite values")
    net.load_state_dict(state, strict=True)
    net.eval().requires_grad_(False).to(device)
    return StyleModel(net=net, config=config, info=info, path=path)
