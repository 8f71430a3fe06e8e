"""The models in checkpoints/: present, small, self-describing, and they really stylize (README's demo command)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from fastnst.imageio import load_image
from fastnst.infer.stylizer import stylize_image
from fastnst.nets.modelfile import CHECKPOINTS_DIR, load_style_model

pytestmark = pytest.mark.usefixtures("default_malloc")

SHIPPED = ("starry", "scream", "great_wave", "kandinsky")


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_is_small_and_describes_its_training(name):
    path = CHECKPOINTS_DIR / f"{name}.safetensors"
    assert path.is_file() and path.stat().st_size < 5 * 2**20
    model = load_style_model(path)
    assert model.style == name and model.config.base_channels == 16  # the architecture the speed target is met with
    info = model.info
    for key in ("steps", "warmup_steps", "style_weight", "content_weight", "tv_weight", "images_seen", "wall_time_s"):
        assert key in info, key
    # A fine-tune (init_from) starts from a trained model of the same style; the card gives the chain.
    assert info["data"] == "folder" and (info["steps"] >= 500 or (info.get("init_from") and info["steps"] >= 200))


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_restyles_a_photo_and_keeps_its_layout(name, sample_photo_paths):
    # A bundled photo (it was among the training photos): this checks behaviour, not generalisation; the
    # model card measures quality on held-out photos.
    photo = load_image(next(p for p in sample_photo_paths if p.name == "coffee.png"), max_size=160)
    out = stylize_image(name, photo).clamp(0, 1)
    assert out.shape == photo.shape
    assert float((out - photo).abs().mean()) > 0.05  # visibly restyled
    assert float(out.std()) > 0.05  # not a flat colour
    # Layout kept: the output's luminance correlates with the photo's.
    lum = lambda t: (0.299 * t[:, 0] + 0.587 * t[:, 1] + 0.114 * t[:, 2]).flatten()  # noqa: E731
    assert float(torch.corrcoef(torch.stack([lum(out), lum(photo)]))[0, 1]) > 0.3


def test_readme_demo_command(tmp_path, sample_photo_paths):
    # `python -m fastnst.stylize --demo`, as in the README (here into tmp_path, and small for speed).
    env = {**os.environ, "FASTNST_KEEP_FREED_MEMORY": "1"}
    proc = subprocess.run([sys.executable, "-m", "fastnst.stylize", "--demo", "-o", str(tmp_path / "demo"),
                           "--max-size", "96"], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(list((tmp_path / "demo").iterdir())) == len(sample_photo_paths)
    assert "starry" in proc.stderr and f"done {len(sample_photo_paths)}" in proc.stderr
