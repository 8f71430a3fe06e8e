"""Command line: ``python -m fastnst.train style=starry`` (Hydra parses it; the loop is fastnst.trainer).

One-line errors and exit codes (1: a user error, 130: interrupted), the tqdm progress bar, resuming
from a run directory with the run's own overrides, and the torchrun rule that only rank 0 writes.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig

from fastnst.checkpoint import load_checkpoint
from fastnst.train_config import CONFIG_DIR, run_dir_of_checkpoint
from fastnst.trainer import USER_ERRORS, Progress, TrainingInterrupted, train


def _override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def merge_overrides(saved: Sequence[str], current: Sequence[str]) -> list[str]:
    """The overrides of a resumed run: the original run's, then this command's (a later value wins)."""
    merged: dict[str, str] = {}
    for override in list(saved) + list(current):
        if not _override_key(override).startswith("hydra."):
            merged[_override_key(override)] = override
    return list(merged.values())


class _ProgressBar:
    """The CLI's tqdm bar: steps, phase, loss, images/s and ETA."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar = None

    def __call__(self, p: Progress) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=p.total_steps, initial=p.start_step, unit="step", dynamic_ncols=True, mininterval=0.5)
        self.bar.update(p.step - self.bar.n)
        self.bar.set_postfix(phase=p.phase, epoch=p.epoch, loss=f"{p.loss:.4g}", img_s=f"{p.images_per_sec:.2f}",
                             refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _resumed_config(cfg: DictConfig, overrides: list[str]) -> tuple[DictConfig, list[str]]:
    """On resume, recompose from the checkpoint's own overrides plus this command's."""
    from hydra import compose

    ckpt = load_checkpoint(cfg.resume)
    merged = merge_overrides(ckpt.get("overrides", []), overrides)
    return compose(config_name="train", overrides=merged), merged


def run_cli(cfg: DictConfig) -> None:
    """Body of ``python -m fastnst.train``: one-line errors, exit codes, progress bar, printed model path."""
    from hydra.core.hydra_config import HydraConfig

    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    overrides = [o for o in hc.overrides.task if not _override_key(o).startswith("hydra.")]
    is_main = int(os.environ.get("RANK", "0")) == 0
    bar = _ProgressBar(enabled=bool(cfg.progress) and is_main)
    try:
        if cfg.resume:
            cfg, overrides = _resumed_config(cfg, overrides)
            bar.enabled = bool(cfg.progress) and is_main  # the resumed run's own setting
        from tqdm.contrib.logging import logging_redirect_tqdm

        with logging_redirect_tqdm() if bar.enabled else contextlib.nullcontext():
            result = train(cfg, run_dir, callbacks=[bar], overrides=overrides)
    except TrainingInterrupted as exc:
        bar.close()
        if is_main:
            where = run_dir_of_checkpoint(str(exc.checkpoint)) if exc.checkpoint else None
            hint = f"; resume with: python -m fastnst.train resume={where}" if where else ""
            print(f"interrupted at step {exc.step}; checkpoint saved: {exc.checkpoint}{hint}", file=sys.stderr)
        sys.exit(130)
    except USER_ERRORS as exc:
        bar.close()
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:  # before the loop started: nothing to save
        bar.close()
        print("interrupted before training started; nothing was saved", file=sys.stderr)
        sys.exit(130)
    bar.close()
    if is_main:
        if result.skipped_images:
            print(f"skipped {len(result.skipped_images)} unreadable image(s) (listed in the log)", file=sys.stderr)
        print(f"style model: {result.model_path}")
        if result.exported_to:
            print(f"exported to: {result.exported_to}")


def _isolate_non_main_rank() -> None:
    """Under torchrun, ranks other than 0 write nothing: Hydra gets a throwaway run dir and no log files."""
    rank = int(os.environ.get("RANK", "0"))
    if rank == 0:
        return
    scratch = tempfile.mkdtemp(prefix=f"fastnst-rank{rank}-")
    atexit.register(shutil.rmtree, scratch, True)
    keep = [a for a in sys.argv[1:] if not a.startswith(("hydra.run.dir=", "hydra.output_subdir=", "hydra/job_logging=",
                                                         "hydra/hydra_logging="))]
    sys.argv[1:] = keep + [f"hydra.run.dir={scratch}", "hydra.output_subdir=null", "hydra/job_logging=none",
                           "hydra/hydra_logging=none"]


def main() -> None:
    """Entry point of ``python -m fastnst.train`` (Hydra parses the command line)."""
    import hydra

    _isolate_non_main_rank()
    hydra_main = hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")(run_cli)
    hydra_main()


if __name__ == "__main__":
    main()
