"""Several paintings in one network: each painting's norms, its own plain network, and the mean."""

from __future__ import annotations

import pytest
import torch

from fastnst.nets.multistyle import MultiStyleNet, norm_names
from fastnst.nets.transform_net import TransformerConfig, TransformNet

SMALL = TransformerConfig(base_channels=4, num_residual_blocks=2, residual_dilations=(1, 2))


@pytest.fixture()
def trained():
    torch.manual_seed(0)
    net = MultiStyleNet(SMALL, ["a", "b", "c"])
    with torch.no_grad():  # as if trained: every painting's norms differ
        for scale, shift in zip(net.scales, net.shifts):
            scale.uniform_(0.5, 1.5)
            shift.uniform_(-0.2, 0.2)
    return net


def test_each_painting_comes_out_as_a_plain_network_that_paints_the_same(trained):
    x = torch.rand(2, 3, 40, 36)
    outputs = []
    for i in range(3):
        trained.select(i)
        with torch.no_grad():
            y = trained(x)
            plain = trained.style_net(i)
            assert type(plain) is TransformNet and plain.config == SMALL
            assert torch.allclose(plain(x), y, atol=1e-6)
        outputs.append(y)
    assert not torch.allclose(outputs[0], outputs[1], atol=1e-3)  # the norms make the painting


def test_a_step_trains_the_shared_convs_and_only_the_selected_paintings_norms(trained):
    trained.select(1)
    trained(torch.rand(1, 3, 32, 32)).square().mean().backward()
    for scale, shift in zip(trained.scales, trained.shifts):
        assert scale.grad[1].abs().sum() > 0 and shift.grad[1].abs().sum() > 0
        assert scale.grad[[0, 2]].abs().sum() == 0 and shift.grad[[0, 2]].abs().sum() == 0
    assert trained.net.encoder[0].conv.weight.grad.abs().sum() > 0
    # The plain network's own norm parameters are stand-ins, never trained.
    assert all(trained.net.get_submodule(n).weight.grad is None for n in norm_names(trained.net))


def test_the_mean_network_has_the_mean_norms_and_the_shared_convs(trained):
    mean = trained.mean_net()
    first = norm_names(mean)[0]
    assert torch.allclose(mean.get_submodule(first).weight, trained.scales[0].mean(0))
    assert torch.equal(mean.encoder[0].conv.weight, trained.net.encoder[0].conv.weight)
    assert all(p.requires_grad for p in mean.parameters())  # a start to fine-tune from


def test_names_must_be_distinct_and_the_index_in_range():
    with pytest.raises(ValueError, match="distinct"):
        MultiStyleNet(SMALL, ["a", "a"])
    with pytest.raises(IndexError):
        MultiStyleNet(SMALL, ["a", "b"]).select(2)
