"""Transform network: sizes, width, parameter count, dilation and the receptive field."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from torch import nn

from fastnst.nets.transform_net import TransformerConfig, TransformNet, count_parameters, receptive_field

pytestmark = pytest.mark.usefixtures("one_thread")

DILATED = TransformerConfig(base_channels=8, num_residual_blocks=5, residual_dilations=(1, 2, 4, 2, 1))


def test_full_width_parameter_count_matches_johnson():
    # Johnson et al. 2016 supplementary: ~1.68 M parameters.
    n = count_parameters(TransformNet(TransformerConfig(base_channels=32)))
    assert 1.66e6 < n < 1.70e6


def test_half_width_is_about_four_times_smaller():
    full = count_parameters(TransformNet(TransformerConfig(base_channels=32)))
    half = count_parameters(TransformNet(TransformerConfig(base_channels=16)))
    assert 3.5 < full / half < 4.5


@pytest.mark.parametrize("size", [(17, 23), (32, 32), (33, 64), (5, 3), (1, 1)])
@pytest.mark.parametrize("config", [TransformerConfig(base_channels=8, num_residual_blocks=1), DILATED],
                         ids=["undilated", "dilated"])
def test_output_size_equals_input_size(size, config):
    net = TransformNet(config).eval()
    x = torch.rand(2, 3, *size)
    with torch.no_grad():
        assert net(x).shape == x.shape


def test_uses_instance_norm_reflection_padding_and_no_transposed_conv():
    net = TransformNet()
    kinds = {type(m).__name__ for m in net.modules()}
    assert {"InstanceNorm2d", "ReflectionPad2d", "Upsample"} <= kinds
    assert "ConvTranspose2d" not in kinds and "BatchNorm2d" not in kinds


def test_config_validation():
    with pytest.raises(ValueError):
        TransformerConfig(base_channels=0)
    with pytest.raises(ValueError):
        TransformerConfig(arch="resnet50")
    with pytest.raises(ValueError, match="unknown"):
        TransformerConfig.from_dict({"base_channels": 16, "depth": 3})
    assert TransformerConfig.from_dict(TransformerConfig(base_channels=16).to_dict()).base_channels == 16


@pytest.mark.parametrize("dilations,match", [
    ((1, 2), "has 2 entries.*one per residual block"), ((1, 2, 0, 2, 1), r"ints in \[1, 64\]"),
    ((1, 2, 1.5, 2, 1), "ints"), ((1, True, 1, 1, 1), "ints"), ("12421", "list of ints"), (3, "list of ints"),
])
def test_dilation_validation(dilations, match):
    with pytest.raises(ValueError, match=match):
        TransformerConfig(num_residual_blocks=5, residual_dilations=dilations)


def test_dilations_round_trip_as_a_plain_list_and_all_ones_is_the_plain_network():
    data = DILATED.to_dict()
    assert data["residual_dilations"] == [1, 2, 4, 2, 1] and json.loads(json.dumps(data)) == data
    assert TransformerConfig.from_dict(data) == DILATED
    # One spelling of the undilated network: no key (files older versions read), equal configs.
    assert "residual_dilations" not in TransformerConfig().to_dict()
    ones = TransformerConfig(residual_dilations=[1] * 5)
    assert ones == TransformerConfig() and ones.residual_dilations is None and ones.dilations == (1,) * 5
    assert TransformerConfig(num_residual_blocks=2, residual_dilations=[2, 3]).residual_dilations == (2, 3)
    assert (TransformerConfig().min_side, DILATED.min_side) == (8, 20)


def test_dilation_keeps_parameter_names_and_shapes():
    plain = TransformNet(TransformerConfig(base_channels=8, num_residual_blocks=5)).state_dict()
    dilated = TransformNet(DILATED).state_dict()
    assert {k: v.shape for k, v in plain.items()} == {k: v.shape for k, v in dilated.items()}
    convs = [m for m in TransformNet(DILATED).residuals.modules() if isinstance(m, nn.Conv2d)]
    assert [c.dilation[0] for c in convs] == [1, 1, 2, 2, 4, 4, 2, 2, 1, 1]


def _measured_receptive_field(config: TransformerConfig, size: int) -> int:
    """Widest input window that output pixels' gradients reach, with the norms and ReLUs taken out
    (instance norm's statistics would make every output depend on every input pixel)."""
    torch.manual_seed(0)
    net = TransformNet(config)
    for module in net.modules():
        for name, child in module.named_children():
            if isinstance(child, (nn.InstanceNorm2d, nn.ReLU)):
                setattr(module, name, nn.Identity())
    widest = 0
    for c in range(size // 2, size // 2 + 4):  # the 4 phases of the stride-4 grid
        x = torch.rand(1, 3, size, size, requires_grad=True)
        net(x)[0, :, c, c].sum().backward()
        reached = (x.grad[0].abs().sum(0) != 0).nonzero()
        widest = max(widest, int((reached.max(0).values - reached.min(0).values).max()) + 1)
    return widest


@pytest.mark.parametrize("config,size", [(TransformerConfig(base_channels=1), 128), (replace(DILATED, base_channels=1), 224)],
                         ids=["undilated", "dilated"])
def test_receptive_field_is_what_gradients_reach(config, size):
    assert receptive_field(config) == _measured_receptive_field(config, size)
    assert receptive_field(config) == (111 if config.residual_dilations is None else 191)  # small_dilated.yaml


def test_gradients_reach_all_parameters():
    net = TransformNet(TransformerConfig(base_channels=8, num_residual_blocks=2))
    net(torch.rand(1, 3, 20, 20)).mean().backward()
    assert all(p.grad is not None for p in net.parameters())
