"""`python -m fastnst.gatys`: outputs, JSON, sweeps with a grid, texture and reconstruction modes, errors."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from fastnst.cli.gatys import main
from tests.support import noise_photo

FAST = ["--vgg", "random", "--precision", "fp32", "--quiet", "--style-layers", "relu1_1,relu2_1",
        "--content-layers", "relu2_2"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture()
def photo(tmp_path):
    return noise_photo(tmp_path / "in" / "photo.png", 40, 30)


def test_single_run_writes_image_and_loss_json(tmp_path, photo, capsys):
    out = tmp_path / "out" / "result.png"
    code = main(["--content", str(photo), "--style", "starry", "-o", str(out), "--steps", "4", "--size", "40",
                 "--save-every", "2", *FAST])
    assert code == 0
    assert Image.open(out).size == (40, 30)
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["mode"] == "transfer" and record["steps"] == 4
    assert set(record["losses"]) >= {"content", "style", "tv", "total", "style/relu1_1", "content/relu2_2"}
    assert record["losses"]["total"] == pytest.approx(min(h["total"] for h in record["history"]), rel=1e-4)
    assert sorted(p.name for p in out.parent.glob("result_step*.png")) == ["result_step2.png", "result_step4.png"]
    printed = capsys.readouterr().out
    assert "total" in printed and "style/relu1_1" in printed


def test_texture_mode_needs_no_content(tmp_path):
    out = tmp_path / "texture.png"
    code = main(["--content", "none", "--style", "scream", "-o", str(out), "--steps", "3", "--size", "32", *FAST])
    assert code == 0
    w, h = Image.open(out).size
    assert max(w, h) == 32 and h > w  # The Scream is portrait: the texture keeps its aspect ratio
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["mode"] == "texture" and record["content"] is None and record["init"] == "noise"


def test_style_weight_sweep_writes_one_image_per_value_and_a_grid(tmp_path, photo):
    out = tmp_path / "sweep.png"
    code = main(["--content", str(photo), "--style", "starry", "scream", "--style-blend", "0.7,0.3",
                 "-o", str(out), "--steps", "2", "--size", "32", "--style-weight", "1e2,1e3,1e4", *FAST])
    assert code == 0
    images = sorted(p.name for p in tmp_path.glob("sweep_style-weight-*.png"))
    assert images == ["sweep_style-weight-1e2.png", "sweep_style-weight-1e3.png", "sweep_style-weight-1e4.png"]
    assert len(list(tmp_path.glob("sweep_style-weight-*.json"))) == 3
    grid = Image.open(tmp_path / "sweep_grid.png")
    assert grid.width > 3 * 32 and grid.height > 24  # three cells in a row, plus labels
    summary = json.loads((tmp_path / "sweep_sweep.json").read_text())
    assert [v["sweep"] for v in summary["variants"]] == [f"style-weight={w}" for w in ("1e2", "1e3", "1e4")]
    assert not (tmp_path / "sweep.png").exists()


def test_layer_weight_sweep(tmp_path, photo):
    out = tmp_path / "lw.png"
    code = main(["--content", str(photo), "--style", "starry", "-o", str(out), "--steps", "1", "--size", "32",
                 "--style-layer-weights", "1,1;1,0.1", *FAST])
    assert code == 0
    assert len(list(tmp_path.glob("lw_style-layer-weights-*.png"))) == 2
    assert (tmp_path / "lw_grid.png").is_file()


@pytest.mark.parametrize("kind", ["content", "style"])
def test_reconstruct_from_one_layer(tmp_path, photo, kind):
    out = tmp_path / f"rec_{kind}.png"
    args = ["--reconstruct", kind, "--layer", "relu1_1,relu2_1", "-o", str(out), "--steps", "3", "--size", "32", *FAST]
    args += ["--content", str(photo)] if kind == "content" else ["--style", "starry"]
    assert main(args) == 0
    for layer in ("relu1_1", "relu2_1"):
        record = json.loads((tmp_path / f"rec_{kind}_{layer}.json").read_text())
        assert record["mode"] == f"reconstruct-{kind}" and record["init"] == "noise"
        layers = record["content_layers"] if kind == "content" else record["style_layers"]
        assert layers == {layer: 1.0}
    assert (tmp_path / f"rec_{kind}_grid.png").is_file()


@pytest.mark.parametrize("bad", ["content", "style"])
def test_bad_input_file_is_a_one_line_error_and_writes_nothing(tmp_path, photo, capsys, bad):
    broken = tmp_path / "in" / "broken.jpg"
    broken.write_bytes(b"this is not a jpeg")
    content = broken if bad == "content" else photo
    styles = ["starry", str(broken)] if bad == "style" else ["starry"]
    out_dir = tmp_path / "out"
    code = main(["--content", str(content), "--style", *styles, "-o", str(out_dir / "x.png"), "--steps", "2", *FAST])
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(broken) in err[0] and "not an image" in err[0]
    assert not out_dir.exists()


def test_bad_options_are_usage_errors(tmp_path, photo, capsys):
    base = ["--content", str(photo), "--style", "starry", *FAST]
    assert main([*base, "-o", str(tmp_path / "x.txt")]) == 2
    assert main([*base, "-o", str(tmp_path / "x.png"), "--style-weight", "1e3,abc"]) == 2
    assert main([*base, "-o", str(tmp_path / "x.png"), "--style-layers", "relu9_9"]) == 2
    assert main([*base, "-o", str(photo)]) == 2  # would overwrite the input
    err = capsys.readouterr().err
    assert "x.txt" in err and "'abc' is not a number" in err and "relu9_9" in err and "overwrite" in err
    assert list(tmp_path.glob("x.*")) == []


def test_an_existing_output_is_refused_unless_overwrite(tmp_path, photo, capsys):
    out = tmp_path / "result.png"
    out.write_bytes(b"an earlier result")
    args = ["--content", str(photo), "--style", "starry", "-o", str(out), "--steps", "1", "--size", "24", *FAST]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "exists" in err and "--overwrite" in err
    assert out.read_bytes() == b"an earlier result" and not out.with_suffix(".json").exists()
    assert main([*args, "--overwrite"]) == 0
    assert Image.open(out).size == (24, 18)


def test_an_unknown_style_name_lists_the_bundled_paintings(tmp_path, photo, capsys):
    code = main(["--content", str(photo), "--style", "monet", "-o", str(tmp_path / "r.png"), "--steps", "1", *FAST])
    assert code == 1
    err = capsys.readouterr().err.strip()
    assert "monet" in err and "starry" in err and "scream" in err and "\n" not in err


@pytest.mark.parametrize("which", ["content", "style", "texture"])
def test_an_image_too_thin_for_the_vgg_layers_is_a_one_line_error_naming_it(tmp_path, photo, capsys, which):
    thin = noise_photo(tmp_path / "in" / "pano.png", 1200, 20)  # 64x1 px at --size 64
    content = {"content": thin, "style": photo, "texture": "none"}[which]
    style = thin if which != "content" else "starry"
    out_dir = tmp_path / "out"
    code = main(["--content", str(content), "--style", str(style), "-o", str(out_dir / "x.png"), "--steps", "1",
                 "--size", "64", "--vgg", "random", "--quiet"])  # the default layers reach relu5_1: 16 px
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "Traceback" not in err[0], err
    assert err[0].startswith(f"error: {thin}: ") and "too thin" in err[0] and "at least 16 px" in err[0]
    assert not out_dir.exists()


def test_a_thin_image_runs_when_the_layers_used_are_shallow_enough(tmp_path, capsys):
    thin = noise_photo(tmp_path / "in" / "strip.png", 400, 16)  # 64x2 px at --size 64: enough for relu2_1
    out = tmp_path / "x.png"
    assert main(["--content", str(thin), "--reconstruct", "content", "--layer", "relu2_1", "-o", str(out),
                 "--steps", "1", "--size", "64", "--vgg", "random", "--quiet"]) == 0
    assert Image.open(out).size == (64, 3)


def test_an_output_under_a_file_is_refused_before_the_optimisation(tmp_path, photo, capsys):
    (tmp_path / "afile").write_text("not a directory")
    code = main(["--content", str(photo), "--style", "starry", "-o", str(tmp_path / "afile" / "x.png"), "--steps", "1", *FAST])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.endswith(f"-o {tmp_path / 'afile' / 'x.png'}: {tmp_path / 'afile'} is not a directory")
    assert "%" not in err and len(err.splitlines()) == 1  # no progress bar: nothing ran


def test_a_scans_frame_is_cut_off_the_style_image_unless_asked(tmp_path):
    from fastnst.cli.gatys import _build_parser, _load_inputs, settings_from_args

    def style_shape(*extra: str) -> tuple[int, ...]:
        args = _build_parser().parse_args(["--content", "none", "--style", "starry", "-o", str(tmp_path / "t.png"),
                                          "--style-size", "1000", *extra])
        settings = settings_from_args(args)
        return tuple(_load_inputs(settings, settings.mode)[1][0].shape)

    assert style_shape("--keep-frame") == (1, 3, 600, 752)  # the scan, frame and all (never enlarged)
    assert style_shape() == (1, 3, 600 - 39, 752 - 43)  # as the trainer takes it
