"""Stylizing images with a trained model: the library behind ``python -m fastnst.stylize``.

    import fastnst
    model = fastnst.load_model("starry")                    # shipped name or path; cached
    out = fastnst.stylize_image(model, Image.open("photo.jpg"), preserve_color=True, strength=0.8)

``stylize_image`` returns the kind it was given: a PIL image for a PIL image, a tensor of the same
shape, dtype and device for a float tensor in [0, 1] ((3, H, W) or (N, 3, H, W)).

Any size works. Images larger than what fits in memory (or than ``tile``) are stylized in overlapping
tiles. Instance norm makes that delicate: each tile's own statistics differ from the whole image's,
so independently stylized tiles disagree in contrast and colour and the seams show. Here every tile is
normalised with the statistics of the *whole* image, recorded in one pass over it, which makes the
network a fixed convolutional map: tiles then agree exactly away from their borders, and the overlaps
are cross-faded with linear ramps that give no weight to the outermost pixels of a tile (where its
reflection padding differs from the real neighbourhood); the overlap grows with the network's
receptive field (``default_overlap``: dilated residual blocks reach further). The result equals the
untiled output (to ~80 dB PSNR in bf16) at the cost of that extra pass.

One forward pass takes at most ~0.5 GB of working memory (MAX_PASS_BYTES; less when memory is short), so
a large image's peak follows the tile, not the image. The pixels that fit follow from ~250 bytes a pixel
for the half-width network in bf16 and int8, twice that in float32 and for the full-width network, and
~1100 for bf16 on a CPU without bf16 units (bytes_per_pixel): about 2.1 megapixels (1920x1080) run in
one pass in bf16 and int8, 1.1 in float32, larger images in tiles. The statistics pass may take twice
as much: up to ~4.3 megapixels in bf16 and int8 (~2.1 in float32; half that for the full-width network)
the statistics are the whole image's, exact; a larger image gets them from a copy downscaled to that
size. The network's statistics are not scale-invariant (statistics from a copy at 0.7x scale give ~30 dB
against the full-resolution result), so such a result is a consistent, seamless stylization that differs somewhat from an untiled pass over
the full image. (Exact statistics tile by tile would take one pass over the image per norm layer, 15 in
all: each layer's statistics depend on the normalised output of the layers before it. Pooling each
tile's own statistics instead gave 19-28 dB, worse than the downscaled copy.)
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable
from typing import Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from fastnst.imageio import pil_to_tensor, resize_long_side, resize_tensor_long_side, tensor_to_pil
from fastnst.infer.backends.base import Backend, NormStats
from fastnst.infer.backends.fused import FusedNet
from fastnst.infer.backends.int8 import AUTO_MIN_PSNR, Int8Net, guard_psnr
from fastnst.infer.color import blend, check_strength
from fastnst.infer.color import preserve_color as preserve_color_fn
from fastnst.infer.plan import build_plan
from fastnst.nets.modelfile import StyleModel, load_style_model, resolve_model_path
from fastnst.nets.transform_net import TransformerConfig, TransformNet, receptive_field
from fastnst.runtime import available_memory, cpu_supports_bf16, cpu_supports_int8, resolve_device, resolve_precision

__all__ = [
    "DEFAULT_OVERLAP",
    "Stylizer",
    "bytes_per_pixel",
    "default_overlap",
    "load_model",
    "pixel_budget",
    "stylize_image",
    "tile_spans",
]

ImageLike = Union[Image.Image, torch.Tensor]
Progress = Callable[[int, int], None]

# px shared by neighbouring tiles of the undilated network, whose receptive field is 111 px (a reach of
# up to 56 px to one side); a dilated network's overlap grows with its receptive field (default_overlap).
DEFAULT_OVERLAP = 128
MIN_TILE = 64  # smallest tile side accepted (and the tile must exceed the overlap)
# Below this side length bf16 instance-norm statistics (over a handful of pixels at 1/4 resolution)
# get too coarse; such images are tiny, so they run in float32.
FP32_BELOW_SIDE = 32
# Peak working memory of one untiled pass per pixel for base_channels=16 (peak RSS above the loaded
# model's), plus headroom. bf16: ~215 B/px (scripts/bench_stylize.py at 3840x2160, AVX-512 bf16 CPU).
# On an AVX2 CPU (AMD EPYC Zen 3, 1920x1080 and 2048x2048, 1-2 threads): int8 163-201 B/px with its float
# layers in float32 (less with them in bf16: its activations between convolutions are u8), float32
# 220-320, and bf16 ~950: without bf16 units oneDNN converts every operand to float32 and back.
BYTES_PER_PIXEL_16 = {torch.bfloat16: 250, torch.float16: 250, torch.int8: 250, torch.float32: 500}
BYTES_PER_PIXEL_EMULATED_BF16_16 = 1100
MEMORY_FRACTION = 0.5  # of the memory currently available
# ...and never more than this for one forward pass, however much is free: the peak memory of a large
# image then follows the tile, not the image (an 8000x8000 photo peaks at ~2.3 GB in all, the input
# and output images included: scripts/bench_large_image.py), and ~1500 px tiles are faster than huge ones (they stay in cache and
# fault in fewer fresh pages). The statistics pass, which runs before the output exists, may take
# twice as much, so images up to ~4.3 megapixels (bf16, int8; ~2.1 in float32) get exact whole-image statistics.
MAX_PASS_BYTES = 1 << 29
STATS_PASS_FACTOR = 2


# ----------------------------------------------------------------------------------------------
# Memory budget and tiling
# ----------------------------------------------------------------------------------------------


def bytes_per_pixel(device: torch.device, dtype: torch.dtype, base_channels: int = 16) -> float:
    """Peak working memory of one forward pass per pixel (``dtype`` torch.int8: the int8 network)."""
    per_pixel = BYTES_PER_PIXEL_16.get(dtype, BYTES_PER_PIXEL_16[torch.float32])
    if dtype == torch.bfloat16 and device.type == "cpu" and not cpu_supports_bf16():
        per_pixel = BYTES_PER_PIXEL_EMULATED_BF16_16
    return per_pixel * base_channels / 16


def pixel_budget(device: torch.device, dtype: torch.dtype, base_channels: int = 16, max_bytes: int = MAX_PASS_BYTES) -> int:
    """How many pixels one forward pass may process at once: half the free memory, at most ``max_bytes``."""
    usable = min(available_memory(device) * MEMORY_FRACTION, max_bytes)
    return max(4 * MIN_TILE * MIN_TILE, int(usable / bytes_per_pixel(device, dtype, base_channels)))


def tile_spans(length: int, tile: int, overlap: int) -> list[tuple[int, int]]:
    """Start/end of overlapping tiles covering ``[0, length)``, each at most ``tile`` long.

    As few tiles as cover the length, spread evenly: equal steps, so that no tile repeats most of its
    neighbour's work (a 3000 px side in 1464 px tiles is 3 x 1088 px, not 3 x 1464). Starts are
    multiples of 4 so every tile samples the same stride-4 grid as the whole image (the network
    downsamples twice by 2); consecutive tiles share at least ``overlap`` pixels.
    """
    if length <= tile:
        return [(0, length)]
    room = max(4, (tile - overlap) // 4 * 4)  # the longest step that keeps a tile within `tile`
    n = math.ceil((length - overlap) / room)
    step = math.ceil((length - overlap) / n / 4) * 4  # <= room
    spans = [(i * step, min(i * step + step + overlap, length)) for i in range(n)]
    spans[-1] = (spans[-1][0], length)
    return spans


def _blend_weights(length: int, spans: list[tuple[int, int]], overlap: int, device: torch.device) -> list[torch.Tensor]:
    """Each span's 1-D weights (see _edge_weights), divided by their sum over all spans at each pixel.

    A tile's 2-D weight is the product of its row and column weights, so the weights of a grid of
    tiles sum to one everywhere: no image-sized weight map is needed to normalise the blend.
    """
    total = torch.zeros(length, device=device)
    weights = []
    for a, b in spans:
        w = _edge_weights(b - a, a > 0, b < length, overlap, device)
        total[a:b] += w
        weights.append(w)
    return [w / total[a:b] for w, (a, b) in zip(weights, spans)]


def _edge_weights(n: int, low_inner: bool, high_inner: bool, overlap: int, device: torch.device) -> torch.Tensor:
    """1-D blending weights of a tile: zero on the outer quarter of an inner overlap, a linear ramp
    over its middle half, one elsewhere. Tiles' weights sum to one across an overlap of ``overlap``."""
    d = torch.arange(n, device=device, dtype=torch.float32) + 0.5
    skip = overlap // 4
    ramp = max(1, overlap - 2 * skip)
    w = torch.ones(n, device=device)
    if low_inner:
        w = torch.minimum(w, ((d - skip) / ramp).clamp(0, 1))
    if high_inner:
        w = torch.minimum(w, ((n - d - skip) / ramp).clamp(0, 1))
    return w


def default_overlap(config: TransformerConfig) -> int:
    """Tile overlap for a network: DEFAULT_OVERLAP scaled by how much its dilations widen the receptive
    field (a multiple of 4). The blend gives no weight to the outer quarter of an overlap and ramps over
    its middle half; scaling keeps the same share of the receptive field inside those bands, so a
    dilated network's tiles blend as seamlessly as the undilated network's (191 px field: 224 px)."""
    undilated = TransformerConfig(base_channels=config.base_channels, num_residual_blocks=config.num_residual_blocks)
    return math.ceil(DEFAULT_OVERLAP * receptive_field(config) / receptive_field(undilated) / 4) * 4


def check_tile(tile: int, overlap: int | None) -> None:
    """The one rule for a tile size: at least MIN_TILE and larger than the overlap (None: the
    undilated network's DEFAULT_OVERLAP, the smallest default; the model's own is checked when it runs)."""
    overlap = DEFAULT_OVERLAP if overlap is None else overlap
    if tile < MIN_TILE or tile <= overlap:
        raise ValueError(f"tile size {tile} too small: it must be at least {MIN_TILE} and larger than the overlap ({overlap})")


def check_overlap(overlap: int | None) -> None:
    """None is valid: the model's default_overlap."""
    if overlap is not None and overlap < 0:
        raise ValueError(f"overlap must be >= 0, got {overlap}")


def _as_float(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """An image as float32 in [0, 1] on ``device`` (uint8 images are scaled from 0..255)."""
    if x.dtype == torch.uint8:
        return x.to(device).float().div_(255.0)
    return x.to(device, torch.float32)


def _resize_to_pixels(x: torch.Tensor, max_pixels: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    if h * w <= max_pixels:
        return x
    scale = math.sqrt(max_pixels / (h * w))
    size = (max(8, round(h * scale)), max(8, round(w * scale)))
    if x.dtype == torch.uint8:  # resized as 8 bits (no float copy of the whole image)
        return F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
    return F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False).clamp_(0, 1)


# ----------------------------------------------------------------------------------------------
# The stylizer
# ----------------------------------------------------------------------------------------------


class Stylizer:
    """A style model prepared for fast inference on one device at one precision.

    ``precision="auto"`` on a CPU takes the path fastnst.cpu_features.plan_auto finds fastest there:
    int8 (fastnst.infer.backends.int8) where oneDNN runs a fast, exact int8 convolution (measured once per CPU,
    caps and torch version) and the model passes the quality guard (int8 output at least AUTO_MIN_PSNR
    dB from float32 on a guard image; ``int8_psnr`` holds the measurement), else bf16 where the CPU has
    bf16 units, else fp32 (fastnst.runtime.resolve_precision). ``dtype`` is torch.int8 for the int8
    network; ``reason`` says in one line why this path was taken.
    """

    def __init__(self, model: StyleModel | TransformNet, device: str | torch.device = "auto", precision: str = "auto") -> None:
        if isinstance(model, TransformNet):
            model = StyleModel(net=model.eval(), config=model.config, info={})
        self.model = model
        self.device = resolve_device(device) if isinstance(device, str) else torch.device(device)
        self.precision = precision
        self.dtype = resolve_precision(precision, self.device)
        self.int8_psnr: float | None = None
        self.plan = build_plan(model.net)  # one plan for every backend built below
        self.net: Backend
        self.reason = f"precision={precision} on {self.device.type}"
        auto_cpu = precision == "auto" and self.device.type == "cpu"
        if auto_cpu:
            self.reason = _auto_reason()
        if self.dtype == torch.int8 or (auto_cpu and cpu_supports_int8()):
            int8 = Int8Net(self.plan)
            if self.dtype != torch.int8:  # auto: int8 only where the guard holds for this model
                self.int8_psnr = guard_psnr(model.net, int8)
                passed = self.int8_psnr >= AUTO_MIN_PSNR
                if passed:
                    self.dtype = torch.int8
                self.reason += (f"; model guard {self.int8_psnr:.1f} dB {'>=' if passed else '<'} {AUTO_MIN_PSNR:g} dB"
                                f" -> {'int8' if passed else str(self.dtype).removeprefix('torch.')}")
            if self.dtype == torch.int8:
                self.net = int8
        if self.dtype != torch.int8:
            self.net = FusedNet(self.plan, self.dtype, self.device)
        self._net_fp32: Backend | None = self.net if self.dtype == torch.float32 else None

    @property
    def style(self) -> str:
        return self.model.style

    @property
    def path_name(self) -> str:
        """The inference path this stylizer runs, e.g. ``int8 (bf16 float layers)`` or ``bfloat16``: outputs (and so
        quality scores) differ slightly between paths, and ``precision=auto`` picks one per machine."""
        path = str(self.dtype).removeprefix("torch.")
        return f"{path} ({self.net.variant.describe()})" if self.dtype == torch.int8 else path

    @property
    def overlap(self) -> int:
        """The tile overlap used when none is given: fitted to the network's receptive field."""
        return default_overlap(self.model.config)

    def __repr__(self) -> str:
        return f"Stylizer(style={self.style!r}, device={self.device}, dtype={self.dtype}, config={self.model.config})"

    def check_tiling(self, tile: int | None, overlap: int | None) -> None:
        """The command line's rule for ``tile`` and ``overlap`` with this model (ValueError, starting
        with "tile size" or "overlap", otherwise): an overlap at least the network's receptive field
        (narrower overlaps leave a visible seam grid: 0 px gave 16-27 dB against the untiled result,
        the receptive field ~74 dB), and a tile larger than the overlap actually used (the model's
        own, 224 px for a dilated network, when none is given). stylize_tensor itself accepts any
        overlap >= 0."""
        check_overlap(overlap)
        field = receptive_field(self.model.config)
        if overlap is not None and overlap < field:
            raise ValueError(f"overlap {overlap} is under the model's receptive field ({field} px): tiles would show "
                             f"seams; use at least {field} (the default, {self.overlap}, fits the model)")
        if tile:
            check_tile(tile, self.overlap if overlap is None else overlap)

    def backend_for(self, h: int, w: int) -> Backend:
        """The backend that stylizes an h x w image: this stylizer's, or float32 for tiny images."""
        if min(h, w) >= FP32_BELOW_SIDE:
            return self.net
        if self._net_fp32 is None:
            self._net_fp32 = FusedNet(self.plan, torch.float32, self.device)
        return self._net_fp32

    def pixel_budget(self) -> int:
        return pixel_budget(self.device, self.dtype, self.model.config.base_channels)

    @torch.inference_mode()
    def stylize_tensor(
        self,
        x: torch.Tensor,
        *,
        tile: int | None = None,
        overlap: int | None = None,
        preserve_color: bool = False,
        strength: float = 1.0,
        progress: Progress | None = None,
    ) -> torch.Tensor:
        """(N, 3, H, W) float in [0, 1] (or uint8 in 0..255) -> stylized (N, 3, H, W) float32 in [0, 1]
        on this device.

        ``tile``: None = tile only when the image exceeds the memory budget; 0 = never;
        N = tiles of at most N x N pixels (with ``overlap`` pixels shared between neighbours; None:
        :attr:`overlap`, from the network's receptive field). A large uint8 image is converted tile
        by tile (a quarter of the memory of a float copy).
        """
        check_strength(strength)
        overlap = self._overlap(overlap)
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected an (N, 3, H, W) image batch, got shape {tuple(x.shape)}")
        n, _, h, w = x.shape
        tile_size = self._tile_size(h, w, tile, overlap)
        if strength == 0.0:
            return _as_float(x, self.device)
        if tile_size is None:
            net = self.backend_for(h, w)
            if not (isinstance(net, Int8Net) and x.dtype == torch.uint8):  # int8 reads 8-bit images as they are
                x = _as_float(x, self.device)
            y = net(x).clamp_(0, 1)
            if progress is not None:
                progress(1, 1)
        else:
            tiled = [self._stylize_tiled(x[i : i + 1], tile_size, overlap, progress) for i in range(n)]
            y = tiled[0] if n == 1 else torch.cat(tiled)  # no copy of a lone (large) image
        if preserve_color or strength < 1.0:
            x = _as_float(x, self.device)
        if preserve_color:
            y = preserve_color_fn(y, x)
        return blend(x, y, strength)

    def _overlap(self, overlap: int | None) -> int:
        """A caller's overlap, checked, or the model's own (:attr:`overlap`) for None."""
        check_overlap(overlap)
        return self.overlap if overlap is None else overlap

    def _tile_size(self, h: int, w: int, tile: int | None, overlap: int) -> int | None:
        if tile == 0:
            return None
        if tile is None:
            budget = self.pixel_budget()
            if h * w <= budget:
                return None
            tile = max(MIN_TILE, 2 * overlap, int(math.sqrt(budget)) // 4 * 4)
        check_tile(tile, overlap)
        return None if max(h, w) <= tile else tile

    def norm_stats(self, x: torch.Tensor, max_pixels: int | None = None) -> NormStats:
        """Instance-norm statistics of one image (1, 3, H, W): at full resolution if it fits in
        ``max_pixels`` (default: the memory budget), else from a copy downscaled to fit."""
        if max_pixels is None:
            max_pixels = pixel_budget(self.device, self.dtype, self.model.config.base_channels,
                                      STATS_PASS_FACTOR * MAX_PASS_BYTES)
        src = _as_float(_resize_to_pixels(x, max_pixels), self.device)
        _, stats = self.backend_for(*src.shape[-2:]).record_stats(src)
        return stats

    def _stylize_tiled(self, x: torch.Tensor, tile: int, overlap: int, progress: Progress | None) -> torch.Tensor:
        _, _, h, w = x.shape
        rows, cols = tile_spans(h, tile, overlap), tile_spans(w, tile, overlap)
        total, done = len(rows) * len(cols) + 1, 0
        stats = self.norm_stats(x)
        done += 1
        if progress is not None:
            progress(done, total)
        out = torch.zeros(1, 3, h, w, device=self.device)
        row_weights = _blend_weights(h, rows, overlap, self.device)
        col_weights = _blend_weights(w, cols, overlap, self.device)
        for (y0, y1), wy in zip(rows, row_weights):
            for (x0, x1), wx in zip(cols, col_weights):
                piece = _as_float(x[..., y0:y1, x0:x1], self.device)
                t = self.backend_for(y1 - y0, x1 - x0)(piece, stats=stats)
                out[..., y0:y1, x0:x1].addcmul_(t, wy[:, None] * wx[None, :])
                del t
                done += 1
                if progress is not None:
                    progress(done, total)
        return out.clamp_(0, 1)

    @torch.inference_mode()
    def stylize_pil(self, image: Image.Image, *, tile: int | None = None, overlap: int | None = None,
                    preserve_color: bool = False, strength: float = 1.0, progress: Progress | None = None) -> Image.Image:
        """Stylize a PIL image (any mode) to an 8-bit RGB PIL image.

        With the int8 network, an 8-bit RGB image that needs no tiling, colour preservation or blending
        goes in and comes out as u8 with no float copy (fastnst.infer.backends.int8.Int8Net.stylize_u8): the
        conversions cost ~1 ms instead of several full-image float passes.
        """
        w, h = image.size
        overlap = self._overlap(overlap)
        plain = strength == 1.0 and not preserve_color and min(h, w) >= FP32_BELOW_SIDE
        if (isinstance(self.net, Int8Net) and plain and image.mode in ("RGB", "L", "P", "RGBA")
                and self._tile_size(h, w, tile, overlap) is None):
            rgb = image if image.mode == "RGB" else image.convert("RGB")
            u8 = torch.from_numpy(np.array(rgb))  # PIL hands numpy read-only bytes: one small copy
            out = Image.fromarray(self.net.stylize_u8(u8).numpy())
            if progress is not None:
                progress(1, 1)
            return out
        y = self.stylize_tensor(pil_to_tensor(image), tile=tile, overlap=overlap, preserve_color=preserve_color,
                                strength=strength, progress=progress)
        return tensor_to_pil(y)

    def __call__(self, image: ImageLike, **kwargs) -> ImageLike:
        return stylize_image(self, image, **kwargs)


def _auto_reason() -> str:
    """One line: why precision="auto" takes the path it takes on this CPU (before the model's guard)."""
    from fastnst.runtime import auto_plan

    try:
        return auto_plan().reason
    except Exception as exc:  # pragma: no cover - the plan never fails on a supported CPU
        return f"no CPU plan ({type(exc).__name__}: {exc})"


# ----------------------------------------------------------------------------------------------
# Loading (cached) and the one-call API
# ----------------------------------------------------------------------------------------------

_CACHE: dict[tuple, Stylizer] = {}
_CACHE_LOCK = threading.Lock()
_CACHE_SIZE = 8


def load_model(name_or_path: str | os.PathLike, device: str | torch.device = "auto", precision: str = "auto") -> Stylizer:
    """Load a style model (shipped name or file path) prepared for fast inference; cached per file
    version, device and precision. Raises ModelFileError for a missing or invalid model.

    Changes no process-wide setting: the command line and the benchmarks opt in to
    :func:`fastnst.runtime.reuse_freed_memory` themselves (a long-lived process may want it too).
    """
    path = resolve_model_path(name_or_path).resolve()
    dev = resolve_device(device) if isinstance(device, str) else torch.device(device)
    try:
        st = path.stat()
        key: tuple = (str(path), st.st_mtime_ns, st.st_size, str(dev), precision)
    except OSError:
        key = ()
    with _CACHE_LOCK:
        if key and key in _CACHE:
            return _CACHE[key]
    stylizer = Stylizer(load_style_model(path, dev), dev, precision)
    if key:
        with _CACHE_LOCK:
            if len(_CACHE) >= _CACHE_SIZE:
                _CACHE.pop(next(iter(_CACHE)))
            _CACHE[key] = stylizer
    return stylizer


def as_stylizer(model, device: str | torch.device | None, precision: str | None) -> Stylizer:
    if isinstance(model, Stylizer):
        same_device = device is None or (resolve_device(device) if isinstance(device, str) else torch.device(device)) == model.device
        if same_device and (precision is None or precision == model.precision):
            return model
        model = model.model
    if isinstance(model, (str, os.PathLike)):
        return load_model(model, device or "auto", precision or "auto")
    if isinstance(model, (StyleModel, TransformNet)):
        return Stylizer(model, device or "auto", precision or "auto")
    raise TypeError(f"model must be a Stylizer, StyleModel, TransformNet, or a model name/path, got {type(model).__name__}")


def stylize_image(
    model: Stylizer | StyleModel | TransformNet | str | os.PathLike,
    image: ImageLike,
    *,
    max_size: int | None = None,
    tile: int | None = None,
    overlap: int | None = None,
    preserve_color: bool = False,
    strength: float = 1.0,
    device: str | torch.device | None = None,
    precision: str | None = None,
    progress: Progress | None = None,
) -> ImageLike:
    """Stylize a PIL image or a float image tensor in [0, 1]; returns the same kind.

    ``max_size`` shrinks the long side first (never enlarges). ``strength`` 0 returns the (resized)
    input unchanged, 1 the full style. ``preserve_color`` keeps the photo's chrominance. See
    :meth:`Stylizer.stylize_tensor` for ``tile`` / ``overlap`` (None: fitted to the model).
    ``progress(done, total)`` is called as tiles finish.
    """
    if max_size is not None and max_size < 1:
        raise ValueError(f"max_size must be a positive integer, got {max_size!r}")
    check_strength(strength)
    if isinstance(image, Image.Image):
        if max_size is not None:
            image = resize_long_side(image, max_size)
        if strength == 0.0:
            return image.copy()
        stylizer = as_stylizer(model, device, precision)
        return stylizer.stylize_pil(image, tile=tile, overlap=overlap, preserve_color=preserve_color, strength=strength,
                                    progress=progress)
    if isinstance(image, torch.Tensor):
        if not image.is_floating_point():
            raise TypeError(f"expected a float image tensor in [0, 1], got dtype {image.dtype}")
        if image.dim() not in (3, 4) or image.shape[-3] != 3:
            raise ValueError(f"expected shape (3, H, W) or (N, 3, H, W), got {tuple(image.shape)}")
        x = image if image.dim() == 4 else image.unsqueeze(0)
        if max_size is not None:
            x = resize_tensor_long_side(x, max_size)
        if strength == 0.0:
            out = x.clone()
        else:
            stylizer = as_stylizer(model, device, precision)
            out = stylizer.stylize_tensor(
                x, tile=tile, overlap=overlap, preserve_color=preserve_color, strength=strength, progress=progress
            ).to(device=image.device, dtype=image.dtype)
        return out if image.dim() == 4 else out[0]
    raise TypeError(f"image must be a PIL.Image.Image or a torch.Tensor, got {type(image).__name__}")
