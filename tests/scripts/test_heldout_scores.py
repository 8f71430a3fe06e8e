"""scripts/heldout_scores.py: the border score, and the Gatys runs it makes for the model cards."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.support import load_script


def test_a_painted_frame_raises_the_border_score():
    script = load_script("heldout_scores")
    flat = torch.full((1, 3, 64, 64), 0.5)
    framed = flat.clone()
    framed[..., :6, :] = framed[..., -6:, :] = framed[..., :, :6] = framed[..., :, -6:] = 0.0
    assert script.border_score(flat) == 0.0
    # Each side: 6 px of black against a band whose ends cross the two neighbouring sides' black.
    assert abs(script.border_score(framed) - 0.5 * 255 * (64 - 12) / 64) < 1e-3


def test_gatys_runs_once_a_photo_and_keeps_what_is_there(tmp_path, monkeypatch):
    script = load_script("heldout_scores")
    seen = []
    monkeypatch.setattr(script.subprocess, "run", lambda cmd, check: seen.append(cmd))
    (tmp_path / "starry").mkdir()
    (tmp_path / "starry" / "dog.png").write_bytes(b"made before")
    photos = [Path("/p/darknet/dog.jpg"), Path("/p/opencv-doc/fruits.jpg")]
    script.run_gatys(photos, Path("/s/starry.jpg"), tmp_path / "starry", 300)
    assert len(seen) == 1  # dog.png is kept
    cmd = seen[0]
    assert cmd[1:3] == ["-m", "fastnst.gatys"] and cmd[cmd.index("--content") + 1] == "/p/opencv-doc/fruits.jpg"
    assert cmd[cmd.index("-o") + 1] == str(tmp_path / "starry" / "fruits.png")
    assert cmd[cmd.index("--steps") + 1] == "300" and cmd[cmd.index("--size") + 1] == "512"


def test_gatys_images_come_from_one_place(tmp_path, capsys):
    script = load_script("heldout_scores")
    with pytest.raises(SystemExit) as exit_info:
        script.main(["--photos-root", str(tmp_path), "--gatys", str(tmp_path), "--gatys-steps", "300"])
    assert exit_info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err
