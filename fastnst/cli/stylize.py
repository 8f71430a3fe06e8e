"""Command line: stylize photos with a trained model.

    python -m fastnst.stylize --model starry photo.jpg                    # -> photo_starry.jpg
    python -m fastnst.stylize --model starry photo.jpg -o out.png
    python -m fastnst.stylize --model my.safetensors photos/ "shots/*.png" -o styled/ --recursive
    python -m fastnst.stylize --list-models

Output rules:
* one input file and ``-o FILE`` (with an image extension): that file, in the format of its extension;
* otherwise each output is ``<stem><suffix><ext>`` (suffix ``_<style>`` by default), next to its input
  without ``-o``, or under the ``-o`` directory, keeping paths relative to a directory input (or to a
  glob's fixed leading directory);
* ``<ext>`` is the input's own extension when it can be written (.png .jpg .jpeg .webp), else .png;
  ``--format`` forces one;
* an input is never overwritten; an existing output is refused (reported, exit status 1) unless
  ``--overwrite`` (replace it) or ``--skip-existing`` (leave it, exit status 0).

A bad input (unreadable, corrupt, ...) does not stop the batch: the others are written, the summary
lists it with the reason, and the exit status is 1. Exit status 2: bad arguments or model.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from fastnst.imageio import IMAGE_EXTENSIONS, SAVE_EXTENSIONS, ImageError, is_image_file

GLOB_CHARS = set("*?[")
FORMATS = {"png": ".png", "jpg": ".jpg", "jpeg": ".jpg", "webp": ".webp"}


# ----------------------------------------------------------------------------------------------
# Planning: inputs -> (source, destination) jobs
# ----------------------------------------------------------------------------------------------


@dataclass
class Job:
    src: Path
    dst: Path


@dataclass
class Plan:
    jobs: list[Job] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (input, reason)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def _glob_base(pattern: str) -> Path:
    """The leading directories of a glob pattern that contain no wildcard."""
    parts = []
    for part in Path(pattern).parts[:-1]:
        if GLOB_CHARS & set(part):
            break
        parts.append(part)
    return Path(*parts) if parts else Path(".")


def _is_within(path: Path, directory: Path | None) -> bool:
    if directory is None:
        return False
    try:
        path.resolve().relative_to(directory.resolve())
        return True
    except ValueError:
        return False


def expand_inputs(
    inputs: list[str], recursive: bool = False, exclude_dir: Path | None = None
) -> tuple[list[tuple[Path, Path]], list[tuple[str, str]]]:
    """Files to stylize as (path, path relative to its input root), and inputs that matched nothing.

    Directories give the image files inside (sorted; subdirectories with ``recursive``; hidden files
    and anything under ``exclude_dir``, the output directory, left out). Globs are expanded here,
    since a quoted pattern reaches us unexpanded.
    """
    found: list[tuple[Path, Path]] = []
    failed: list[tuple[str, str]] = []
    seen: set[Path] = set()

    def add(path: Path, rel: Path) -> None:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            found.append((path, rel))

    for text in inputs:
        path = Path(text).expanduser()
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            files = sorted(p for p in path.glob(pattern) if p.is_file() and is_image_file(p))
            files = [p for p in files if not any(part.startswith(".") for part in p.relative_to(path).parts)]
            files = [p for p in files if not _is_within(p, exclude_dir)]
            if not files:
                failed.append((text, "no image files in directory" + ("" if recursive else " (use --recursive for subdirectories)")))
            for p in files:
                add(p, p.relative_to(path))
        elif path.exists():
            add(path, Path(path.name))
        elif GLOB_CHARS & set(text):
            base = _glob_base(text)
            matches = sorted(Path(m) for m in glob.glob(os.path.expanduser(text), recursive=True))
            files = [m for m in matches if m.is_file() and is_image_file(m) and not _is_within(m, exclude_dir)]
            if not files:
                failed.append((text, "no image files match this pattern"))
            for m in files:
                try:
                    rel = m.relative_to(base)
                except ValueError:
                    rel = Path(m.name)
                add(m, rel)
        else:
            failed.append((text, "file not found"))
    return found, failed


def output_extension(src: Path, fmt: str | None) -> str:
    if fmt:
        return FORMATS[fmt]
    ext = src.suffix.lower()
    return ext if ext in SAVE_EXTENSIONS else ".png"


def plan_jobs(
    inputs: list[str],
    output: str | None,
    suffix: str,
    fmt: str | None = None,
    recursive: bool = False,
    overwrite: bool = False,
    skip_existing: bool = False,
) -> Plan:
    """Decide every output path, refusing the unsafe ones (see the module docstring)."""
    out_path = Path(output).expanduser() if output else None
    single_file_output = (
        out_path is not None
        and not out_path.is_dir()
        and not str(output).endswith(("/", os.sep))
        and out_path.suffix.lower() in IMAGE_EXTENSIONS
    )
    exclude = None if single_file_output else out_path
    files, failed = expand_inputs(inputs, recursive, exclude_dir=exclude)
    plan = Plan(failed=list(failed))
    if single_file_output and (len(files) > 1 or len(inputs) > 1 or any(Path(i).is_dir() for i in inputs)):
        raise ValueError(f"-o {output} names one file, but there are several inputs: give a directory instead")
    if single_file_output and out_path.suffix.lower() not in SAVE_EXTENSIONS:
        raise ValueError(f"-o {output}: cannot write {out_path.suffix} files (use one of {', '.join(sorted(SAVE_EXTENSIONS))})")

    input_paths = {p.resolve() for p, _ in files}
    claimed: dict[Path, Path] = {}
    for src, rel in files:
        if single_file_output:
            dst = out_path
        else:
            name = f"{rel.stem}{suffix}{output_extension(src, fmt)}"
            dst = (out_path / rel.parent / name) if out_path is not None else src.with_name(name)
        key = dst.resolve()
        if key in input_paths:
            plan.failed.append((str(src), f"output {dst} would overwrite an input (use -o or a --suffix)"))
        elif key in claimed:
            plan.failed.append((str(src), f"output {dst} is also the output of {claimed[key]}"))
        elif dst.exists() and not overwrite:
            if skip_existing:
                plan.skipped.append((str(src), f"{dst} exists"))
            else:
                plan.failed.append((str(src), f"{dst} exists (use --overwrite to replace it or --skip-existing)"))
            claimed[key] = src
        else:
            claimed[key] = src
            plan.jobs.append(Job(src, dst))
    return plan


# ----------------------------------------------------------------------------------------------
# Listing models
# ----------------------------------------------------------------------------------------------

_INFO_KEYS = [  # (key in info, label); anything missing is just left out
    ("steps", "steps"),
    ("image_size", "image size"),
    ("epochs", "epochs"),
    ("dataset", "data"),
    ("content_weight", "content weight"),
    ("style_weight", "style weight"),
    ("tv_weight", "tv weight"),
    ("date", "date"),
]


def list_models(out=None) -> int:
    """Print the shipped models with their style and training facts (from the file headers)."""
    out = out or sys.stdout
    from fastnst.modelfile import CHECKPOINTS_DIR, ModelFileError, list_shipped_models, read_model_header

    paths = list_shipped_models()
    if not paths:
        print(f"no shipped models (looked in {CHECKPOINTS_DIR})", file=out)
        return 0
    for path in paths:
        try:
            config, info = read_model_header(path)
        except ModelFileError as exc:
            print(f"{path.stem}: unreadable ({exc})", file=out)
            continue
        style = info.get("style", path.stem)
        arch = f"{config.arch}, {config.base_channels} base channels, {config.num_residual_blocks} residual blocks"
        facts = [f"{label} {info[key]}" for key, label in _INFO_KEYS if key in info and info[key] not in (None, "")]
        known = {key for key, _ in _INFO_KEYS} | {"style", "note"}
        facts += [  # whatever else the trainer recorded, if it is short
            f"{key} {value}" for key, value in info.items()
            if key not in known and isinstance(value, (str, int, float, bool)) and len(str(value)) <= 40
        ]
        line = f"{path.stem}: style {style}; {arch}"
        print(line + ("; " + ", ".join(facts) if facts else ""), file=out)
    return 0


# ----------------------------------------------------------------------------------------------
# Running
# ----------------------------------------------------------------------------------------------


DEFAULT_MODEL = "starry"  # shipped in checkpoints/ (see checkpoints/README.md)
DEMO_OUTPUT = "outputs/demo"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m fastnst.stylize",
        description="Stylize photos with a trained fast style-transfer model.",
        epilog="Exit status: 0 all done, 1 some inputs failed or were refused, 2 bad arguments or model.",
    )
    p.add_argument("inputs", nargs="*", metavar="INPUT", help="image files, directories, or glob patterns")
    p.add_argument("--model", "-m", default=DEFAULT_MODEL,
                   help=f"shipped model name (see --list-models) or path to a .safetensors model file (default: {DEFAULT_MODEL})")
    p.add_argument("--demo", action="store_true",
                   help=f"stylize the bundled sample photos into {DEMO_OUTPUT}/ (or -o DIR), replacing earlier demo outputs")
    p.add_argument("--list-models", action="store_true", help="list the shipped models and exit")
    p.add_argument("-o", "--output", help="output file (one input) or directory")
    p.add_argument("--recursive", "-r", action="store_true", help="include subdirectories of directory inputs")
    p.add_argument("--suffix", default=None, help="appended to output names (default: _<style>)")
    p.add_argument("--format", choices=sorted(FORMATS), help="output format (default: the input's, if writable, else png)")
    p.add_argument("--quality", type=int, default=95, help="JPEG/WebP quality (default 95)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--skip-existing", action="store_true", help="leave existing outputs alone (not an error)")
    p.add_argument("--max-size", type=int, metavar="N", help="shrink so the long side is at most N pixels")
    p.add_argument("--max-pixels", type=int, metavar="N",
                   help="refuse larger images as likely decompression bombs (default: Pillow's limit, ~89 megapixels)")
    p.add_argument("--tile", type=int, metavar="N", help="stylize in N x N tiles (default: only when memory requires; 0: never)")
    p.add_argument("--overlap", type=int, default=128, metavar="N", help="pixels shared by neighbouring tiles (default 128)")
    p.add_argument("--preserve-color", action="store_true", help="keep the photo's colours, take only the stylized luminance")
    p.add_argument("--strength", type=float, default=1.0, metavar="F", help="0 = photo, 1 = full style (default 1)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="default: cuda if available")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                   help="default: bf16 on CPUs with AMX/AVX-512-BF16 and on GPUs, else fp32")
    p.add_argument("--batch-size", type=int, default=1, metavar="N", help="images of equal size per forward pass (GPU)")
    p.add_argument("--workers", type=int, default=2, metavar="N", help="threads decoding and saving beside the compute (0: none)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar or summary, only errors")
    return p


@dataclass
class Outcome:
    done: list[Job] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    compute_seconds: float = 0.0
    wall_seconds: float = 0.0


def _load(job: Job, max_size: int | None, max_pixels: int | None):
    from fastnst.imageio import load_image

    return load_image(job.src, max_size=max_size, max_pixels=max_pixels)


def _save(tensor, job: Job, quality: int) -> None:
    from fastnst.imageio import save_image

    save_image(tensor, job.dst, quality=quality)


def run_jobs(stylizer, jobs: list[Job], args: argparse.Namespace, progress=None) -> Outcome:
    """Decode (ahead, in threads) -> stylize (here) -> save (in threads), one batch at a time."""
    import torch

    outcome = Outcome()
    start = time.perf_counter()
    workers = max(0, args.workers)
    pool = ThreadPoolExecutor(max_workers=workers) if workers else None

    def submit(fn, *a):
        if pool is None:
            f: Future = Future()
            try:
                f.set_result(fn(*a))
            except BaseException as exc:  # noqa: BLE001 - reported per input below
                f.set_exception(exc)
            return f
        return pool.submit(fn, *a)

    pending_loads: deque[tuple[Job, Future]] = deque()
    saves: list[tuple[Job, Future]] = []
    queue = deque(jobs)
    lookahead = max(1, workers) + args.batch_size

    def refill() -> None:
        while queue and len(pending_loads) < lookahead:
            job = queue.popleft()
            pending_loads.append((job, submit(_load, job, args.max_size, args.max_pixels)))

    def fail(job: Job, exc: BaseException) -> None:
        if isinstance(exc, (ImageError, ValueError)):
            reason = str(exc)
        elif isinstance(exc, OSError):
            reason = f"{exc.filename or job.src}: {exc.strerror or exc}"
        else:
            reason = f"{type(exc).__name__}: {exc}"
        outcome.failed.append((str(job.src), reason))
        if progress is not None:
            progress()

    try:
        refill()
        while pending_loads:
            batch: list[tuple[Job, torch.Tensor]] = []
            while pending_loads and len(batch) < args.batch_size:
                job, fut = pending_loads[0]
                try:
                    image = fut.result()
                except Exception as exc:  # noqa: BLE001 - a bad input must not stop the batch
                    pending_loads.popleft()
                    fail(job, exc)
                    refill()
                    continue
                if batch and image.shape != batch[0][1].shape:
                    break  # only equal sizes share a forward pass
                pending_loads.popleft()
                batch.append((job, image))
                refill()
            if not batch:
                continue
            t0 = time.perf_counter()
            try:
                out = stylizer.stylize_tensor(
                    torch.cat([img for _, img in batch]),
                    tile=args.tile,
                    overlap=args.overlap,
                    preserve_color=args.preserve_color,
                    strength=args.strength,
                ).cpu()
            except (RuntimeError, ValueError, MemoryError) as exc:  # e.g. out of memory for this image
                for job, _ in batch:
                    fail(job, exc)
                continue
            finally:
                outcome.compute_seconds += time.perf_counter() - t0
            for i, (job, _) in enumerate(batch):
                saves.append((job, submit(_save, out[i : i + 1], job, args.quality)))
            # Collect finished saves as we go, so progress reflects written files.
            still = []
            for job, fut in saves:
                if fut.done():
                    _collect_save(job, fut, outcome, fail, progress)
                else:
                    still.append((job, fut))
            saves = still
        for job, fut in saves:
            _collect_save(job, fut, outcome, fail, progress)
    finally:
        if pool is not None:
            pool.shutdown(wait=True)
    outcome.wall_seconds = time.perf_counter() - start
    return outcome


def _collect_save(job: Job, fut: Future, outcome: Outcome, fail, progress) -> None:
    try:
        fut.result()
    except Exception as exc:  # noqa: BLE001
        fail(job, exc)
        return
    outcome.done.append(job)
    if progress is not None:
        progress()


def print_summary(outcome: Outcome, out=None) -> None:
    out = out or sys.stderr
    n = len(outcome.done)
    parts = [f"done {n}", f"skipped {len(outcome.skipped)}", f"failed {len(outcome.failed)}"]
    line = ", ".join(parts)
    if n:
        line += f"; {outcome.wall_seconds / n:.2f} s per image ({outcome.compute_seconds / n:.2f} s stylizing)"
    print(line, file=out)
    for src, reason in outcome.skipped:
        print(f"  skipped {src}: {reason}", file=out)
    for src, reason in outcome.failed:
        # ImageError messages already start with the file name.
        print(f"  failed {reason}" if reason.startswith(src) else f"  failed {src}: {reason}", file=out)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list_models:
        return list_models()
    if args.demo:
        if args.inputs:
            parser.error("--demo takes no inputs: it stylizes the bundled sample photos")
        from fastnst.assets import sample_image_paths

        args.inputs = [str(path) for path in sample_image_paths()]
        if not args.inputs:
            parser.error("--demo: no bundled sample photos found (scikit-image is not installed)")
        args.output = args.output or DEMO_OUTPUT
        args.overwrite, args.skip_existing = True, False  # the demo's own outputs, refreshed on every run
    if not args.inputs:
        parser.error("no inputs given (--demo stylizes the bundled sample photos)")
    if not 0.0 <= args.strength <= 1.0:
        parser.error(f"--strength must be in [0, 1], got {args.strength}")
    if args.batch_size < 1:
        parser.error("--batch-size must be at least 1")
    if args.max_size is not None and args.max_size < 1:
        parser.error("--max-size must be a positive integer")
    if args.tile is not None and args.tile != 0 and (args.tile < 64 or args.tile <= args.overlap):
        parser.error(f"--tile must be 0 or at least 64 and larger than --overlap ({args.overlap})")
    if args.max_pixels is not None and args.max_pixels < 1:
        parser.error("--max-pixels must be a positive integer")
    if args.overwrite and args.skip_existing:
        parser.error("--overwrite and --skip-existing contradict each other")
    if not 1 <= args.quality <= 100:
        parser.error("--quality must be in 1..100")

    from fastnst.inference import load_model
    from fastnst.modelfile import ModelFileError
    from fastnst.runtime import reuse_freed_memory

    try:
        stylizer = load_model(args.model, args.device, args.precision)
        if stylizer.device.type == "cpu":
            reuse_freed_memory()  # the command line's opt-in to a process-wide malloc setting (see there)
    except (ModelFileError, RuntimeError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    suffix = args.suffix if args.suffix is not None else f"_{stylizer.style}"
    try:
        plan = plan_jobs(args.inputs, args.output, suffix, args.format, args.recursive, args.overwrite, args.skip_existing)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    bar = None
    if not args.quiet and len(plan.jobs) > 1:
        from tqdm import tqdm

        # disable=None: no bar when stderr is not a terminal (logs, pipes)
        bar = tqdm(total=len(plan.jobs), unit="img", desc=f"stylizing ({stylizer.style})", file=sys.stderr, disable=None)
    try:
        outcome = run_jobs(stylizer, plan.jobs, args, progress=bar.update if bar is not None else None)
    finally:
        if bar is not None:
            bar.close()
    outcome.failed = plan.failed + outcome.failed
    outcome.skipped = plan.skipped + outcome.skipped
    if not args.quiet:
        print_summary(outcome)
        if args.demo and outcome.done:
            print(f"stylized photos ({stylizer.style}) in {args.output}/", file=sys.stderr)
    elif outcome.failed:
        for src, reason in outcome.failed:
            print(reason if reason.startswith(src) else f"{src}: {reason}", file=sys.stderr)
    return 1 if outcome.failed else 0


if __name__ == "__main__":
    sys.exit(main())
