"""Training checkpoints: plain containers of named parts, written atomically, read without unpickling code.

A checkpoint is a dict (as in the torchvision reference scripts) holding ``model``, ``optimizer``,
``scheduler``, ``step``, ``epoch``, the RNG states and the resolved config as a plain dict, so
``torch.load(path, weights_only=True)`` reads it: no pickled classes, nothing that can run code.
"""

from __future__ import annotations

import os
import pickle
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fastnst.atomic import atomic_path

FORMAT = "fastnst.train-checkpoint"
FORMAT_VERSION = 1
CHECKPOINT_SUBDIR = "checkpoints"
LAST_NAME = "last.pt"


class CheckpointError(ValueError):
    """A training checkpoint is missing, unreadable or not a fastnst checkpoint (one-line message)."""


def last_checkpoint_path(run_dir: str | os.PathLike) -> Path:
    """Where a run directory keeps its ``last`` checkpoint."""
    return Path(run_dir) / CHECKPOINT_SUBDIR / LAST_NAME


def step_checkpoint_path(run_dir: str | os.PathLike, step: int) -> Path:
    """Where ``keep_checkpoints`` keeps the checkpoint of step ``step``."""
    return Path(run_dir) / CHECKPOINT_SUBDIR / f"step_{step}.pt"


def keep_copy(checkpoint: Path, copy: Path) -> Path:
    """``copy`` as a second name of ``checkpoint`` (a hard link: the next ``last`` is a new file), or a copy."""
    copy.unlink(missing_ok=True)
    try:
        os.link(checkpoint, copy)
    except OSError:
        with atomic_path(copy) as tmp:
            shutil.copyfile(checkpoint, tmp)
    return copy


def find_checkpoint(run_dir_or_file: str | os.PathLike) -> Path:
    """``resume=`` accepts a run directory (uses its ``last`` checkpoint) or a checkpoint file."""
    path = Path(run_dir_or_file).expanduser()
    if path.is_dir():
        candidate = last_checkpoint_path(path)
        if not candidate.is_file():
            raise CheckpointError(f"{path}: run directory has no checkpoint ({CHECKPOINT_SUBDIR}/{LAST_NAME})")
        return candidate
    if not path.exists():
        raise CheckpointError(f"{path}: no such run directory or checkpoint file")
    return path


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """Write ``payload`` to ``path`` atomically: a temp file in the same directory, fsync, then rename."""
    path = Path(path)
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            torch.save({"format": FORMAT, "format_version": FORMAT_VERSION, **payload}, f)
    except (OSError, RuntimeError) as exc:
        # A full disk reaches here as torch's zip writer's "unexpected pos ...": say how much room is left.
        try:
            free = f"; {shutil.disk_usage(path.parent).free / 2**20:.1f} MB free there"
        except OSError:
            free = ""
        raise CheckpointError(f"{path}: could not write the checkpoint ({_first_line(exc)}{free}); "
                              "the previous one, if any, is unchanged") from exc
    return path


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True`` and check that it is a fastnst training checkpoint."""
    path = find_checkpoint(path)
    if path.suffix == ".safetensors":  # a style model, the other file training writes
        raise CheckpointError(f"{path}: a style model file, not a training checkpoint (resume= takes a run directory or its "
                              f"checkpoints/last.pt; to start from this model's weights use init_from={path})")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's message advises retrying with weights_only=False: never pass that on, it would
        # run whatever code the file holds.
        raise CheckpointError(
            f"{path}: not a fastnst training checkpoint (it holds objects other than tensors and plain containers)"
        ) from exc
    except Exception as exc:  # torch raises many types for corrupt or foreign files
        first = _first_line(exc)
        raise CheckpointError(f"{path}: not a readable training checkpoint ({first})") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a fastnst training checkpoint")
    if data.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {data.get('format_version')!r} is not supported")
    return data


def _first_line(exc: BaseException) -> str:
    """The first line of an error, without any advice to load with weights_only=False."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    return "unsafe to load" if "weights_only" in first else first


def remove_stale_temp_files(path: str | os.PathLike) -> list[Path]:
    """Delete what an interrupted atomic write of ``path`` left behind (``.<name>.<hex>.tmp``)."""
    path = Path(path)
    removed = []
    for tmp in path.parent.glob(f".{path.name[:64]}.*.tmp"):
        try:
            tmp.unlink()
            removed.append(tmp)
        except OSError:
            pass
    return removed


def capture_rng_state() -> dict[str, Any]:
    """Every RNG a training run may draw from, as plain containers and tensors."""
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": {"kind": str(np_kind), "keys": torch.from_numpy(np_keys.astype(np.int64)), "pos": int(np_pos),
                  "has_gauss": int(np_has_gauss), "gauss": float(np_gauss)},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Undo :func:`capture_rng_state`."""
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
