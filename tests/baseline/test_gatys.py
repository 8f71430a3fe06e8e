"""The Gatys baseline library: optimisation, best-image tracking, texture mode, precision."""

from __future__ import annotations

import math

import pytest
import torch

from fastnst.baseline.gatys import GatysError, StepReport, evaluate_losses, initial_image, optimize_image
from fastnst.nets.losses import PerceptualLoss, gram_matrix

SIZE = (24, 32)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture()
def images():
    g = torch.Generator().manual_seed(0)
    content = torch.rand(1, 3, *SIZE, generator=g)
    # A smooth, strongly coloured "painting" so the style target is far from the noisy content.
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 40), torch.linspace(0, 1, 40), indexing="ij")
    style = torch.stack([torch.sin(6 * xx) * 0.5 + 0.5, yy, 1 - xx * yy])[None]
    return content, style


def _loss(vgg, style, **kw):
    settings = dict(content_layers=["relu2_2"], style_layers=["relu1_1", "relu2_1", "relu3_1"],
                    content_weight=1.0, style_weight=1e3, tv_weight=0.0)
    settings.update(kw)
    return PerceptualLoss(vgg, style, **settings)


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_optimising_the_pixels_lowers_the_loss(vgg_random, images, optimizer):
    content, style = images
    loss_fn = _loss(vgg_random, style)
    init = initial_image("noise", content, SIZE, generator=torch.Generator().manual_seed(1))
    result = optimize_image(loss_fn, init, content, optimizer=optimizer, steps=15, precision=torch.float32)
    totals = [h["total"] for h in result.history]
    assert len(totals) == 16  # one evaluation per step plus the final image
    assert totals[-1] < 0.7 * totals[0]
    assert result.losses["total"] < 0.7 * totals[0]
    assert set(result.losses) >= {"content", "style", "tv", "total", "content/relu2_2", "style/relu1_1"}


def test_best_image_is_the_minimum_and_reevaluates_to_it(vgg_random, images):
    content, style = images
    loss_fn = _loss(vgg_random, style)
    reports: list[StepReport] = []
    # A far too large Adam step makes the loss jump around, so the last iterate is not the best one.
    result = optimize_image(loss_fn, content.clone(), content, optimizer="adam", lr=0.3, steps=8,
                            precision=torch.float32, callback=reports.append)
    totals = [h["total"] for h in result.history]
    assert result.best_total == min(totals)
    assert totals[-1] > result.best_total  # the returned image is not simply the last one
    assert result.best_step == int(result.history[totals.index(min(totals))]["step"])
    again = evaluate_losses(loss_fn, result.image, content)
    assert again["total"] == pytest.approx(result.best_total, rel=1e-4)
    assert result.losses["total"] == pytest.approx(result.best_total, rel=1e-4)
    assert not torch.equal(result.image, result.final_image)
    assert float(result.image.min()) >= 0.0 and float(result.image.max()) <= 1.0
    # The callback saw every step, with a best-so-far that never goes up.
    assert [r.step for r in reports] == list(range(1, 9))
    bests = [r.best_total for r in reports]
    assert all(b2 <= b1 for b1, b2 in zip(bests, bests[1:]))


def test_lbfgs_with_line_search_tracks_every_evaluation(vgg_random, images):
    content, style = images
    loss_fn = _loss(vgg_random, style)
    result = optimize_image(loss_fn, content.clone(), content, steps=3, line_search="strong_wolfe",
                            precision=torch.float32)
    totals = [h["total"] for h in result.history]
    assert len(totals) > 4  # line search evaluates several trial points per step
    assert result.best_total == min(totals)


def test_texture_synthesis_needs_no_content(vgg_random, images):
    _, style = images
    loss_fn = _loss(vgg_random, style, content_layers={})
    init = initial_image("noise", None, SIZE, generator=torch.Generator().manual_seed(2))
    result = optimize_image(loss_fn, init, None, steps=12, precision=torch.float32)
    assert result.history[-1]["total"] < 0.7 * result.history[0]["total"]
    assert result.losses["content"] == 0.0
    assert result.image.shape == (1, 3, *SIZE)
    with pytest.raises(ValueError, match="needs a content image"):
        initial_image("content", None, SIZE)


def test_bf16_autocast_keeps_fp32_image_and_decreases(vgg_random, images):
    content, style = images
    loss_fn = _loss(vgg_random, style)
    init = initial_image("content+noise", content, SIZE, noise_ratio=0.5, generator=torch.Generator().manual_seed(3))
    result = optimize_image(loss_fn, init, content, steps=12, precision=torch.bfloat16, channels_last=True)
    assert result.image.dtype == torch.float32
    assert result.history[-1]["total"] < 0.8 * result.history[0]["total"]
    assert math.isfinite(result.losses["total"])


def test_non_finite_loss_stops_at_once(vgg_random, images):
    content, style = images
    loss_fn = _loss(vgg_random, style, style_weight=float("nan"))
    with pytest.raises(GatysError, match="non-finite loss at step 0"):
        optimize_image(loss_fn, content.clone(), content, steps=5, precision=torch.float32)


@pytest.mark.parametrize("channels_last", [False, True])
def test_gram_matrix_value_and_gradient_match_plain_autograd(channels_last):
    # gram_matrix has a hand-written symmetric backward and an NHWC path (speed-ups for this baseline).
    f = torch.randn(2, 8, 5, 6)
    if channels_last:
        f = f.contiguous(memory_format=torch.channels_last)
    a, b = f.clone().requires_grad_(), f.clone().requires_grad_()
    flat = b.reshape(2, 8, 30)
    reference = torch.bmm(flat, flat.transpose(1, 2)) / (8 * 30)
    gram = gram_matrix(a)
    assert gram.dtype == torch.float32 and torch.allclose(gram, reference, atol=1e-6)
    target = torch.randn(2, 8, 8)
    (gram - target).pow(2).sum().backward()
    (reference - target).pow(2).sum().backward()
    assert torch.allclose(a.grad, b.grad, atol=1e-5)
    if channels_last:  # the gradient keeps the NHWC layout, so autograd's accumulation stays cheap
        assert a.grad.is_contiguous(memory_format=torch.channels_last)


def test_gram_backward_passes_gradcheck():
    from fastnst.nets.losses import _Gram

    x = torch.randn(2, 4, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: _Gram.apply(t, 24, False), (x,))
    assert torch.autograd.gradcheck(lambda t: _Gram.apply(t, 24, True), (x,))


def test_low_precision_weights_give_the_autocast_numbers(vgg_random, images):
    # PixelOptimizer casts the frozen VGG weights once instead of letting autocast recast them per step.
    from fastnst.baseline.gatys import PixelOptimizer

    content, style = images
    loss_fn = _loss(vgg_random, style)
    run = PixelOptimizer(loss_fn, content.clone(), content, precision=torch.bfloat16, channels_last=True)
    run.evaluate(with_grad=False)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected = loss_fn(content.contiguous(memory_format=torch.channels_last), run.targets)["total"].item()
    assert run.history[-1]["total"] == pytest.approx(expected, rel=1e-5)
    assert all(p.dtype == torch.float32 for p in vgg_random.parameters())  # the shared VGG is untouched
