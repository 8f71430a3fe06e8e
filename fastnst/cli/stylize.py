"""Command line: stylize photos and videos with a trained model.

    python -m fastnst.stylize --model starry photo.jpg                    # -> photo_starry.jpg
    python -m fastnst.stylize --model starry photo.jpg -o out.png
    python -m fastnst.stylize --model starry clip.mp4                     # -> clip_starry.mp4 (see cli/video.py)
    python -m fastnst.stylize --model my.safetensors photos/ "shots/*.png" -o styled/ --recursive
    python -m fastnst.stylize --list-models

Output rules:
* one input file and ``-o FILE`` (with an image or video extension): that file, in the format of its extension;
* otherwise each output is ``<stem><suffix><ext>`` (suffix ``_<style>`` by default), next to its input
  without ``-o``, or under the ``-o`` directory, keeping paths relative to a directory input (or to a
  glob's fixed leading directory);
* ``<ext>`` is the input's own extension when it can be written (.png .jpg .jpeg .webp), else .png;
  ``--format`` forces one; a video keeps .mp4 .m4v .mov .mkv .webm, anything else becomes .mp4;
* an input is never overwritten; an existing output is refused (reported, exit status 1) unless
  ``--overwrite`` (replace it) or ``--skip-existing`` (leave it, exit status 0).
* directories and globs leave out earlier outputs written next to their photos (``dog_starry.jpg``
  beside ``dog.jpg``, for this run's suffix or a shipped model's), listed as skipped; a file named on
  the command line is always stylized.

A bad input (unreadable, corrupt, ...) does not stop the batch: the others are written, the summary
lists it with the reason, and the exit status is 1. Exit status 2: bad arguments or model; 130: Ctrl-C
or SIGTERM (no partial file left).
"""

from __future__ import annotations

import argparse
import sys

from fastnst.cli import video as video_cli
from fastnst.cli.batch import FORMATS, Outcome, StylizeSettings, plan_jobs, run_jobs
from fastnst.infer.stylizer import DEFAULT_OVERLAP
from fastnst.runtime import INFERENCE_PRECISION_NAMES

# ----------------------------------------------------------------------------------------------
# Listing models
# ----------------------------------------------------------------------------------------------

_INFO_KEYS = [  # (key in info, label); anything missing is just left out
    ("recipe", "recipe"),
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
    from fastnst.nets.modelfile import CHECKPOINTS_DIR, ModelFileError, is_shared_network, list_shipped_models, read_model_header

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
        if config.residual_dilations:
            arch += f" (dilations {', '.join(map(str, config.residual_dilations))})"
        facts = [f"{label} {info[key]}" for key, label in _INFO_KEYS if key in info and info[key] not in (None, "")]
        known = {key for key, _ in _INFO_KEYS} | {"style", "note", "network"}
        facts += [  # whatever else the trainer recorded, if it is short
            f"{key} {value}" for key, value in info.items()
            if key not in known and isinstance(value, (str, int, float, bool)) and len(str(value)) <= 40
        ]
        paintings = info.get("paintings") if isinstance(info.get("paintings"), dict) else {}
        if paintings:  # a model of a run on several paintings: say which network it is
            facts.insert(0, f"the shared network of {len(paintings)} paintings ({', '.join(paintings)}), "
                            "a start to fine-tune a new painting from" if is_shared_network(info)
                         else f"one of {len(paintings)} paintings in one network")
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
        description="Stylize photos and videos (or a live camera) with a trained fast style-transfer model.",
        epilog="Exit status: 0 all done, 1 some inputs failed or were refused, 2 bad arguments or model.",
    )
    p.add_argument("inputs", nargs="*", metavar="INPUT", help="image or video files, directories, or glob patterns")
    p.add_argument("--model", "-m", default=DEFAULT_MODEL,
                   help=f"shipped model name (see --list-models), a .safetensors model file, or a training checkpoint (.pt) "
                        f"to try a run before it ends (default: {DEFAULT_MODEL})")
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
    p.add_argument("--overlap", type=int, metavar="N",
                   help=f"pixels shared by neighbouring tiles (default: from the model's receptive field, "
                        f"{DEFAULT_OVERLAP} for an undilated one)")
    p.add_argument("--preserve-color", action="store_true", help="keep the photo's colours, take only the stylized luminance")
    p.add_argument("--strength", type=float, default=1.0, metavar="F", help="0 = photo, 1 = full style (default 1)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="default: cuda if available")
    p.add_argument("--precision", default="auto", choices=INFERENCE_PRECISION_NAMES,
                   help="default: int8 on x86 CPUs where oneDNN's int8 convolution measures fast (a cached probe; VNNI/AMX, "
                        "and AVX2 without VNNI) when the model passes the int8 quality guard, else bf16 on CPUs with "
                        "AMX/AVX-512-BF16 (as capped by ONEDNN_MAX_CPU_ISA / ATEN_CPU_CAPABILITY) and on GPUs, else fp32 "
                        "(int8: CPU only; python -m fastnst info shows the choice)")
    p.add_argument("--batch-size", type=int, default=1, metavar="N", help="images of equal size per forward pass (GPU)")
    p.add_argument("--workers", type=int, default=2, metavar="N", help="threads decoding and saving beside the compute (0: none)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar or summary, only errors")
    video_cli.add_video_arguments(p)
    return p


def print_summary(outcome: Outcome, out=None, videos: list | None = None, notes: list | None = None) -> None:
    """The counts, time per image, a line per video or animation written (``videos``: their
    VideoResults), and the plan's notes (``notes``: (input, note) pairs)."""
    out = out or sys.stderr
    videos = videos or []
    n = len(outcome.done)
    images = n - len(videos)
    parts = [f"done {n}", f"skipped {len(outcome.skipped)}", f"failed {len(outcome.failed)}"]
    line = ", ".join(parts)
    if images:
        line += f"; {outcome.wall_seconds / images:.2f} s per image ({outcome.compute_seconds / images:.2f} s stylizing)"
    print(line, file=out)
    for result in videos:
        kind = "animation" if result.path.suffix.lower() in (".gif", ".png", ".webp") else "video"
        print(f"  {kind} {video_cli.describe(result)}", file=out)
    for src, note in notes or []:
        print(f"  note {src}: {note}", file=out)
    for src, reason in outcome.skipped:
        print(f"  skipped {src}: {reason}", file=out)
    for src, reason in outcome.failed:
        # ImageError messages already start with the file name.
        print(f"  failed {reason}" if reason.startswith(src) else f"  failed {src}: {reason}", file=out)


def _option_message(message: str) -> str:
    """A settings error with the setting named as its option: "max_size must ..." -> "--max-size must ..."."""
    for name in ("tile size", "overlap", "strength", "max_size", "max_pixels", "batch_size", "workers", "quality"):
        if message.startswith(name):
            return "--" + name.split()[0].replace("_", "-") + message[len(name.split()[0]):]
    return message


def _settings(args: argparse.Namespace) -> StylizeSettings:
    """The per-image settings from the parsed options (ValueError names the rule broken)."""
    return StylizeSettings(tile=args.tile, overlap=args.overlap, preserve_color=args.preserve_color,
                           strength=args.strength, max_size=args.max_size, max_pixels=args.max_pixels,
                           quality=args.quality, batch_size=args.batch_size, workers=args.workers)


def main(argv: list[str] | None = None) -> int:
    """The command; SIGTERM stops it as Ctrl-C does: exit status 130, no partial output left."""
    from fastnst.training.interrupt import terminate_as_interrupt

    with terminate_as_interrupt():
        try:
            return _main(argv)
        except KeyboardInterrupt:  # outside a video (a video's own is reported with the batch)
            print("interrupted (no partial output left)", file=sys.stderr)
            return 130


def _main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list_models:
        return list_models()
    inputs, output = list(args.inputs), args.output
    overwrite, skip_existing = args.overwrite, args.skip_existing
    if args.demo:
        if inputs:
            parser.error("--demo takes no inputs: it stylizes the bundled sample photos")
        from fastnst.assets import sample_image_paths

        inputs = [str(path) for path in sample_image_paths()]
        if not inputs:
            parser.error("--demo: no bundled sample photos found (scikit-image is not installed)")
        output = output or DEMO_OUTPUT
        overwrite, skip_existing = True, False  # the demo's own outputs, refreshed on every run
    if args.camera is not None and inputs:
        parser.error("--camera takes no inputs (record with -o FILE.mp4)")
    if not inputs and args.camera is None:
        parser.error("no inputs given (--demo stylizes the bundled sample photos)")
    video_cli.check_video_arguments(args, parser)
    if overwrite and skip_existing:
        parser.error("--overwrite and --skip-existing contradict each other")
    try:
        settings = _settings(args)
    except ValueError as exc:
        parser.error(_option_message(str(exc)))

    from fastnst.infer.stylizer import load_model
    from fastnst.nets.modelfile import ModelFileError
    from fastnst.runtime import reuse_freed_memory

    try:
        stylizer = load_model(args.model, args.device, args.precision)
        if stylizer.device.type == "cpu":
            reuse_freed_memory()  # the command line's opt-in to a process-wide malloc setting (see there)
    except (ModelFileError, RuntimeError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:  # the tile and overlap against this model's receptive field, before any image is read
        stylizer.check_tiling(args.tile, args.overlap)
    except ValueError as exc:
        parser.error(_option_message(str(exc)))
    if args.camera is not None:
        return video_cli.run_camera(stylizer, args)
    suffix = args.suffix if args.suffix is not None else f"_{stylizer.style}"
    try:
        from fastnst.nets.modelfile import list_shipped_models

        known = [suffix] + [f"_{path.stem}" for path in list_shipped_models()]  # earlier outputs to leave out
        plan = plan_jobs(inputs, output, suffix, args.format, args.recursive, overwrite, skip_existing, known)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    message = video_cli.check_video_outputs(args, plan.jobs)  # e.g. --preset with .webm's VP9
    if message is not None:
        print(f"error: {message}", file=sys.stderr)
        return 2

    image_jobs = [job for job in plan.jobs if not job.video and not job.animated]
    video_jobs = [job for job in plan.jobs if job.video or job.animated]  # animations go frame by frame too
    bar = None
    if not args.quiet and len(image_jobs) > 1:
        from tqdm import tqdm

        # disable=None: no bar when stderr is not a terminal (logs, pipes)
        bar = tqdm(total=len(image_jobs), unit="img", desc=f"stylizing ({stylizer.style})", file=sys.stderr, disable=None)
    try:
        outcome = run_jobs(stylizer, image_jobs, settings, progress=bar.update if bar is not None else None) if image_jobs else Outcome()
    except KeyboardInterrupt:  # the outputs being saved were finished (run_jobs waits for them); nothing partial
        if bar is not None:
            bar.close()
        print("interrupted: the outputs written are complete; the remaining inputs were not stylized", file=sys.stderr)
        return 130
    finally:
        if bar is not None:
            bar.close()
    videos = video_cli.run_video_jobs(stylizer, video_jobs, args, overwrite)  # a frame progress bar per video
    outcome.done += videos.done
    outcome.failed += videos.failed
    outcome.failed = plan.failed + outcome.failed
    outcome.skipped = plan.skipped + outcome.skipped
    if not args.quiet:
        print_summary(outcome, videos=videos.results, notes=plan.notes)
        if args.demo and outcome.done:
            print(f"stylized photos ({stylizer.style}) in {output}/", file=sys.stderr)
    elif outcome.failed:
        for src, reason in outcome.failed:
            print(reason if reason.startswith(src) else f"{src}: {reason}", file=sys.stderr)
    if videos.interrupted:
        return 130  # Ctrl-C, as a shell reports it
    return 1 if outcome.failed else 0


if __name__ == "__main__":
    sys.exit(main())
