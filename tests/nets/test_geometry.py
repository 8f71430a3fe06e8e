"""fastnst.nets.geometry: the one pad-to-a-multiple-of-4 rule, eager and traced alike."""

import warnings

import pytest
import torch

from fastnst.nets.geometry import MIN_SIDE, min_side, pad_to_multiple_of_4, padding


@pytest.mark.parametrize("size, padded", [(64, 64), (65, 68), (67, 68), (5, 8), (3, 8), (1, 8), (8, 8), (9, 12)])
def test_padding_is_a_multiple_of_4_and_at_least_8(size, padded):
    assert size + padding(size, size)[0] == padded
    assert pad_to_multiple_of_4(torch.rand(1, 3, size, size)).shape[-2:] == (padded, padded)


@pytest.mark.parametrize("dilation, size, padded", [(1, 5, 8), (2, 5, 12), (4, 5, 20), (4, 19, 20), (4, 21, 24)])
def test_dilated_networks_need_a_larger_minimum_side(dilation, size, padded):
    # A quarter-resolution conv with dilation d reflect-pads by d: the map there needs d + 1 pixels.
    assert min_side(dilation) == 4 * (dilation + 1) and min_side() == MIN_SIDE
    assert size + padding(size, size, min_side(dilation))[0] == padded
    assert pad_to_multiple_of_4(torch.rand(1, 3, size, size), min_side(dilation)).shape[-2:] == (padded, padded)


def test_small_images_are_replicate_padded_large_ones_reflected():
    x = torch.arange(9.0).view(1, 1, 3, 3)
    assert torch.equal(pad_to_multiple_of_4(x)[..., 3:, :3], x[..., 2:, :].expand(1, 1, 5, 3))  # replicate
    y = torch.arange(30.0).view(1, 1, 5, 6)
    assert torch.equal(pad_to_multiple_of_4(y)[..., 5, :6], y[..., 3, :])  # reflect: row 5 mirrors row 3


def test_traced_padding_follows_the_runtime_size():
    class Pad(torch.nn.Module):
        def forward(self, x):
            return pad_to_multiple_of_4(x)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(Pad(), torch.rand(1, 3, 64, 96))
    for h, w in [(64, 96), (131, 77), (9, 10)]:
        x = torch.rand(1, 3, h, w)
        assert torch.equal(traced(x), pad_to_multiple_of_4(x))
