"""Image reading and writing: the single owner of the project's pixel convention.

Every image tensor in fastnst is float32, RGB, NCHW, with values in [0, 1].
Everything that touches image files goes through this module so that the
convention (and the handling of odd files: 16-bit, palette, CMYK, EXIF
rotation, truncated or hostile inputs) lives in one place.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import struct
import threading
import warnings
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Union

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from fastnst.atomic import atomic_path

__all__ = [
    "IMAGE_EXTENSIONS",
    "SAVE_EXTENSIONS",
    "ImageError",
    "is_image_file",
    "load_image",
    "load_painting",
    "open_image",
    "open_painting",
    "pil_to_tensor",
    "resize_long_side",
    "resize_tensor_long_side",
    "save_image",
    "single_image",
    "tensor_to_pil",
]

StrPath = Union[str, os.PathLike[str]]

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif"}
)
SAVE_EXTENSIONS: frozenset[str] = frozenset({".png", ".jpg", ".jpeg", ".webp"})

_SAVE_FORMATS: dict[str, str] = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}

# Modes whose samples carry more than 8 bits. Pillow's convert("RGB") clips
# these to 0..255 instead of scaling them, so they are handled via numpy.
_HIGH_BIT_MODES: frozenset[str] = frozenset(
    {"I", "F", "I;16", "I;16L", "I;16B", "I;16N", "I;16S", "I;16LS", "I;16BS", "I;16NS"}
)

# Exceptions Pillow's decoders raise for malformed data. Kept explicit (rather
# than `except Exception`) so genuine bugs and MemoryError are not relabelled.
_DECODE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    IndexError,
    KeyError,
    TypeError,
    struct.error,
    zlib.error,
)

_BOMB_PIXELS_RE = re.compile(r"Image size \((\d+) pixels\)")


class ImageError(ValueError):
    """Bad image input; the message is one line naming the file and the problem."""


def is_image_file(path: StrPath) -> bool:
    """True if `path` has a readable image extension (case-insensitive; content not checked)."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


# --------------------------------------------------------------------------
# Decompression-bomb limit
# --------------------------------------------------------------------------

# Pillow's own bomb check reads the module global Image.MAX_IMAGE_PIXELS, so a
# caller-requested limit *above* Pillow's can only be honoured by raising that
# global for the duration of the decode. The lock serialises such raises, and
# `_saved_pillow_limit` lets concurrent callers still see the real default.
_LIMIT_LOCK = threading.Lock()
_NOT_SAVED = object()
_saved_pillow_limit: object = _NOT_SAVED


def _pillow_default_limit() -> int | None:
    saved = _saved_pillow_limit
    if saved is not _NOT_SAVED:
        return saved  # type: ignore[return-value]
    return Image.MAX_IMAGE_PIXELS


@contextlib.contextmanager
def _pillow_limit_at_least(limit: int | None) -> Iterator[None]:
    """Temporarily raise Pillow's global pixel limit to `limit` if it is lower; restore after."""
    global _saved_pillow_limit
    current = Image.MAX_IMAGE_PIXELS
    if limit is None or current is None or limit <= current:
        yield  # nothing to relax: our own check (which is stricter or equal) still runs
        return
    with _LIMIT_LOCK:
        original = Image.MAX_IMAGE_PIXELS
        _saved_pillow_limit = original
        Image.MAX_IMAGE_PIXELS = limit
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = original
            _saved_pillow_limit = _NOT_SAVED


def _too_large(name: str, pixels: int | str, limit: int | None) -> ImageError:
    return ImageError(
        f"{name}: image too large ({pixels} pixels > limit {limit}); a decompression bomb? "
        "If you trust the file, raise the limit (--max-pixels N on the command line, max_pixels=N in Python)"
    )


# --------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------


def _read(path: StrPath, max_pixels: int | None) -> Image.Image:
    """Open, size-check, fully decode and EXIF-orient an image, in its native mode.

    The result is detached from the file (the file is closed on return).
    """
    name = os.fspath(path)
    if isinstance(name, bytes):  # os.PathLike[bytes]; keep messages printable
        name = os.fsdecode(name)
    if max_pixels is not None and max_pixels < 1:
        raise ValueError(f"max_pixels must be a positive integer or None, got {max_pixels!r}")
    limit = _pillow_default_limit() if max_pixels is None else int(max_pixels)

    p = Path(name)
    # Checked up front because open() on a directory raises different errors per OS.
    if p.is_dir():
        raise ImageError(f"{name}: is a directory")
    try:
        fp = open(p, "rb")  # noqa: SIM115 - closed by the `with fp` below
    except FileNotFoundError:
        raise ImageError(f"{name}: file not found") from None
    except IsADirectoryError:
        raise ImageError(f"{name}: is a directory") from None
    except PermissionError:
        raise ImageError(f"{name}: permission denied") from None
    except OSError as e:
        raise ImageError(f"{name}: cannot read file ({e.strerror or e})") from None

    with fp:
        if os.fstat(fp.fileno()).st_size == 0:
            raise ImageError(f"{name}: empty file")
        try:
            # Make Pillow's bomb *warning* (limit < pixels <= 2*limit) an error
            # too; by default it only warns and then happily decodes.
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with _pillow_limit_at_least(limit):
                    # Passing our own file object keeps file-system errors (above)
                    # apart from format errors (below).
                    with Image.open(fp) as img:
                        w, h = img.size
                        if w < 1 or h < 1:
                            raise ImageError(f"{name}: image has zero size ({w}x{h})")
                        # Check the header size before decoding a single pixel.
                        if limit is not None and w * h > limit:
                            raise _too_large(name, w * h, limit)
                        # Decode everything now, so truncated data fails here
                        # rather than lazily somewhere downstream. For
                        # animations (GIF, WebP, APNG) this is the first frame.
                        img.load()
                        oriented = _to_srgb(_exif_transpose(img, name), name)
        except ImageError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            m = _BOMB_PIXELS_RE.search(str(e))
            raise _too_large(name, m.group(1) if m else "?", limit) from e
        except UnidentifiedImageError as e:
            raise ImageError(f"{name}: not an image file (cannot identify image format)") from e
        except _DECODE_ERRORS as e:
            detail = " ".join(str(e).split()) or type(e).__name__
            raise ImageError(f"{name}: truncated or corrupt image data ({detail})") from e
    return oriented


def _exif_transpose(img: Image.Image, name: str) -> Image.Image:
    """Apply the EXIF orientation tag; always returns a new, file-independent image."""
    try:
        out = ImageOps.exif_transpose(img)
    except _DECODE_ERRORS as e:
        # A broken EXIF block should not make otherwise good pixels unreadable;
        # fall back to the stored orientation, but say so.
        warnings.warn(f"{name}: ignoring unreadable EXIF orientation ({e})", stacklevel=4)
        out = None
    # exif_transpose returns a copy already; copy() covers the fallback.
    return out if out is not None and out is not img else img.copy()


def _to_srgb(img: Image.Image, name: str) -> Image.Image:
    """Pixels tagged with an ICC profile other than sRGB (a phone's Display P3, Adobe RGB, a CMYK
    press profile) converted to sRGB, what the network was trained on and what an untagged output
    means: kept as they are, they would be read and written as sRGB, a visible colour shift. sRGB
    profiles are left alone (bit-exact), and so are modes LittleCMS does not take (16-bit)."""
    icc = img.info.get("icc_profile")
    if not icc or img.mode not in ("RGB", "RGBA", "CMYK", "L"):
        return img
    from PIL import ImageCms

    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if ImageCms.getProfileDescription(profile).strip().lower().startswith("srgb"):
            return img
        out = ImageCms.profileToProfile(img, profile, ImageCms.createProfile("sRGB"),
                                        outputMode="RGBA" if img.mode == "RGBA" else "RGB")
    except (ImageCms.PyCMSError, OSError, ValueError) as e:
        # A broken profile should not make otherwise good pixels unreadable; say so.
        warnings.warn(f"{name}: ignoring unusable ICC colour profile ({e})", stacklevel=4)
        return img
    return out if out is not None else img


def _gray_float(img: Image.Image) -> np.ndarray:
    """A high-bit-depth single-channel image as float32 in [0, 1] (H, W).

    Integer modes are taken as 16-bit data (0..65535; Pillow reads 16-bit PNG
    and TIFF as I;16 or I). Float (F) images are assumed to be in [0, 1].
    """
    arr = np.asarray(img)
    if img.mode == "F":
        out = arr.astype(np.float32)
    else:
        out = arr.astype(np.float32) / np.float32(65535.0)
    return np.nan_to_num(out, nan=0.0, posinf=1.0, neginf=0.0).clip(0.0, 1.0)


def _to_rgb8(img: Image.Image, name: str = "<image>") -> Image.Image:
    """Any Pillow mode to 8-bit RGB, scaling (not clipping) high-bit-depth data."""
    if img.mode == "RGB":
        return img
    if img.mode in _HIGH_BIT_MODES:
        gray = np.rint(_gray_float(img) * 255.0).astype(np.uint8)
        return Image.fromarray(gray).convert("RGB")
    if img.mode in ("P", "PA"):
        # Via RGBA so palette transparency is interpreted (Pillow warns when
        # converting palette+transparency straight to RGB); then alpha is dropped.
        img = img.convert("RGBA")
    # Alpha policy: alpha is simply DROPPED (no compositing on white/black);
    # the stored colour under transparent pixels is kept. Style transfer has
    # no notion of transparency, and this keeps opaque images bit-exact.
    try:
        return img.convert("RGB")
    except ValueError as e:
        raise ImageError(f"{name}: unsupported image mode {img.mode!r} ({e})") from e


def open_image(path: StrPath, max_pixels: int | None = None) -> Image.Image:
    """Read an image file as a fully loaded, EXIF-oriented 8-bit RGB PIL image.

    Reads anything Pillow reads (first frame of animations). `max_pixels`
    defaults to Pillow's `Image.MAX_IMAGE_PIXELS`; images above it are refused
    as likely decompression bombs, from the header, before decoding.
    Raises ImageError for any bad input.
    """
    return _to_rgb8(_read(path, max_pixels), os.fsdecode(os.fspath(path)))


def resize_long_side(img: Image.Image, size: int, upscale: bool = False) -> Image.Image:
    """Resize so the longer side is `size` px (LANCZOS, aspect kept, >= 1 px per side).

    Without `upscale`, images already within `size` are returned unchanged (same object).
    """
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size!r}")
    w, h = img.size
    long_side = max(w, h)
    if long_side == size or (long_side < size and not upscale):
        return img
    scale = size / long_side
    # The long side is set exactly; only the short side is rounded.
    if w >= h:
        new = (size, max(1, round(h * scale)))
    else:
        new = (max(1, round(w * scale)), size)
    return img.resize(new, Image.Resampling.LANCZOS)


def resize_tensor_long_side(x: torch.Tensor, size: int, upscale: bool = False) -> torch.Tensor:
    """A (..., H, W) float image resized so its longer side is `size` px (bicubic, antialiased when
    shrinking, clamped to [0, 1], dtype kept): `resize_long_side` for tensors.

    Without `upscale`, images already within `size` are returned unchanged (same object).
    """
    h, w = x.shape[-2:]
    long_side = max(h, w)
    if long_side == size or (long_side < size and not upscale):
        return x
    scale = size / long_side
    new = (size, max(1, round(w * scale))) if h >= w else (max(1, round(h * scale)), size)
    out = torch.nn.functional.interpolate(x.float(), size=new, mode="bicubic", antialias=scale < 1, align_corners=False)
    return out.clamp_(0, 1).to(x.dtype)


def pil_to_tensor(img: Image.Image, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """PIL image (any mode) to a (1, 3, H, W) float32 tensor in [0, 1] (or uint8 in 0..255).

    High-bit-depth modes (I;16, I, F) keep their full precision (in float32).
    """
    if dtype not in (torch.float32, torch.uint8):
        raise ValueError(f"dtype must be torch.float32 or torch.uint8, got {dtype}")
    if img.mode in _HIGH_BIT_MODES:
        gray = torch.from_numpy(np.ascontiguousarray(_gray_float(img)))
        if dtype == torch.uint8:
            gray = gray.mul(255.0).round_().to(torch.uint8)
        return gray.expand(1, 3, *gray.shape).contiguous()
    rgb = torch.from_numpy(np.array(_to_rgb8(img), dtype=np.uint8))  # (H, W, 3); np.array copies: writable
    if dtype == torch.uint8:
        return rgb.permute(2, 0, 1).unsqueeze(0).contiguous()
    # Straight into a contiguous float32 tensor: no second image-sized temporary on the way.
    out = torch.empty(1, 3, *rgb.shape[:2], dtype=torch.float32)
    out[0].copy_(rgb.permute(2, 0, 1))
    return out.div_(255.0)


def load_image(
    path: StrPath, max_size: int | None = None, max_pixels: int | None = None, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Read an image file as a (1, 3, H, W) float32 tensor in [0, 1] (``dtype=torch.uint8``: 0..255,
    a quarter of the memory, for images that are only passed on to ``Stylizer.stylize_tensor``).

    16-bit sources keep their precision. With `max_size`, the long side is
    shrunk to at most `max_size` (never enlarged). See `open_image` for
    `max_pixels` and errors.
    """
    if max_size is not None and max_size < 1:
        raise ValueError(f"max_size must be a positive integer or None, got {max_size!r}")
    img = _read(path, max_pixels)
    if img.mode in _HIGH_BIT_MODES:
        # Resize in float ("F" mode) so 16-bit data never passes through 8 bits.
        img = Image.fromarray(_gray_float(img))
    else:
        img = _to_rgb8(img, os.fsdecode(os.fspath(path)))
    if max_size is not None:
        img = resize_long_side(img, max_size)
    # LANCZOS overshoots slightly; _gray_float clips F data back into [0, 1].
    return pil_to_tensor(img, dtype)


def trim_uniform_frame(img: Image.Image, tolerance: float = 12.0, max_fraction: float = 0.1,
                       edge_fraction: float = 0.02) -> tuple[Image.Image, tuple[int, int, int, int]]:
    """Cut a uniform frame (a scan's black or white border) off an image: outer rows and columns whose
    pixels all lie within ``tolerance`` (0-255) of the frame colour, at most ``max_fraction`` of a side,
    and on each side that had a frame a further ``edge_fraction`` of the side: the frame's inner edge
    (an anti-aliased dark line, a bright mat line) is not flat, and a style loss that sees it teaches the
    network to paint a frame at every image's border.

    Returns the image and the cut (top, bottom, left, right) in pixels. Painted content is never that
    flat over a whole row, so an unframed painting comes back unchanged.
    """
    a = np.asarray(img.convert("RGB"), dtype=np.float32)
    h, w = a.shape[:2]
    corner = np.median(np.stack([a[0, 0], a[0, -1], a[-1, 0], a[-1, -1]]), axis=0)

    def flat(line: np.ndarray) -> bool:
        return float(np.abs(line - corner).max()) <= tolerance

    def count(lines: Iterator[np.ndarray], limit: int) -> int:
        n = 0
        for line in lines:
            if n >= limit or not flat(line):
                break
            n += 1
        return n

    top = count((a[i] for i in range(h)), int(h * max_fraction))
    bottom = count((a[h - 1 - i] for i in range(h)), int(h * max_fraction))
    left = count((a[:, j] for j in range(w)), int(w * max_fraction))
    right = count((a[:, w - 1 - j] for j in range(w)), int(w * max_fraction))
    if not any((top, bottom, left, right)):
        return img, (0, 0, 0, 0)
    edge_h, edge_w = round(h * edge_fraction), round(w * edge_fraction)
    cut = (top + edge_h * (top > 0), bottom + edge_h * (bottom > 0), left + edge_w * (left > 0), right + edge_w * (right > 0))
    top, bottom, left, right = cut
    return img.crop((left, top, w - right, h - bottom)), cut


def open_painting(path: StrPath, trim_frame: bool = True) -> tuple[Image.Image, tuple[int, int, int, int]]:
    """A painting as the style losses take it (trainer, scorer, Gatys): 8-bit RGB, its uniform frame and
    the frame's inner edge cut off (`trim_uniform_frame`) unless ``trim_frame`` is false. Returns the image
    and the cut (top, bottom, left, right) in pixels."""
    img = open_image(path)
    return trim_uniform_frame(img) if trim_frame else (img, (0, 0, 0, 0))


def load_painting(path: StrPath, trim_frame: bool = True, max_size: int | None = None) -> torch.Tensor:
    """`open_painting` as a (1, 3, H, W) float32 tensor in [0, 1], its long side shrunk to ``max_size``."""
    img = open_painting(path, trim_frame)[0]
    return pil_to_tensor(img if max_size is None else resize_long_side(img, max_size))


def single_image(t: torch.Tensor) -> torch.Tensor:
    """A (3, H, W) or (1, 3, H, W) image tensor as (3, H, W); ValueError for any other shape (a batch
    of several, a wrong channel count). The one shape rule of the tensor-to-8-bit converters."""
    if t.dim() == 4:
        if t.shape[0] != 1:
            raise ValueError(f"expected a batch of one image, got shape {tuple(t.shape)}")
        t = t[0]
    if t.dim() != 3 or t.shape[0] != 3:
        raise ValueError(f"expected shape (3, H, W) or (1, 3, H, W), got {tuple(t.shape)}")
    return t


def tensor_to_pil(t: torch.Tensor) -> Image.Image:
    """(3, H, W) or (1, 3, H, W) float tensor in [0, 1] to an 8-bit RGB PIL image.

    Values are clamped to [0, 1] (NaN -> 0) and rounded; the input is never modified.
    """
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"expected a torch.Tensor, got {type(t).__name__}")
    if not t.is_floating_point():
        raise TypeError(f"expected a floating-point tensor in [0, 1], got dtype {t.dtype}")
    t = single_image(t)
    # Out-of-place ops only: .to() may return `t` itself when it is already
    # float32 on the CPU, so nothing below may write into it.
    # Converted in bands of rows, so the float temporaries stay small next to a large image.
    t = t.detach()
    h, w = t.shape[-2:]
    out = torch.empty(h, w, 3, dtype=torch.uint8)
    band = max(1, (1 << 22) // max(1, w))  # ~4 M pixels at a time
    for r0 in range(0, h, band):
        x = t[:, r0 : r0 + band].to(device="cpu", dtype=torch.float32)
        x = torch.nan_to_num(x, nan=0.0).clamp_(0.0, 1.0).mul_(255.0).round_()
        out[r0 : r0 + band] = x.permute(1, 2, 0)
    return Image.fromarray(out.numpy())


# --------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------

# Modes each output format can store as-is; anything else becomes 8-bit RGB.
_SAVE_MODES: dict[str, frozenset[str]] = {
    "PNG": frozenset({"1", "L", "LA", "P", "RGB", "RGBA", "I;16"}),
    "JPEG": frozenset({"L", "RGB"}),
    "WEBP": frozenset({"RGB", "RGBA"}),
}


def save_image(image: torch.Tensor | Image.Image, path: StrPath, quality: int = 95, replace: bool = True) -> Path:
    """Write a tensor (see `tensor_to_pil`) or PIL image; format from the extension.

    Parent directories are created. The file is written to a temporary file in
    the same directory and moved into place with os.replace, so readers never
    see a half-written file. `quality` applies to JPEG and WebP. With
    `replace=False` an existing file is never replaced (FileExistsError), even
    one another process writes meanwhile. Returns the path.
    """
    out = Path(os.fsdecode(os.fspath(path)))
    ext = out.suffix.lower()
    if ext not in SAVE_EXTENSIONS:
        allowed = ", ".join(sorted(SAVE_EXTENSIONS))
        raise ImageError(
            f"{out}: unsupported output extension {ext or '(none)'!r} (allowed: {allowed})"
        )
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be in 1..100, got {quality!r}")
    if isinstance(image, torch.Tensor):
        pil = tensor_to_pil(image)
    elif isinstance(image, Image.Image):
        pil = image
    else:
        raise TypeError(f"expected a torch.Tensor or PIL.Image.Image, got {type(image).__name__}")
    if out.is_dir():
        raise ImageError(f"{out}: is a directory")

    fmt = _SAVE_FORMATS[ext]
    if pil.mode not in _SAVE_MODES[fmt]:
        pil = _to_rgb8(pil)
    options: dict[str, object] = {}
    if fmt == "JPEG":
        # 4:4:4 chroma: the default 4:2:0 visibly smears the fine coloured
        # texture that style transfer produces.
        options = {"quality": quality, "subsampling": 0}
    elif fmt == "WEBP":
        options = {"quality": quality}

    with atomic_path(out, replace=replace) as tmp, open(tmp, "wb") as f:
        pil.save(f, format=fmt, **options)
    return out
