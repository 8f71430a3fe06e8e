"""Animated images (GIF, animated WebP and PNG): every frame stylized into the same kind of animation.

    from fastnst.video.animation import stylize_animation
    result = stylize_animation("starry", "cat.gif", "cat_starry.gif", progress=print)

The frames are stylized in order through a FrameStylizer, so an animation is temporally stabilised as a
video is (a GIF's dithering and palette changes flicker like sensor noise). The output keeps each
frame's duration and the loop count. Pillow writes animations whole, so the frames are held until the
end (as palette images for GIF, a byte per pixel); animations larger than MAX_ANIMATION_PIXELS in all
are refused up front (shrink them with ``max_size``). Saved atomically: nothing is left under the
output name after an error or Ctrl-C.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from fastnst.atomic import atomic_path
from fastnst.imageio import (
    _BOMB_PIXELS_RE,
    _DECODE_ERRORS,
    ImageError,
    _pillow_default_limit,
    _pillow_limit_at_least,
    _too_large,
    resize_long_side,
)
from fastnst.video.pipeline import VideoResult
from fastnst.video.temporal import FrameStylizer, Stabilization

__all__ = ["ANIMATION_EXTENSIONS", "MAX_ANIMATION_PIXELS", "is_animated_image", "stylize_animation"]

# Pillow formats that hold animations, by extension (PNG: APNG).
ANIMATION_EXTENSIONS: dict[str, str] = {".gif": "GIF", ".webp": "WEBP", ".png": "PNG"}
# Output pixels held for the writer, all frames together (GIF: a byte each, else three): ~800 MB.
MAX_ANIMATION_PIXELS = 2**28
_DEFAULT_DURATION = 100  # ms; what browsers show a frame without a duration for


def is_animated_image(path: str | os.PathLike) -> bool:
    """True for a GIF, WebP or PNG file with more than one frame. A file Pillow cannot open is not
    (the image reader then reports why)."""
    if Path(path).suffix.lower() not in ANIMATION_EXTENSIONS:
        return False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # bomb warnings: the reader's check decides
            with Image.open(path) as img:
                # is_animated looks for a second frame only: a cut file still counts (and its reader
                # then reports where it ends), where n_frames, which scans them all, would fail.
                return bool(getattr(img, "is_animated", False))
    except Exception:  # noqa: BLE001 - any unreadable file is left to the image reader's message
        return False


def _frames(src: Path, max_size: int | None, max_pixels: int | None) -> Iterator[tuple[Image.Image, int, int, object]]:
    """(RGB frame, its duration in ms, frame count, loop count or None) for each frame of ``src``,
    checked against the limits before the first is decoded. Errors are ImageErrors naming the file."""
    # The decompression-bomb limit as for still images (fastnst.imageio): Pillow's, or max_pixels.
    limit = _pillow_default_limit() if max_pixels is None else max_pixels
    where = ""  # the frame being read, for the message
    try:
        with warnings.catch_warnings(), _pillow_limit_at_least(limit):
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(src) as img:
                count = getattr(img, "n_frames", 1)
                width, height = img.size
                if limit is not None and width * height > limit:
                    raise _too_large(str(src), width * height, limit)
                scale = min(1.0, max_size / max(width, height)) if max_size else 1.0
                held = count * max(1, round(width * scale)) * max(1, round(height * scale))
                if held > MAX_ANIMATION_PIXELS:
                    raise ImageError(f"{src}: {count} frames of {width}x{height} are too many pixels to hold for the output "
                                     f"({held} > {MAX_ANIMATION_PIXELS}); shrink them with --max-size (max_size=)")
                loop = img.info.get("loop")  # absent: played once
                for index in range(count):
                    where = f" at frame {index + 1} of {count}"
                    img.seek(index)
                    rgb = img.convert("RGB")  # the whole composed frame; alpha is dropped as for images
                    if max_size:
                        rgb = resize_long_side(rgb, max_size)
                    yield rgb, int(img.info.get("duration") or _DEFAULT_DURATION), count, loop
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        found = _BOMB_PIXELS_RE.search(str(exc))
        raise _too_large(str(src), found.group(1) if found else "?", limit) from None
    except _DECODE_ERRORS as exc:
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise ImageError(f"{src}: truncated or corrupt animation{where} ({detail})") from None


def stylize_animation(
    model,
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    max_size: int | None = None,
    max_pixels: int | None = None,
    stabilization: Stabilization | None = Stabilization(),
    preserve_color: bool = False,
    strength: float = 1.0,
    quality: int = 95,
    overwrite: bool = False,
    device=None,
    precision: str | None = None,
    progress: Callable[[int, int | None], None] | None = None,
) -> VideoResult:
    """Stylize every frame of the animated image ``src`` into ``dst`` (.gif, .webp or .png, an APNG);
    returns a fastnst.video.VideoResult (audio None).

    ``stabilization`` as for stylize_video (``None``: every frame on its own). ``max_pixels``: the
    per-frame limit against decompression bombs (default Pillow's). ``quality``: WebP's.
    ``progress(done, total)`` after each frame. Raises ImageError for a bad input or an output format
    without animation, FileExistsError for an existing ``dst`` without ``overwrite``; never leaves a
    partial file.
    """
    src, dst = Path(src), Path(dst)
    fmt = ANIMATION_EXTENSIONS.get(dst.suffix.lower())
    if fmt is None:
        raise ImageError(f"{dst}: cannot write an animation as {dst.suffix or '(no extension)'} "
                         f"(use one of {', '.join(sorted(ANIMATION_EXTENSIONS))})")
    if dst.exists() and src.exists() and dst.resolve() == src.resolve():
        raise ImageError(f"{dst}: the output would overwrite the input")
    if dst.exists() and not overwrite:
        raise FileExistsError(f"{dst} exists (pass overwrite=True to replace it)")
    frames = FrameStylizer(model, stabilization=stabilization, preserve_color=preserve_color, strength=strength,
                           device=device, precision=precision)
    start = time.perf_counter()
    stylize_seconds = 0.0
    out: list[Image.Image] = []
    durations: list[int] = []
    loop = None
    for rgb, duration, count, loop in _frames(src, max_size, max_pixels):
        t0 = time.perf_counter()
        styled = Image.fromarray(frames(np.array(rgb)))  # a writable copy for torch
        stylize_seconds += time.perf_counter() - t0
        # GIF frames are palette images anyway: converting now holds a byte per pixel, not three.
        out.append(styled.convert("P", palette=Image.Palette.ADAPTIVE) if fmt == "GIF" else styled)
        durations.append(duration)
        if progress is not None:
            progress(len(out), count)
    options: dict[str, object] = {"save_all": True, "append_images": out[1:], "duration": durations}
    if loop is not None:
        options["loop"] = loop
    if fmt == "WEBP":
        options["quality"] = quality
    with atomic_path(dst) as tmp, open(tmp, "wb") as f:
        out[0].save(f, format=fmt, **options)
    seconds = time.perf_counter() - start
    return VideoResult(dst, len(out), out[0].width, out[0].height, seconds, stylize_seconds, None, frames.scene_cuts)
