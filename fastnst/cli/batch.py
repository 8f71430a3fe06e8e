"""Stylizing many files: which output each input gets (refusing unsafe ones), then decode, stylize and
save in a pipeline. The library behind ``python -m fastnst.stylize`` (whose rules are in its docstring).
"""

from __future__ import annotations

import glob
import os
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch

from fastnst.imageio import IMAGE_EXTENSIONS, SAVE_EXTENSIONS, ImageError, is_image_file, load_image, save_image
from fastnst.infer.color import check_strength
from fastnst.infer.stylizer import Stylizer, check_overlap, check_tile
from fastnst.video.animation import ANIMATION_EXTENSIONS, is_animated_image
from fastnst.video.container import VIDEO_EXTENSIONS, is_video_input, video_output_extension

GLOB_CHARS = set("*?[")
FORMATS = {"png": ".png", "jpg": ".jpg", "jpeg": ".jpg", "webp": ".webp"}
# Media files fastnst cannot write: -o with one of these names a file (refused), not a new directory.
OTHER_MEDIA_EXTENSIONS = frozenset({".ts", ".m2ts", ".mts", ".mpg", ".mpeg", ".vob", ".flv", ".f4v", ".wmv", ".asf",
                                    ".3gp", ".ogv", ".mxf", ".heic", ".avif", ".jxl"})


@dataclass(frozen=True)
class StylizeSettings:
    """How each image is read, stylized and written (checked once, when built)."""

    tile: int | None = None  # None: only when memory requires; 0: never; N: tiles of N x N
    overlap: int | None = None  # None: the model's (fastnst.infer.stylizer.default_overlap)
    preserve_color: bool = False
    strength: float = 1.0
    max_size: int | None = None  # shrink the long side to at most this
    max_pixels: int | None = None  # refuse larger images (decompression bombs)
    quality: int = 95  # JPEG / WebP
    batch_size: int = 1  # images of equal size per forward pass
    workers: int = 2  # threads decoding and saving beside the compute (0: none)

    def __post_init__(self) -> None:
        check_strength(self.strength)
        check_overlap(self.overlap)
        if self.tile is not None and self.tile != 0:
            check_tile(self.tile, self.overlap)
        for name in ("max_size", "max_pixels"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {self.workers}")
        if not 1 <= self.quality <= 100:
            raise ValueError(f"quality must be in 1..100, got {self.quality}")


@dataclass
class Job:
    src: Path
    dst: Path
    video: bool = False  # a video file (fastnst.video), not an image
    animated: bool = False  # an animated image (fastnst.animation): every frame, into an animation
    replace: bool = True  # False: dst was free when planned and is not replaced if another process writes it first


@dataclass
class Plan:
    jobs: list[Job] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (input, reason)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    notes: list[tuple[str, str]] = field(default_factory=list)  # (input, what the user should know)


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
            files = sorted(p for p in path.glob(pattern) if p.is_file() and _is_media_file(p))
            files = [p for p in files if not any(part.startswith(".") for part in p.relative_to(path).parts)]
            files = [p for p in files if not _is_within(p, exclude_dir)]
            if not files:
                hint = "" if recursive else " (use --recursive for subdirectories)"
                failed.append((text, "no image or video files in directory" + hint))
            for p in files:
                add(p, p.relative_to(path))
        elif path.exists():
            add(path, Path(path.name))
        elif GLOB_CHARS & set(text):
            base = _glob_base(text)
            matches = sorted(Path(m) for m in glob.glob(os.path.expanduser(text), recursive=True))
            files = [m for m in matches if m.is_file() and _is_media_file(m) and not _is_within(m, exclude_dir)]
            if not files:
                failed.append((text, "no image or video files match this pattern"))
            for m in files:
                try:
                    rel = m.relative_to(base)
                except ValueError:
                    rel = Path(m.name)
                add(m, rel)
        elif path.is_symlink():  # exists() follows the link: a dangling or looping one is "not found"
            failed.append((text, "a symbolic link to nothing (dangling or looping)"))
        else:
            failed.append((text, "file not found"))
    return found, failed


def earlier_outputs(files: list[Path], suffixes: list[str]) -> dict[Path, Path]:
    """Files among ``files`` that look like outputs of an earlier run written next to their input:
    ``<stem><suffix>.<ext>`` beside an input ``<stem>.<ext2>``. Maps each such file to that input."""
    by_stem = {(p.parent.resolve(), p.stem): p for p in files}
    found = {}
    for p in files:
        for suffix in suffixes:
            if suffix and p.stem.endswith(suffix) and len(p.stem) > len(suffix):
                source = by_stem.get((p.parent.resolve(), p.stem[: -len(suffix)]))
                if source is not None and source != p:
                    found[p] = source
                    break
    return found


def _is_media_file(path: Path) -> bool:
    """Folders and globs take images and videos by extension (probing every file would be slow)."""
    return is_image_file(path) or path.suffix.lower() in VIDEO_EXTENSIONS


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
    output_suffixes: list[str] | None = None,
) -> Plan:
    """Decide every output path, refusing the unsafe ones (see the fastnst.cli.stylize docstring).

    ``output_suffixes`` (default: ``[suffix]``) name earlier outputs to leave out of folders and globs.
    """
    output_suffixes = [suffix] if output_suffixes is None else output_suffixes
    out_path = Path(output).expanduser() if output else None
    single_file_output = (
        out_path is not None
        and not out_path.is_dir()
        and not str(output).endswith(("/", os.sep))
        and out_path.suffix.lower() in IMAGE_EXTENSIONS | VIDEO_EXTENSIONS | OTHER_MEDIA_EXTENSIONS
    )
    if out_path is not None:
        # Outputs go into a directory that must be one: a file there (or in its path) would only be
        # found when the first output is saved, after every input was stylized.
        directory = out_path.parent if single_file_output else out_path
        for folder in (directory, *directory.parents):
            if folder.exists():
                if folder == out_path and not folder.is_dir():
                    raise ValueError(f"-o {output} is an existing file, not a directory: give a directory for the "
                                     f"outputs, or for one input an output file name with an image or video extension")
                if not folder.is_dir():
                    raise ValueError(f"-o {output}: {folder} is a file, not a directory")
                break
    exclude = None if single_file_output else out_path
    files, failed = expand_inputs(inputs, recursive, exclude_dir=exclude)
    plan = Plan(failed=list(failed))
    # A folder stylized again must not stylize the outputs written next to its photos the first time
    # (dog.jpg -> dog_scream.jpg -> dog_scream_scream.jpg). Files named on the command line always run.
    named = {Path(i).expanduser().resolve() for i in inputs if Path(i).expanduser().is_file()}
    old_outputs = {p: src for p, src in earlier_outputs([p for p, _ in files], output_suffixes).items()
                   if p.resolve() not in named}
    plan.skipped += [(str(p), f"an earlier output (of {src.name}), not a photo") for p, src in old_outputs.items()]
    files = [(p, rel) for p, rel in files if p not in old_outputs]
    if single_file_output and (len(files) > 1 or len(inputs) > 1 or any(Path(i).is_dir() for i in inputs)):
        raise ValueError(f"-o {output} names one file, but there are several inputs: give a directory instead")
    writable = SAVE_EXTENSIONS | VIDEO_EXTENSIONS
    if single_file_output and files and is_animated_image(files[0][0]):
        writable = writable | set(ANIMATION_EXTENSIONS)  # an animated GIF may become one
    if single_file_output and out_path.suffix.lower() not in writable:
        raise ValueError(f"-o {output}: cannot write {out_path.suffix} files (use one of {', '.join(sorted(writable))})")

    input_paths = {p.resolve() for p, _ in files}
    claimed: dict[Path, Path] = {}
    for src, rel in files:
        video = is_video_input(src)
        animated = not video and is_animated_image(src)
        if single_file_output:
            dst = out_path
            if video != (dst.suffix.lower() in VIDEO_EXTENSIONS):
                kind = "a video" if video else "an animated image" if animated else "an image"
                plan.failed.append((str(src), f"-o {output}: cannot write {kind} as {dst.suffix}"))
                continue
        else:
            if video:
                ext = video_output_extension(src)
            elif animated:  # its own kind of animation, or the --format asked for
                ext = FORMATS[fmt] if fmt else src.suffix.lower()
            else:
                ext = output_extension(src, fmt)
            name = f"{rel.stem}{suffix}{ext}"
            dst = (out_path / rel.parent / name) if out_path is not None else src.with_name(name)
        note = None
        if animated and dst.suffix.lower() not in ANIMATION_EXTENSIONS:
            animated = False
            note = f"only the first frame is stylized: {dst.suffix} holds no animation (.gif, .png or .webp keep every frame)"
        key = dst.resolve()
        if key in input_paths:
            hint = "choose another -o" if out_path is not None else "use -o or a --suffix"
            plan.failed.append((str(src), f"output {dst} would overwrite an input ({hint})"))
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
            plan.jobs.append(Job(src, dst, video, animated, replace=overwrite))
            if note is not None:
                plan.notes.append((str(src), note))
    return plan



@dataclass
class Outcome:
    done: list[Job] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    compute_seconds: float = 0.0
    wall_seconds: float = 0.0


def _load(job: Job, max_size: int | None, max_pixels: int | None) -> torch.Tensor:
    # 8 bits: a quarter of the memory of a float image; the stylizer converts it tile by tile.
    return load_image(job.src, max_size=max_size, max_pixels=max_pixels, dtype=torch.uint8)


def _save(tensor: torch.Tensor, job: Job, quality: int) -> None:
    try:
        save_image(tensor, job.dst, quality=quality, replace=job.replace)
    except OSError as exc:
        if exc.filename is None:  # a write error (a full disk) names no file: name the output, not the input
            raise OSError(exc.errno, exc.strerror or str(exc), str(job.dst)) from exc
        raise


def run_jobs(stylizer: Stylizer, jobs: list[Job], settings: StylizeSettings,
             progress: Callable[[], None] | None = None) -> Outcome:
    """Decode (ahead, in threads) -> stylize (here) -> save (in threads), one batch at a time.

    A bad input (unreadable, too large, failing to save) is recorded in the outcome and the others go
    on. ``progress()`` is called once per input, done or failed.
    """
    outcome = Outcome()
    start = time.perf_counter()
    workers = settings.workers
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
    lookahead = max(1, workers) + settings.batch_size

    def refill() -> None:
        while queue and len(pending_loads) < lookahead:
            job = queue.popleft()
            pending_loads.append((job, submit(_load, job, settings.max_size, settings.max_pixels)))

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
            batch: list[tuple[Job, torch.Tensor | None]] = []
            while pending_loads and len(batch) < settings.batch_size:
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
                images = [img for _, img in batch]
                batch = [(job, None) for job, _ in batch]  # let each input go as soon as it is used
                x = images[0] if len(images) == 1 else torch.cat(images)  # no copy of a lone image
                del images
                out = stylizer.stylize_tensor(
                    x,
                    tile=settings.tile,
                    overlap=settings.overlap,
                    preserve_color=settings.preserve_color,
                    strength=settings.strength,
                ).cpu()
                del x
            except (RuntimeError, ValueError, MemoryError) as exc:  # e.g. out of memory for this image
                for job, _ in batch:
                    fail(job, exc)
                continue
            finally:
                outcome.compute_seconds += time.perf_counter() - t0
            for i, (job, _) in enumerate(batch):
                saves.append((job, submit(_save, out[i : i + 1], job, settings.quality)))
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


