"""Helpers shared by the tests: tiny photos, photo folders and COCO sets, random style networks, configs."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fastnst.nets.transform_net import TransformerConfig, TransformNet

ROOT = Path(__file__).resolve().parents[1]


def make_photo(path: Path, width: int = 48, height: int = 40, seed: int = 0) -> Path:
    """A small smooth colour image with some texture (not constant, so losses are meaningful)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(width, height)
    base = np.stack([np.sin(6 * x + seed), np.cos(5 * y - seed), np.sin(4 * (x + y) + 2 * seed)], axis=-1)
    noise = rng.normal(0, 0.15, size=(height, width, 3))
    pixels = np.clip((base * 0.4 + 0.5 + noise) * 255, 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def make_photo_folder(root: Path, count: int = 8) -> Path:
    for i in range(count):
        sub = root / "a" if i % 2 else root / "b" / "nested"  # recursive listing is part of the contract
        make_photo(sub / f"photo_{i}.png", 40 + 4 * i, 36 + 2 * i, seed=i)
    return root


def make_coco(root: Path, split: str = "train2017", count: int = 4, kind: str = "instances") -> Path:
    """A COCO-format data set: <root>/<split>/*.jpg and <root>/annotations/<kind>_<split>.json."""
    images = []
    for i in range(count):
        name = f"{i:012d}.jpg"
        make_photo(root / split / name, 50, 40, seed=10 + i)
        images.append({"id": i + 1, "file_name": name, "width": 50, "height": 40})
    annotations = {
        "info": {"description": "tiny test set"},
        "images": images,
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5], "area": 25, "iscrowd": 0}]
        if kind == "instances" else [{"id": 1, "image_id": 1, "caption": "a test"}],
    }
    if kind == "instances":  # caption files have no categories (as in the real COCO files)
        annotations["categories"] = [{"id": 1, "name": "thing", "supercategory": "thing"}]
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "annotations" / f"{kind}_{split}.json").write_text(json.dumps(annotations))
    return root


def tiny_overrides(photos: Path, out: Path, **extra: object) -> list[str]:
    """Overrides for a training run that takes well under a second per step on a CPU."""
    settings: dict[str, object] = {
        "data": "folder",
        "data.root": str(photos),
        "data.image_size": 32,
        "data.batch_size": 2,
        "data.num_workers": 0,
        "data.repeat": 1,
        "model.base_channels": 4,
        "model.num_residual_blocks": 1,
        "vgg_weights": "random",
        "style.image_size": 32,
        "style.style_weight": 1e-2,
        "style.style_scales": "[1.0]",  # a half-size level of a 32 px crop would be too small for VGG
        "precision": "fp32",
        "tensorboard": False,
        "sample_every": 0,
        "checkpoint_every": 0,
        "output_dir": str(out),
    }
    settings.update(extra)
    return [f"{k}={v}" for k, v in settings.items()]


def compose(overrides: list[str], return_hydra_config: bool = False):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from fastnst.training.config import CONFIG_DIR

    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        return hydra_compose("train", overrides=overrides, return_hydra_config=return_hydra_config)


def subprocess_env(tmp_path: Path) -> dict[str, str]:
    """Environment for `python -m fastnst.train` subprocesses: the source tree importable, temp files in tmp_path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env["TMPDIR"] = str(tmp_path)
    env.setdefault("OMP_NUM_THREADS", "1")
    env["HYDRA_FULL_ERROR"] = "0"
    return env


PYTHON = sys.executable


def random_style_net(base_channels: int = 8, blocks: int = 2, seed: int = 0,
                     norm_scale: tuple[float, float] = (0.5, 1.5), dilations: tuple[int, ...] | None = None) -> TransformNet:
    """An untrained transform net in eval mode whose instance-norm affines are perturbed, so its output is
    a structured, non-trivial image (a fresh net's unit scales and zero shifts hide folding mistakes).
    ``dilations``: the residual blocks' (the weights are the same as without: dilation has none)."""
    torch.manual_seed(seed)
    config = TransformerConfig(base_channels=base_channels, num_residual_blocks=blocks, residual_dilations=dilations)
    net = TransformNet(config).eval()
    for m in net.modules():
        if isinstance(m, torch.nn.InstanceNorm2d):
            m.weight.data.uniform_(*norm_scale)
            m.bias.data.uniform_(-0.5, 0.5)
    return net


def noise_photo(path: Path, width: int = 40, height: int = 30, seed: int = 0) -> Path:
    """A uniformly random RGB image file (any format Pillow writes, from the suffix)."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)
    return path


def icc_rgb_profile(primaries_d50: tuple, gamma: float = 2.2, description: str = "test RGB") -> bytes:
    """A minimal ICC v2 matrix/TRC display profile: the three primaries' XYZ (D50-adapted) and one
    gamma. For images tagged with a colour space other than sRGB (no profile files ship here)."""
    import struct

    def s15(x: float) -> bytes:
        return struct.pack(">i", round(x * 65536))

    def pad(body: bytes) -> bytes:
        return body + b"\0" * (-len(body) % 4)

    def xyz(v) -> bytes:
        return b"XYZ " + b"\0" * 4 + b"".join(s15(c) for c in v)

    def curve(g: float) -> bytes:
        return b"curv" + b"\0" * 4 + struct.pack(">IH", 1, round(g * 256)) + b"\0\0"

    ascii_desc = description.encode("ascii") + b"\0"
    desc = pad(b"desc" + b"\0" * 4 + struct.pack(">I", len(ascii_desc)) + ascii_desc + b"\0" * 78)
    r, g, b = primaries_d50
    tags = [(b"desc", desc), (b"cprt", pad(b"text" + b"\0" * 4 + b"none\0")), (b"wtpt", xyz((0.9642, 1.0, 0.8249))),
            (b"rXYZ", xyz(r)), (b"gXYZ", xyz(g)), (b"bXYZ", xyz(b)),
            (b"rTRC", curve(gamma)), (b"gTRC", curve(gamma)), (b"bTRC", curve(gamma))]
    offset = 128 + 4 + 12 * len(tags)
    table, data = b"", b""
    for sig, body in tags:
        table += sig + struct.pack(">II", offset + len(data), len(body))
        data += body
    header = (struct.pack(">I", offset + len(data)) + b"lcms" + struct.pack(">I", 0x02100000) + b"mntr" + b"RGB " + b"XYZ "
              + b"\0" * 12 + b"acsp" + b"\0" * 24 + b"\0" * 4 + s15(0.9642) + s15(1.0) + s15(0.8249)
              + b"\0" * 48)  # date; platform to attributes; intent; the D50 illuminant; creator, id, reserved
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + table + data


# Display P3's primaries, adapted to the D50 white of ICC profiles.
DISPLAY_P3_D50 = ((0.5151, 0.2412, -0.0011), (0.2919, 0.6922, 0.0419), (0.1572, 0.0666, 0.7841))


def load_script(name: str):
    """A script of scripts/ (``compare``, ``gallery``, ...) imported as a module, without running its main."""
    spec = importlib.util.spec_from_file_location(f"fastnst_{name}_script", ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module

