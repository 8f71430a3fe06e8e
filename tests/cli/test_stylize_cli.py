"""`python -m fastnst.stylize`: inputs, output naming, refusals, bad files, summary, exit status."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fastnst.cli.stylize import main
from fastnst.nets import modelfile
from fastnst.nets.modelfile import save_style_model
from fastnst.nets.transform_net import TransformerConfig, TransformNet
from tests.support import random_style_net

ROOT = Path(__file__).resolve().parents[2]


pytestmark = pytest.mark.usefixtures("default_malloc")


def write_photo(path: Path, w: int, h: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx / max(w - 1, 1), yy / max(h - 1, 1), ((xx + yy) % 17) / 17.0], axis=-1)
    arr = (np.clip(base + rng.random((h, w, 3)) * 0.1, 0, 1) * 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    net = random_style_net(base_channels=8, blocks=1)
    path = tmp_path_factory.mktemp("model") / "mosaic.safetensors"
    save_style_model(path, net, {"style": "mosaic", "steps": 123, "image_size": 256})
    return path


def run(model: Path, *args: str) -> int:
    return main(["--model", str(model), "--quiet", *args])


def test_single_file_default_name_and_size(model, tmp_path):
    src = write_photo(tmp_path / "cat.png", 37, 29)
    assert run(model, str(src)) == 0
    out = tmp_path / "cat_mosaic.png"
    assert out.is_file()
    with Image.open(out) as im:
        assert im.size == (37, 29)
        assert im.convert("RGB").tobytes() != Image.open(src).convert("RGB").tobytes()


def test_single_file_to_named_output_in_its_format(model, tmp_path):
    src = write_photo(tmp_path / "a.png", 40, 30)
    assert run(model, str(src), "-o", str(tmp_path / "sub" / "b.jpg")) == 0
    with Image.open(tmp_path / "sub" / "b.jpg") as im:
        assert im.format == "JPEG" and im.size == (40, 30)


def test_directory_keeps_relative_paths_and_formats(model, tmp_path):
    write_photo(tmp_path / "in" / "one.jpg", 33, 21)
    write_photo(tmp_path / "in" / "two.bmp", 20, 18)
    write_photo(tmp_path / "in" / "deep" / "three.png", 25, 19)
    (tmp_path / "in" / "notes.txt").write_text("not an image")
    assert run(model, str(tmp_path / "in"), "-o", str(tmp_path / "out")) == 0
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*") if p.is_file()) == [
        "one_mosaic.jpg",
        "two_mosaic.png",  # .bmp cannot be written: png
    ]
    assert run(model, str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--recursive", "--skip-existing") == 0
    assert (tmp_path / "out" / "deep" / "three_mosaic.png").is_file()
    with Image.open(tmp_path / "out" / "two_mosaic.png") as im:
        assert im.size == (20, 18)


def test_glob_pattern_is_expanded_and_format_forced(model, tmp_path):
    for i in range(3):
        write_photo(tmp_path / "shots" / f"s{i}.png", 24 + i, 20, seed=i)
    write_photo(tmp_path / "shots" / "other.jpg", 20, 20)
    assert run(model, str(tmp_path / "shots" / "s*.png"), "-o", str(tmp_path / "o"), "--format", "jpg", "--suffix", "") == 0
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["s0.jpg", "s1.jpg", "s2.jpg"]


def test_existing_output_is_refused_unless_overwrite(model, tmp_path, capsys):
    src = write_photo(tmp_path / "p.png", 30, 30)
    out = tmp_path / "p_mosaic.png"
    out.write_bytes(b"precious")
    assert main(["--model", str(model), str(src)]) == 1
    assert out.read_bytes() == b"precious"
    err = capsys.readouterr().err
    assert "exists" in err and "--overwrite" in err
    assert run(model, str(src), "--skip-existing") == 0
    assert out.read_bytes() == b"precious"
    assert run(model, str(src), "--overwrite") == 0
    with Image.open(out) as im:
        assert im.size == (30, 30)


def test_an_input_is_never_overwritten(model, tmp_path, capsys):
    src = write_photo(tmp_path / "q.png", 30, 30)
    before = src.read_bytes()
    assert main(["--model", str(model), str(src), "--suffix", "", "--overwrite"]) == 1
    assert src.read_bytes() == before
    assert "would overwrite an input" in capsys.readouterr().err


def test_corrupt_file_among_good_ones(model, tmp_path, capsys):
    write_photo(tmp_path / "in" / "good1.png", 30, 20)
    (tmp_path / "in" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    write_photo(tmp_path / "in" / "good2.png", 22, 26)
    (tmp_path / "in" / "empty.png").write_bytes(b"")
    code = main(["--model", str(model), str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--workers", "2"])
    assert code == 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good1_mosaic.png", "good2_mosaic.png"]
    err = capsys.readouterr().err
    assert "done 2" in err and "failed 2" in err
    assert "broken.jpg" in err and "empty.png" in err and "empty file" in err
    assert not any(p.name.endswith(".tmp") for p in (tmp_path / "out").iterdir())


def test_missing_input_and_batches(model, tmp_path, capsys):
    a = write_photo(tmp_path / "a.png", 32, 24)
    b = write_photo(tmp_path / "b.png", 32, 24, seed=1)
    c = write_photo(tmp_path / "c.png", 20, 24, seed=2)
    code = main(["--model", str(model), str(a), str(b), str(c), str(tmp_path / "nope.png"), "-o", str(tmp_path / "o"),
                 "--batch-size", "2", "--workers", "0", "--preserve-color", "--strength", "0.7"])
    assert code == 1
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["a_mosaic.png", "b_mosaic.png", "c_mosaic.png"]
    assert "nope.png: file not found" in capsys.readouterr().err


def test_strength_zero_writes_the_photo(model, tmp_path):
    src = write_photo(tmp_path / "z.png", 27, 19)
    assert run(model, str(src), "--strength", "0") == 0
    with Image.open(src) as a, Image.open(tmp_path / "z_mosaic.png") as b:
        assert a.convert("RGB").tobytes() == b.convert("RGB").tobytes()


def test_tiled_output_matches_the_untiled_one(model, tmp_path):
    src = write_photo(tmp_path / "big.png", 300, 200)
    assert run(model, str(src), "-o", str(tmp_path / "tiled.png"), "--tile", "128", "--overlap", "48") == 0
    assert run(model, str(src), "-o", str(tmp_path / "whole.png"), "--tile", "0") == 0
    a = np.asarray(Image.open(tmp_path / "tiled.png")).astype(float)
    b = np.asarray(Image.open(tmp_path / "whole.png")).astype(float)
    assert a.shape == b.shape == (200, 300, 3)
    assert 10 * np.log10(255**2 / max(np.mean((a - b) ** 2), 1e-9)) >= 35


def test_unknown_model_is_a_one_line_error(tmp_path, capsys):
    src = write_photo(tmp_path / "x.png", 16, 16)
    assert main(["--model", "no_such_model_name", str(src)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no_such_model_name") and "\n" not in err


def test_bad_arguments_exit_2(model, tmp_path):
    src = write_photo(tmp_path / "x.png", 16, 16)
    for args in (["--strength", "1.5"], ["--tile", "10"], ["--overwrite", "--skip-existing"]):
        with pytest.raises(SystemExit) as info:
            main(["--model", str(model), str(src), *args])
        assert info.value.code == 2
    assert main(["--model", str(model), str(src), str(src), "-o", str(tmp_path / "one.png")]) == 2


def test_list_models_prints_each_model_with_its_facts(tmp_path, monkeypatch, capsys, model):
    ckpt = tmp_path / "checkpoints"
    ckpt.mkdir()
    (ckpt / "mosaic.safetensors").write_bytes(model.read_bytes())
    save_style_model(ckpt / "bare.safetensors", TransformNet(TransformerConfig(base_channels=4, num_residual_blocks=0)), {})
    dilated = TransformerConfig(base_channels=4, num_residual_blocks=2, residual_dilations=(2, 1))
    save_style_model(ckpt / "wide.safetensors", TransformNet(dilated), {"recipe": "wide", "steps": 5})
    (ckpt / "junk.safetensors").write_bytes(b"junk")
    paintings = {"olive": "vangogh_olive.jpg", "wave": "great_wave.jpg"}
    save_style_model(ckpt / "base.safetensors", TransformNet(dilated), {"recipe": "base", "paintings": paintings})
    save_style_model(ckpt / "olive.safetensors", TransformNet(dilated), {"style": "olive", "paintings": paintings})
    monkeypatch.setattr(modelfile, "CHECKPOINTS_DIR", ckpt)
    assert main(["--list-models"]) == 0
    out = capsys.readouterr().out
    assert "mosaic: style mosaic" in out and "steps 123" in out and "image size 256" in out
    assert "bare: style bare" in out  # no info at all: still listed
    assert "2 residual blocks (dilations 2, 1)" in out and "0 residual blocks\n" in out  # undilated: not said
    assert "junk: unreadable" in out
    assert "base: style base; " in out
    assert "; the shared network of 2 paintings (olive, wave), a start to fine-tune a new painting from" in out
    assert "olive: style olive; " in out and "; one of 2 paintings in one network" in out
    assert "wide: style wide; johnson2016" in out and "; recipe wide, steps 5" in out  # the recipe that made it comes first
    monkeypatch.setattr(modelfile, "CHECKPOINTS_DIR", tmp_path / "none")
    assert main(["--list-models"]) == 0
    assert "no shipped models" in capsys.readouterr().out


def test_module_entry_point(model, tmp_path):
    src = write_photo(tmp_path / "in.png", 33, 17)
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    r = subprocess.run([sys.executable, "-m", "fastnst.stylize", "--model", str(model), str(src), "-o", str(tmp_path / "out.webp")],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "done 1" in r.stderr
    with Image.open(tmp_path / "out.webp") as im:
        assert im.format == "WEBP" and im.size == (33, 17)


def test_demo_stylizes_the_bundled_photos_and_reruns(model, tmp_path, sample_photo_paths):
    out = tmp_path / "demo"
    assert main(["--demo", "--model", str(model), "-o", str(out), "--max-size", "48", "--quiet"]) == 0
    written = sorted(p.name for p in out.iterdir())
    assert written == sorted(f"{p.stem}_mosaic{p.suffix}" for p in sample_photo_paths)
    assert main(["--demo", "--model", str(model), "-o", str(out), "--max-size", "48", "--quiet"]) == 0  # refreshes


def test_demo_takes_no_inputs_and_no_inputs_points_to_demo(model, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--demo", "--model", str(model), str(tmp_path)])
    assert exc.value.code == 2
    with pytest.raises(SystemExit):
        main(["--model", str(model)])
    assert "--demo" in capsys.readouterr().err


@pytest.mark.parametrize("option", [["--overlap", "-1"], ["--workers", "-1"], ["--tile", "100", "--overlap", "100"]])
def test_negative_overlap_and_workers_are_refused(model, tmp_path, option, capsys):
    src = write_photo(tmp_path / "a.png", 20, 20)
    with pytest.raises(SystemExit) as exited:
        run(model, str(src), *option)
    assert exited.value.code == 2
    assert option[0] in capsys.readouterr().err
    assert not (tmp_path / "a_mosaic.png").exists()


def test_a_folder_stylized_again_leaves_its_earlier_outputs_alone(model, tmp_path, capsys):
    write_photo(tmp_path / "in" / "dog.png", 24, 20)
    assert run(model, str(tmp_path / "in")) == 0
    assert (tmp_path / "in" / "dog_mosaic.png").is_file()
    assert main(["--model", str(model), str(tmp_path / "in"), "--overwrite"]) == 0
    assert sorted(p.name for p in (tmp_path / "in").iterdir()) == ["dog.png", "dog_mosaic.png"]
    assert "earlier output" in capsys.readouterr().err
    # Named explicitly, such a file is still stylized.
    assert run(model, str(tmp_path / "in" / "dog_mosaic.png")) == 0
    assert (tmp_path / "in" / "dog_mosaic_mosaic.png").is_file()


def test_overwrite_input_hint_fits_the_command(model, tmp_path, capsys):
    src = write_photo(tmp_path / "in" / "a.png", 20, 20)
    assert main(["--model", str(model), str(src), "-o", str(src)]) == 1
    err = capsys.readouterr().err
    assert "would overwrite an input" in err and "use -o" not in err and "another -o" in err
    assert main(["--model", str(model), str(src), "--suffix", ""]) == 1
    assert "use -o or a --suffix" in capsys.readouterr().err


def test_sigterm_during_a_batch_exits_130_and_leaves_no_temporary_file(model, tmp_path, monkeypatch, capsys):
    """SIGTERM (kill, timeout, docker stop) stops the command as Ctrl-C does; the images saved so far
    stay, a save under way is not left as a hidden temporary file."""
    import signal

    from fastnst.cli import batch

    for i in range(6):
        write_photo(tmp_path / "in" / f"p{i}.png", 40, 30, seed=i)
    real_save, saves = batch._save, []

    def save_then_terminate(tensor, job, quality):
        saves.append(job)
        real_save(tensor, job, quality)
        if len(saves) == 2:
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(batch, "_save", save_then_terminate)
    # Should the command not handle SIGTERM, this keeps it from ending the test run itself.
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        status = run(model, str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--workers", "0")
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert status == 130
    assert "interrupted: the outputs written are complete" in capsys.readouterr().err
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written and all(not name.startswith(".") for name in written)
    assert len(written) < 6


def test_output_named_with_a_media_extension_fastnst_cannot_write_is_refused(model, tmp_path, capsys):
    src = write_photo(tmp_path / "in.png", 20, 16)
    assert run(model, str(src), "-o", str(tmp_path / "out.ts")) == 2
    assert "-o " + str(tmp_path / "out.ts") + ": cannot write .ts files" in capsys.readouterr().err
    assert not (tmp_path / "out.ts").exists()


def test_an_overlap_under_the_receptive_field_is_refused_before_any_image(model, tmp_path, capsys):
    # The test model's receptive field is 47 px; --overlap 0 left a dark seam grid (16-27 dB).
    src = write_photo(tmp_path / "big.png", 300, 200)
    with pytest.raises(SystemExit) as exited:
        run(model, str(src), "--tile", "64", "--overlap", "0")
    assert exited.value.code == 2
    assert "--overlap 0 is under the model's receptive field (47 px)" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.png"]


def test_a_tile_is_checked_against_the_models_own_overlap(tmp_path, capsys):
    # A dilated network's default overlap is 224 px: a 130 px tile passed the model-free check
    # (against 128) and then failed every image.
    net = random_style_net(base_channels=4, blocks=5, dilations=(1, 2, 4, 2, 1))
    dilated = save_style_model(tmp_path / "dilated.safetensors", net, {"style": "wide"})
    src = write_photo(tmp_path / "in" / "big.png", 300, 200)
    with pytest.raises(SystemExit) as exited:
        run(dilated, str(src), "--tile", "130")
    assert exited.value.code == 2
    assert "--tile size 130 too small: it must be at least 64 and larger than the overlap (224)" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "in").iterdir()) == ["big.png"]
    assert run(dilated, str(src), "--tile", "256") == 0 and (tmp_path / "in" / "big_wide.png").is_file()


# Ctrl-C or SIGTERM while a batch runs: the signal is sent from inside run_jobs, in a child process (a
# SIGTERM that is not handled ends the process it reaches).
_INTERRUPTED_BATCH = """
import os, signal, sys, time
import fastnst.cli.stylize as cli
# Ctrl-C as in a terminal, even when the tests run as a background job (which starts with SIGINT ignored).
signal.signal(signal.SIGINT, signal.default_int_handler)
def run_jobs(*args, **kwargs):
    os.kill(os.getpid(), getattr(signal, sys.argv[1]))
    time.sleep(30)
cli.run_jobs = run_jobs
sys.exit(cli.main(sys.argv[2:]))
"""


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_an_interrupted_batch_exits_130_with_one_line(model, tmp_path, sig):
    src = write_photo(tmp_path / "a.png", 20, 20)
    env = dict(os.environ, PYTHONPATH=str(ROOT), FASTNST_KEEP_FREED_MEMORY="0")
    proc = subprocess.run([sys.executable, "-c", _INTERRUPTED_BATCH, sig, "--model", str(model), str(src), "-q"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 130, proc.stderr[-2000:]
    assert proc.stderr.strip() == "interrupted: the outputs written are complete; the remaining inputs were not stylized"


def test_a_full_disk_names_the_output_that_could_not_be_written(model, tmp_path, monkeypatch, capsys):
    import fastnst.cli.batch

    def disk_full(image, path, **options):
        raise OSError(28, "No space left on device")  # as a write() reports it: no file name

    monkeypatch.setattr(fastnst.cli.batch, "save_image", disk_full)
    src = write_photo(tmp_path / "a.png", 20, 20)
    assert main(["--model", str(model), str(src)]) == 1
    err = capsys.readouterr().err
    assert f"failed {src}: {tmp_path / 'a_mosaic.png'}: No space left on device" in err


def test_a_looping_symlink_is_reported_as_such(model, tmp_path, capsys):
    loop = tmp_path / "loop.png"
    loop.symlink_to(loop.name)
    assert run(model, str(loop)) == 1
    assert f"{loop}: a symbolic link to nothing (dangling or looping)" in capsys.readouterr().err


def test_an_output_another_process_writes_meanwhile_is_not_replaced(model, tmp_path, monkeypatch, capsys):
    import fastnst.cli.batch

    real = fastnst.cli.batch.save_image

    def other_process_first(image, path, **options):
        Path(path).write_bytes(b"another run's output")
        return real(image, path, **options)

    monkeypatch.setattr(fastnst.cli.batch, "save_image", other_process_first)
    src = write_photo(tmp_path / "a.png", 20, 20)
    assert main(["--model", str(model), str(src)]) == 1
    assert (tmp_path / "a_mosaic.png").read_bytes() == b"another run's output"
    assert f"{tmp_path / 'a_mosaic.png'}: exists (written meanwhile by another process)" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "a_mosaic.png"]  # no temporary file left
    assert main(["--model", str(model), str(src), "--overwrite"]) == 0  # asked for: replaced
    assert (tmp_path / "a_mosaic.png").read_bytes() != b"another run's output"
