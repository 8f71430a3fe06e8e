"""Gram matrix and losses against hand-computed examples."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fastnst.nets.losses import PerceptualLoss, content_loss, gram_matrix, style_loss, tv_loss


def test_gram_matrix_hand_computed():
    # One image, C=2, H=1, W=2: F = [[1, 2], [3, 4]] -> F F^T = [[5, 11], [11, 25]], / (C*H*W = 4).
    f = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 2, 1, 2)
    expected = torch.tensor([[5.0, 11.0], [11.0, 25.0]]) / 4
    assert torch.allclose(gram_matrix(f)[0], expected)


def test_gram_is_float32_under_bf16_input():
    f = torch.randn(2, 3, 4, 4).bfloat16()
    assert gram_matrix(f).dtype == torch.float32


def test_content_style_tv_hand_computed():
    a = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 1, 2, 2)
    b = torch.zeros_like(a)
    assert content_loss(a, b).item() == pytest.approx((1 + 4 + 9 + 16) / 4)
    ga, gb = torch.eye(2)[None], torch.zeros(1, 2, 2)
    assert style_loss(ga, gb).item() == pytest.approx(2 / 4)
    # Vertical diffs: (3-1, 4-2) -> mean of squares 4; horizontal: (2-1, 4-3) -> 1.
    assert tv_loss(a).item() == pytest.approx(4 + 1)


def test_losses_zero_for_identical_inputs(vgg_random):
    x = torch.rand(1, 3, 32, 32)
    loss = PerceptualLoss(vgg_random, x, content_layers=["relu2_2"], style_layers=["relu1_1", "relu3_1"], tv_weight=1.0)
    terms = loss(x, x)
    assert terms["content"].item() == 0
    assert terms["style"].item() == pytest.approx(0, abs=1e-12)
    const = torch.full((1, 3, 8, 8), 0.3)
    assert tv_loss(const).item() == 0


def test_terms_by_name_and_weighted_total(vgg_random):
    torch.manual_seed(0)
    style, content, out = torch.rand(1, 3, 32, 32), torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    loss = PerceptualLoss(
        vgg_random, style, content_layers={"relu2_2": 1.0},
        style_layers={"relu1_1": 1.0, "relu2_1": 0.1}, content_weight=2.0, style_weight=3.0, tv_weight=5.0,
    )
    t = loss(out, content)
    assert {"content", "style", "tv", "total", "style/relu1_1", "style/relu2_1", "content/relu2_2"} <= set(t)
    assert t["style"].item() == pytest.approx(t["style/relu1_1"].item() + 0.1 * t["style/relu2_1"].item(), rel=1e-5)
    expected = 2 * t["content"] + 3 * t["style"] + 5 * t["tv"]
    assert t["total"].item() == pytest.approx(expected.item(), rel=1e-5)
    # Precomputed content features give the same numbers as a content image (the Gatys path).
    t2 = loss(out, loss.content_targets(content))
    assert t2["total"].item() == pytest.approx(t["total"].item(), rel=1e-5)


def test_log_style_is_the_content_power_times_the_weighted_mean_log_loss(vgg_random):
    torch.manual_seed(0)
    style, content = torch.rand(1, 3, 32, 32), torch.rand(2, 3, 32, 32)
    out = torch.rand(2, 3, 32, 32, requires_grad=True)
    layers = {"relu1_1": 1.0, "relu2_1": 3.0}
    loss = PerceptualLoss(vgg_random, style, content_layers={"relu2_2": 1.0}, style_layers=layers, log_style=True)
    t = loss(out, content)
    power = vgg_random(content, ["relu2_2"])["relu2_2"].pow(2).mean()
    want = power * (torch.log(t["style/relu1_1"]) + 3 * torch.log(t["style/relu2_1"])) / 4
    assert t["style"].item() == pytest.approx(want.item(), rel=1e-5)
    # The gradient of a layer's log term is its raw gradient over its current loss: scaling the layer
    # weights all together changes nothing, and a layer already close to the painting keeps its say.
    t["total"].backward()
    doubled = PerceptualLoss(vgg_random, style, content_layers={"relu2_2": 1.0},
                             style_layers={k: 2 * v for k, v in layers.items()}, log_style=True)
    out2 = out.detach().clone().requires_grad_(True)
    doubled(out2, content)["total"].backward()
    assert torch.allclose(out.grad, out2.grad, rtol=1e-4, atol=1e-12)


def test_style_blend_is_weighted_mean_of_grams(vgg_random):
    a, b = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    blended = PerceptualLoss(vgg_random, [a, b], style_layers=["relu1_1"], style_blend=[3, 1])
    ga = gram_matrix(vgg_random(a, ["relu1_1"])["relu1_1"])
    gb = gram_matrix(vgg_random(b, ["relu1_1"])["relu1_1"])
    assert torch.allclose(blended.style_targets["relu1_1"], 0.75 * ga + 0.25 * gb, atol=1e-6)
    with pytest.raises(ValueError):
        PerceptualLoss(vgg_random, [a, b], style_blend=[1.0])


def test_style_pyramid_adds_a_level_per_scale(vgg_random):
    torch.manual_seed(0)
    style, out = torch.rand(1, 3, 64, 64), torch.rand(2, 3, 64, 64, requires_grad=True)
    layers = {"relu1_1": 1.0, "relu2_1": 0.1}
    single = PerceptualLoss(vgg_random, style, style_layers=layers)
    pyramid = PerceptualLoss(vgg_random, style, style_layers=layers, style_scales=[1.0, 0.5])
    t1, t2 = single(out, None), pyramid(out, None)
    assert torch.equal(t1["style/relu1_1"], t2["style/relu1_1"])  # the full-size level is unchanged
    half = F.interpolate(style, size=(32, 32), mode="bilinear", antialias=True, align_corners=False)
    want = gram_matrix(vgg_random(half, ["relu1_1"])["relu1_1"])
    assert torch.allclose(pyramid.scaled_style_targets[0.5]["relu1_1"], want, atol=1e-6)
    coarse = t2["style/relu1_1@0.5"] + 0.1 * t2["style/relu2_1@0.5"]
    assert t2["style"].item() == pytest.approx((t1["style"] + coarse).item(), rel=1e-5)
    t2["style"].backward()
    assert out.grad is not None and out.grad.abs().sum() > 0
    # The painting itself matches at every level.
    assert pyramid(style, None)["style"].item() == pytest.approx(0, abs=1e-9)
    # A half-size-only loss compares only the half-size images.
    only_half = PerceptualLoss(vgg_random, style, style_layers=layers, style_scales=[0.5])
    assert only_half(out, None)["style"].item() == pytest.approx(coarse.item(), rel=1e-5)


@pytest.mark.parametrize("scales", [[], [0.0], [1.5], [0.5, 0.5]])
def test_bad_style_scales_are_refused(vgg_random, scales):
    with pytest.raises(ValueError, match="style_scales"):
        PerceptualLoss(vgg_random, torch.rand(1, 3, 32, 32), style_layers=["relu1_1"], style_scales=scales)


def test_a_pyramid_level_too_small_for_vgg_is_refused_by_name(vgg_random):
    with pytest.raises(ValueError, match=r"style_scales: at 0.25 the painting \(48x48 px\)"):
        PerceptualLoss(vgg_random, torch.rand(1, 3, 48, 48), style_layers=["relu1_1"], style_scales=[1.0, 0.25])
    loss = PerceptualLoss(vgg_random, torch.rand(1, 3, 64, 64), style_layers=["relu1_1"], style_scales=[1.0, 0.5])
    with pytest.raises(ValueError, match="the output"):
        loss(torch.rand(1, 3, 24, 24), None)


def test_gradients_flow_to_the_input(vgg_random):
    style = torch.rand(1, 3, 32, 32)
    content = torch.rand(1, 3, 32, 32)
    x = torch.rand(1, 3, 32, 32, requires_grad=True)
    loss = PerceptualLoss(vgg_random, style, style_layers=["relu1_1", "relu2_1"], tv_weight=1.0)
    loss(x, content)["total"].backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in vgg_random.parameters())


def test_defaults_are_the_training_schemas(vgg_random):
    """One source for the default layers and weights: the loss, the training schema and Gatys agree."""
    from fastnst.baseline.gatys import DEFAULT_STYLE_LAYERS
    from fastnst.training.config import StyleConfig

    loss = PerceptualLoss(vgg_random, torch.rand(1, 3, 32, 32))
    schema = StyleConfig(name="x", image="y")
    assert loss.style_weight == schema.style_weight and loss.content_weight == schema.content_weight
    # The schema names no layers (a default dict would merge into every style file's); the files do.
    assert schema.style_layers == {} and schema.content_layers == {}
    assert tuple(loss.style_layers) == DEFAULT_STYLE_LAYERS
