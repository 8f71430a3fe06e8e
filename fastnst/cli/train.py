"""Command line: ``python -m fastnst.train style=starry`` (Hydra parses it; the loop is fastnst.training.loop).

One-line errors and exit codes (1: a user error, 130: interrupted), the tqdm progress bar, resuming
from a run directory with the run's own overrides, and the torchrun rule that only rank 0 writes.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import logging
import os
import shutil
import sys
import tempfile
import typing
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig

from fastnst.atomic import unwritable_reason
from fastnst.checkpoint import load_checkpoint
from fastnst.training.build import load_paintings
from fastnst.training.config import CONFIG_DIR, TrainConfig, model_config, painting_names, run_dir_of_checkpoint, validate_config
from fastnst.training.interrupt import terminate_as_interrupt
from fastnst.training.loop import USER_ERRORS, Progress, TrainingInterrupted, check_checkpoint_model, check_export_destination, train


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


# --------------------------------------------------------------------------------------------------
# Leaving existing runs alone: checks before Hydra writes anything, and undoing what it wrote
# --------------------------------------------------------------------------------------------------


def unknown_key_message(overrides: Sequence[str]) -> str | None:
    """A one-line error for the first override naming a setting the schema does not have (listing the
    ones it has), or None. Keys under a dict-valued setting (``style.style_layers.relu4_2``) are free."""
    for override in overrides:
        key = _override_key(override)
        if "=" not in override and not override.startswith("~") or key.startswith("hydra"):
            continue
        cls, path = TrainConfig, []
        for part in key.split("."):
            hints = typing.get_type_hints(cls)
            if part not in hints:
                where = ".".join(path) or "the top level"
                return f"{key}: no such setting ({where} has: {', '.join(hints)})"
            path.append(part)
            cls = hints[part]
            if not dataclasses.is_dataclass(cls):
                break  # a value (or a dict of them): anything below is the value's business
    return None


def unparsable_override_message(overrides: Sequence[str]) -> str | None:
    """A one-line error for the first override Hydra's grammar rejects (a path with non-ASCII letters
    or brackets, unquoted), with the fix, or None. Hydra's own message spans several lines."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create()
    for override in overrides:
        try:
            parser.parse_overrides([override])
        except OverrideParseException as exc:
            key, _, value = override.partition("=")
            return (f"{override}: Hydra cannot parse this value ({str(exc).splitlines()[0].split(':')[0]}); quote it: "
                    f"{key}='{value}' (in a shell: \"{key}='{value}'\")")
    return None


class _RunFiles:
    """What a resumed session may change in an existing run directory, kept to put back if it fails."""

    NAMES = (".hydra/config.yaml", ".hydra/hydra.yaml", ".hydra/overrides.yaml", "config.yaml")

    def __init__(self, run_dir: Path | None) -> None:
        self.run_dir = run_dir
        self.saved: dict[Path, bytes | None] = {}
        self.log_size: int | None = None
        if run_dir is None or not run_dir.is_dir():
            return
        for name in self.NAMES:
            path = run_dir / name
            self.saved[path] = path.read_bytes() if path.is_file() else None
        log_file = run_dir / "train.log"
        self.log_size = log_file.stat().st_size if log_file.is_file() else None

    def restore(self) -> None:
        if self.run_dir is None:
            return
        _close_log_files(self.run_dir)
        for path, data in self.saved.items():
            with contextlib.suppress(OSError):
                if data is None:
                    path.unlink(missing_ok=True)
                else:
                    path.write_bytes(data)
        log_file = self.run_dir / "train.log"
        with contextlib.suppress(OSError):
            if self.log_size is None:
                log_file.unlink(missing_ok=True)
            else:
                with open(log_file, "r+b") as f:
                    f.truncate(self.log_size)
        hydra_dir = self.run_dir / ".hydra"
        with contextlib.suppress(OSError):
            if hydra_dir.is_dir() and not any(hydra_dir.iterdir()):
                hydra_dir.rmdir()


def _close_log_files(run_dir: Path) -> None:
    """Close the logging file handlers that write into ``run_dir`` (Hydra's train.log)."""
    for logger in [logging.getLogger()] + [logging.getLogger(n) for n in logging.root.manager.loggerDict]:
        for handler in list(getattr(logger, "handlers", [])):
            if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename).is_relative_to(run_dir.resolve()):
                handler.close()
                logger.removeHandler(handler)


def _remove_failed_new_run(run_dir: Path) -> None:
    """A new run that failed before training leaves no stub directory behind.

    Removes only what Hydra writes at the start (``.hydra/*.yaml``, ``train.log``) and then the
    directories if they are empty, so a directory holding anything else (a checkpoint, a model, a
    user's own files after ``hydra.run.dir=...``) is left as it is.
    """
    if not run_dir.is_dir() or (run_dir / "checkpoints").exists():
        return
    _close_log_files(run_dir)
    for name in (*_RunFiles.NAMES[:3], "train.log"):
        with contextlib.suppress(OSError):
            (run_dir / name).unlink(missing_ok=True)
    for directory in (run_dir / ".hydra", run_dir, run_dir.parent):  # the last: <output_dir>/<style>/
        with contextlib.suppress(OSError):
            directory.rmdir()  # only if empty


def preflight(argv: Sequence[str]) -> tuple[str, int] | None:
    """Checks made before Hydra creates or touches any directory: (one-line error, exit status) or None.

    Unknown settings are named with the ones that exist. A ``resume=`` is checked in full (checkpoint,
    recomposed config, model) so that a refused resume changes nothing in the run it names.
    """
    overrides = [a for a in argv if not a.startswith("-") and ("=" in a or a.startswith("~"))]
    message = unknown_key_message(overrides) or unparsable_override_message(overrides)
    if message is not None:
        return message, 2
    resume = next((o.split("=", 1)[1] for o in overrides if _override_key(o) == "resume"), None)
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    own = [o for o in overrides if not _override_key(o).startswith("hydra.")]
    if resume in (None, "", "null", "None"):
        # A new run: the config's own errors and a refused export_to are reported now, before Hydra
        # makes a run directory, not after an hour of training. What does not compose here (a sweep
        # of --multirun) is left to Hydra, whose messages stay as they were.
        try:
            with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
                cfg = validate_config(compose(config_name="train", overrides=own))
            check_export_destination(cfg)
            load_paintings(cfg)  # a missing, unreadable or too thin painting
            reason = unwritable_reason(cfg.output_dir)  # Hydra would fail making the run directory in it
            if reason is not None:
                return f"output_dir={cfg.output_dir}: {reason}", 1
        except USER_ERRORS as exc:
            return str(exc), 1
        except (HydraException, OmegaConfBaseException):
            return None
        return None
    try:
        ckpt = load_checkpoint(resume)
        merged = merge_overrides(ckpt.get("overrides", []), own)
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = validate_config(compose(config_name="train", overrides=merged))
        check_checkpoint_model(ckpt, model_config(cfg), resume, painting_names(cfg.style))
        check_export_destination(cfg)
    except USER_ERRORS as exc:
        return str(exc), 1
    except HydraException as exc:
        return " ".join(str(exc).split("\n")[0].split()), 1
    return None


def run_cli(cfg: DictConfig, run_files: _RunFiles | None = None) -> None:
    """Body of ``python -m fastnst.train``: one-line errors, exit codes, progress bar, printed model path.

    A failed run changes no existing run (a resumed run's files are put back) and a failed new run
    leaves no stub directory.
    """
    from hydra.core.hydra_config import HydraConfig

    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    overrides = [o for o in hc.overrides.task if not _override_key(o).startswith("hydra.")]
    is_main = int(os.environ.get("RANK", "0")) == 0
    bar = _ProgressBar(enabled=bool(cfg.progress) and is_main)
    resuming = bool(cfg.resume)

    def undo() -> None:
        if not is_main:
            return
        if resuming:
            if run_files is not None:
                run_files.restore()
        else:
            _remove_failed_new_run(run_dir)

    def note(message: str) -> None:
        """A failed new run that leaves a directory (it had begun) says why in its own log."""
        log_file = run_dir / "train.log"
        if is_main and not resuming and run_dir.is_dir():
            with contextlib.suppress(OSError), open(log_file, "a", encoding="utf-8") as f:
                f.write(f"error: {message}\n")

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
            if exc.checkpoint:
                hint += f"; try it with: python -m fastnst.stylize --model {exc.checkpoint} PHOTO"
            print(f"interrupted at step {exc.step}; checkpoint saved: {exc.checkpoint}{hint}", file=sys.stderr)
        sys.exit(130)
    except USER_ERRORS as exc:
        bar.close()
        undo()
        note(str(exc))
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:  # before the loop started: nothing to save
        bar.close()
        undo()
        print("interrupted before training started; nothing was saved", file=sys.stderr)
        sys.exit(130)
    bar.close()
    if is_main:
        if result.skipped_images:
            print(f"skipped {len(result.skipped_images)} unreadable image(s) (listed in the log)", file=sys.stderr)
        print(f"style model: {result.model_path}")
        for path in result.painting_models:
            print(f"style model: {path}")
        if result.exported_to:
            print(f"exported to: {result.exported_to.parent if result.painting_models else result.exported_to}")


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
    refused = preflight(sys.argv[1:])
    if refused is not None:
        print(f"error: {refused[0]}", file=sys.stderr)
        sys.exit(refused[1])
    resume = next((a.split("=", 1)[1] for a in sys.argv[1:] if _override_key(a) == "resume" and "=" in a), None)
    run_files = _RunFiles(run_dir_of_checkpoint(resume) if resume not in (None, "", "null", "None") else None)

    def task(cfg: DictConfig) -> None:
        run_cli(cfg, run_files)

    hydra_main = hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")(task)
    with terminate_as_interrupt():  # before the loop too: a SIGTERM then undoes the new run's directory
        hydra_main()


if __name__ == "__main__":
    main()
