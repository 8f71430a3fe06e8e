"""The int8 quality guard: PSNR of the int8 (and bf16) fast paths against the float32 network.

    python scripts/int8_quality.py                                   # every shipped model, default photos
    python scripts/int8_quality.py --models checkpoints/starry.safetensors --photos a.jpg b.png
    python scripts/int8_quality.py --crop docs/int8_sky_crop.jpg     # also write the README's sky crop

For every model in checkpoints/*.safetensors (whatever is shipped) and every photo (default: the
colour photos of ../shared/photos/skimage and ../shared/photos/opencv-doc, long side --size), the
output of fastnst's int8 network and of the bf16 fused network are compared with plain float32 eager
TransformNet, all clamped to [0, 1]. The guard is: int8 PSNR >= --floor (35 dB, GUARD_MIN_PSNR) for every
(model, photo); the exit status is 1 if any falls below.

``--crop`` writes a 4x nearest-neighbour zoom of a flat sky region (fp32 | bf16 | int8 side by side)
of --crop-photo stylized with the first model, so banding would show.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]

SHARED = ROOT.parent / "shared" / "photos"
DEFAULT_PHOTO_DIRS = ["skimage", "opencv-doc"]


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a.double() - b.double()) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


def default_photos() -> list[Path]:
    from fastnst.imageio import is_image_file

    out = []
    for d in DEFAULT_PHOTO_DIRS:
        out += sorted(p for p in (SHARED / d).glob("*") if is_image_file(p))
    return out


def load_photo(path: Path, size: int) -> torch.Tensor | None:
    """The photo as a (1, 3, H, W) float tensor of 8-bit values, or None if it is grayscale."""
    from PIL import Image

    from fastnst.imageio import pil_to_tensor, resize_long_side

    img = Image.open(path)
    if img.mode not in ("RGB", "RGBA", "P", "CMYK", "YCbCr"):
        return None
    return pil_to_tensor(resize_long_side(img.convert("RGB"), size))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", type=Path, default=sorted((ROOT / "checkpoints").glob("*.safetensors")))
    p.add_argument("--photos", nargs="+", type=Path, default=None)
    p.add_argument("--size", type=int, default=512, help="long side of the photos (default 512)")
    p.add_argument("--floor", type=float, default=35.0, help="minimum int8 PSNR in dB (default 35)")
    p.add_argument("--crop", type=Path, help="write the sky crop (jpg) here")
    p.add_argument("--crop-photo", type=Path, default=SHARED / "opencv-doc" / "aero3.jpg")
    p.add_argument("--crop-box", type=int, nargs=4, metavar=("X", "Y", "W", "H"), default=[16, 16, 96, 64])
    args = p.parse_args(argv)

    from fastnst.infer.backends.fused import FusedNet
    from fastnst.infer.backends.int8 import Int8Net
    from fastnst.nets.modelfile import load_style_model

    photos = args.photos or default_photos()
    print(f"{len(args.models)} models x {len(photos)} photos, long side {args.size}; "
          f"PSNR (dB) against fp32 eager TransformNet", flush=True)
    worst = math.inf
    for model_path in args.models:
        net = load_style_model(model_path).net.eval()
        int8 = Int8Net(net)
        bf16 = FusedNet(net, torch.bfloat16, "cpu")
        rows = []
        for photo in photos:
            x = load_photo(photo, args.size)
            if x is None:
                continue
            with torch.inference_mode():
                ref = net(x).clamp(0, 1)
            q8, qb = psnr(int8(x).clamp(0, 1), ref), psnr(bf16(x).clamp(0, 1), ref)
            rows.append((photo.name, q8, qb))
            print(f"  {model_path.stem:10s} {photo.parent.name + '/' + photo.name:32s} int8 {q8:5.1f}  bf16 {qb:5.1f}", flush=True)
        lo8 = min(r[1] for r in rows)
        worst = min(worst, lo8)
        print(f"{model_path.stem}: int8 min {lo8:.1f} median {sorted(r[1] for r in rows)[len(rows) // 2]:.1f}; "
              f"bf16 min {min(r[2] for r in rows):.1f}", flush=True)
    if args.crop:
        write_crop(args, load_style_model(args.models[0]).net.eval())
    ok = worst >= args.floor
    print(f"guard: worst int8 PSNR {worst:.1f} dB {'>=' if ok else '<'} {args.floor} dB -> {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


def write_crop(args: argparse.Namespace, net) -> None:
    from PIL import Image, ImageDraw

    from fastnst.imageio import tensor_to_pil
    from fastnst.infer.backends.fused import FusedNet
    from fastnst.infer.backends.int8 import Int8Net

    x = load_photo(args.crop_photo, args.size)
    with torch.inference_mode():
        outs = {"fp32": net(x), "bf16": FusedNet(net, torch.bfloat16, "cpu")(x),
                "int8": Int8Net(net)(x)}
    cx, cy, cw, ch = args.crop_box
    zoom, gap, label = 4, 8, 14
    sheet = Image.new("RGB", (3 * cw * zoom + 2 * gap, ch * zoom + label), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (name, y) in enumerate(outs.items()):
        crop = tensor_to_pil(y.clamp(0, 1)).crop((cx, cy, cx + cw, cy + ch)).resize((cw * zoom, ch * zoom), Image.NEAREST)
        sheet.paste(crop, (i * (cw * zoom + gap), label))
        draw.text((i * (cw * zoom + gap) + 2, 1), name, fill="black")
    args.crop.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.crop, quality=90)
    print(f"wrote {args.crop} ({args.crop_photo.name}, box {args.crop_box}, {zoom}x)")


if __name__ == "__main__":
    sys.exit(main())
