"""Transform network: sizes, width, parameter count."""

from __future__ import annotations

import pytest
import torch

from fastnst.transformer import TransformerConfig, TransformNet, count_parameters


def test_full_width_parameter_count_matches_johnson():
    # Johnson et al. 2016 supplementary: ~1.68 M parameters.
    n = count_parameters(TransformNet(TransformerConfig(base_channels=32)))
    assert 1.66e6 < n < 1.70e6


def test_half_width_is_about_four_times_smaller():
    full = count_parameters(TransformNet(TransformerConfig(base_channels=32)))
    half = count_parameters(TransformNet(TransformerConfig(base_channels=16)))
    assert 3.5 < full / half < 4.5


@pytest.mark.parametrize("size", [(17, 23), (32, 32), (33, 64), (5, 3), (1, 1)])
def test_output_size_equals_input_size(size):
    net = TransformNet(TransformerConfig(base_channels=8, num_residual_blocks=1)).eval()
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


def test_gradients_reach_all_parameters():
    net = TransformNet(TransformerConfig(base_channels=8, num_residual_blocks=2))
    net(torch.rand(1, 3, 20, 20)).mean().backward()
    assert all(p.grad is not None for p in net.parameters())
