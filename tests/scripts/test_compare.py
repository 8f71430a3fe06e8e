"""scripts/compare.py --quick: both tables, the JSON, the plot and the grids, from tiny model files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from fastnst.nets.modelfile import save_style_model
from fastnst.nets.transform_net import TransformerConfig, TransformNet
from tests.support import load_script, noise_photo

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "compare.py"

# What training records in a model file's info (see fastnst.training.provenance.model_info), in part.
INFO = {
    "style": "starry", "style_image": "starry_night.jpg", "style_image_size": 48,
    "content_weight": 1.0, "style_weight": 10.0, "tv_weight": 0.0,
    "content_layers": {"relu2_2": 1.0}, "style_layers": {"relu1_1": 1.0, "relu2_1": 1.0},
    "vgg_weights": "random", "vgg_pooling": "max",
    "image_size": 256,  # the training crop size: must not be taken for the style size
}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture()
def setup(tmp_path):
    photos = tmp_path / "photos"
    noise_photo(photos / "a.png", 40, 30, seed=0)
    noise_photo(photos / "b.jpg", 30, 40, seed=1)
    models = []
    for seed, name in enumerate(("no-warmup", "warmup")):
        torch.manual_seed(seed)
        net = TransformNet(TransformerConfig(base_channels=4, num_residual_blocks=1))
        models.append(f"{name}={save_style_model(tmp_path / f'{name}.safetensors', net, INFO)}")
    return photos, models


def test_compare_runs_as_a_script_and_lists_its_options():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "--content-dir" in proc.stdout and "--quick" in proc.stdout


def test_quick_run_produces_both_tables_json_plot_and_grids(tmp_path, setup, capsys):
    photos, models = setup
    out = tmp_path / "out"
    compare = load_script("compare")
    code = compare.main(["--content-dir", str(photos), "--model", models[0], "--model", models[1], "--quick",
                         "--out-dir", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    stdout = captured.out
    assert "Table 1. Losses" in stdout and "Table 2. Runtime" in stdout
    for row in ("Gatys L-BFGS, 2 steps", "Gatys L-BFGS, 6 steps", "transform net: no-warmup", "transform net: warmup"):
        assert f"| {row} |" in stdout
    assert "| 40x30 |" in stdout and "| 48 |" in stdout

    report = json.loads((out / "compare.json").read_text())
    # The loss settings came from the model files' info.
    assert report["settings"]["style_weight"] == 10.0 and report["settings"]["vgg"] == "random"
    assert report["settings"]["style_layers"] == {"relu1_1": 1.0, "relu2_1": 1.0}
    assert report["settings"]["style_image"] == "starry" and report["settings"]["style_size"] == 48
    methods = [r["method"] for r in report["table1_losses"]]
    assert len(methods) == 5
    gatys = [r["total"] for r in report["table1_losses"][:3]]
    # The scale-free distances sit beside the raw losses: for the final Gatys row and each network.
    scored = [r["method"] for r in report["table1_losses"] if "style_distance" in r]
    assert scored == ["Gatys L-BFGS, 6 steps", "transform net: no-warmup", "transform net: warmup"]
    assert all(0 < r["style_distance"] and r["content_distance"] >= 0 for r in report["table1_losses"] if "style_distance" in r)
    assert "| style distance | content distance |" in stdout
    assert gatys[2] <= gatys[1] <= gatys[0]  # more steps never report a worse best image
    assert [r["size"] for r in report["table2_runtime"]] == ["32", "48", "40x30"]
    for row in report["table2_runtime"]:
        assert row["gatys_seconds_per_step"] > 0 and set(row["net_seconds"]) == {"no-warmup", "warmup"}
    assert set(report["photos"]) == {"a", "b"}
    for name in ("loss_curves.png", "grid.png", "grids/a.png", "grids/b.png", "compare.md", "images/a_gatys.png"):
        assert (out / name).is_file(), name
    assert Image.open(out / "loss_curves.png").size[0] > 200


def test_bad_photo_is_skipped_and_reported(tmp_path, setup, capsys):
    photos, models = setup
    (photos / "c_broken.png").write_bytes(b"not a png")
    compare = load_script("compare")
    code = compare.main(["--content-dir", str(photos), "--model", models[0], "--quick", "--max-photos", "3",
                         "--no-runtime", "--out-dir", str(tmp_path / "out")])
    assert code == 1
    captured = capsys.readouterr()
    assert "Table 1. Losses" in captured.out
    assert "c_broken.png" in captured.err and "1 photo(s) failed" in captured.err
    report = json.loads((tmp_path / "out" / "compare.json").read_text())
    assert set(report["photos"]) == {"a", "b"} and len(report["failed"]) == 1


def test_bad_model_file_is_a_clear_error(tmp_path, setup, capsys):
    photos, _ = setup
    bogus = tmp_path / "bogus.safetensors"
    bogus.write_bytes(b"\x00" * 16)
    compare = load_script("compare")
    code = compare.main(["--content-dir", str(photos), "--model", str(bogus), "--quick",
                         "--out-dir", str(tmp_path / "out")])
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bogus) in err[0]
    assert not (tmp_path / "out").exists()


def test_reuse_gatys_takes_the_earlier_runs_and_refuses_other_settings(tmp_path, setup, capsys, monkeypatch):
    photos, models = setup
    compare = load_script("compare")
    first, second = tmp_path / "first", tmp_path / "second"
    base = ["--content-dir", str(photos), "--quick", "--no-runtime"]
    assert compare.main([*base, "--model", models[0], "--out-dir", str(first)]) == 0
    earlier = json.loads((first / "compare.json").read_text())

    def no_gatys(*args, **kwargs):
        raise AssertionError("Gatys optimised again")

    monkeypatch.setattr(compare, "optimize_image", no_gatys)
    assert compare.main([*base, "--model", models[1], "--out-dir", str(second), "--reuse-gatys", str(first)]) == 0
    report = json.loads((second / "compare.json").read_text())
    for stem in ("a", "b"):
        assert report["photos"][stem]["gatys"] == earlier["photos"][stem]["gatys"]
        assert set(report["photos"][stem]["nets"]) == {"warmup"}
    assert (second / "grids" / "a.png").is_file()

    capsys.readouterr()
    code = compare.main([*base, "--model", models[1], "--out-dir", str(tmp_path / "third"), "--reuse-gatys",
                         str(first), "--style-weight", "3"])
    assert code != 0
    err = capsys.readouterr().err
    assert "style_weight" in err and "compare.json" in err
