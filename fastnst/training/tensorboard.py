"""TensorBoard logging of a training run (rank 0 only): loss terms, learning rate, throughput, samples."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

import torch

log = logging.getLogger(__name__)


class TensorBoardLogger:
    """A thin wrapper over ``SummaryWriter`` that degrades to a no-op if TensorBoard is unavailable."""

    def __init__(self, log_dir: str | os.PathLike, purge_step: int | None = None) -> None:
        self.writer = None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:  # tensorboard is a dependency, but training must not die for a log
            log.warning("TensorBoard logging disabled: %s", exc)
            return
        # purge_step: a resumed run drops events logged after its checkpoint, so curves do not double back.
        self.writer = SummaryWriter(log_dir=str(Path(log_dir)), purge_step=purge_step)

    def scalars(self, step: int, values: Mapping[str, float]) -> None:
        if self.writer is None:
            return
        for tag, value in values.items():
            self.writer.add_scalar(tag, float(value), step)

    def image(self, step: int, tag: str, image: torch.Tensor) -> None:
        """Log a (3, H, W) image in [0, 1] (clamped)."""
        if self.writer is None:
            return
        self.writer.add_image(tag, image.detach().float().clamp(0, 1).cpu(), step)

    def text(self, tag: str, text: str, step: int = 0) -> None:
        if self.writer is not None:
            self.writer.add_text(tag, text, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
