"""The fast inference path, tiling, colour preservation, strength and the stylize_image API."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from fastnst.infer.backends.fused import FusedNet
from fastnst.infer.color import blend, preserve_color, rgb_to_ycbcr, ycbcr_to_rgb
from fastnst.infer.stylizer import DEFAULT_OVERLAP, Stylizer, load_model, stylize_image, tile_spans
from fastnst.nets.modelfile import ModelFileError, save_style_model
from fastnst.nets.transform_net import TransformNet
from tests.support import random_style_net

pytestmark = pytest.mark.usefixtures("default_malloc")


def make_net(base_channels: int = 8, blocks: int = 2, seed: int = 0, dilations: tuple[int, ...] | None = None
             ) -> TransformNet:
    """Norm scales of both signs, so the fast path's sign folding is exercised."""
    return random_style_net(base_channels, blocks, seed, norm_scale=(-1.5, 1.5), dilations=dilations)


DILATED = (1, 2, 4, 2, 1)  # configs/model/small_dilated.yaml


def photo(h: int, w: int, seed: int = 0) -> torch.Tensor:
    """A smooth colourful test image with some edges (1, 3, h, w)."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    base = torch.stack([0.5 + 0.4 * torch.sin(6 * xx + 2 * yy), 0.5 + 0.4 * torch.cos(5 * yy), xx * yy])
    noise = torch.rand(3, h, w, generator=g) * 0.1
    return (base + noise + 0.2 * (xx > 0.5)).clamp(0, 1).unsqueeze(0)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a.double() - b.double()) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "wave.safetensors"
    save_style_model(path, make_net(), {"style": "wave", "steps": 10})
    return path


# -- the rewritten network ---------------------------------------------------------------------


@pytest.mark.parametrize("size", [(13, 30), (37, 41), (64, 66), (5, 7)])
@pytest.mark.parametrize("width,blocks,dilations", [(8, 2, None), (16, 5, None), (8, 2, (3, 1)), (8, 5, DILATED)])
def test_fast_net_float32_equals_transformnet(size, width, blocks, dilations):
    net = make_net(width, blocks, dilations=dilations)
    x = photo(*size).expand(2, -1, -1, -1).clone()
    x[1] = x[1].flip(-1)
    with torch.no_grad():
        expected = net(x)
    got = FusedNet(net, torch.float32)(x)
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, atol=2e-4, rtol=0), (got - expected).abs().max()


@pytest.mark.parametrize("dilations", [None, DILATED])
def test_fast_net_bf16_close_to_float32(dilations):
    net = make_net(16, 5, dilations=dilations)
    x = photo(96, 128)
    with torch.no_grad():
        expected = net(x).clamp(0, 1)
    got = FusedNet(net, torch.bfloat16)(x).clamp(0, 1)
    assert psnr(got, expected) >= 35


def test_recorded_statistics_reproduce_the_output():
    fast = FusedNet(make_net(), torch.float32)
    x = photo(40, 52)
    out, stats = fast.record_stats(x)
    assert len(stats.layers) == fast.num_norm_layers
    assert torch.allclose(fast(x, stats=stats), out, atol=1e-6)
    # Another image's statistics change the result: they are really used.
    _, other = fast.record_stats(photo(40, 52, seed=3).flip(-1))
    assert not torch.allclose(fast(x, stats=other), out, atol=1e-3)


# -- tiling --------------------------------------------------------------------------------------


@pytest.mark.parametrize("length,tile,overlap", [(300, 128, 48), (1000, 256, 64), (257, 256, 64), (100, 128, 32),
                                                 (3000, 1464, 128), (8000, 1464, 128)])
def test_tile_spans_cover_aligned_and_overlap(length, tile, overlap):
    spans = tile_spans(length, tile, overlap)
    assert spans[0][0] == 0 and spans[-1][1] == length
    for (s0, e0), (s1, e1) in zip(spans, spans[1:]):
        assert s1 % 4 == 0 and e0 - s1 >= overlap and s1 > s0
    assert all(e - s <= tile + 3 for s, e in spans)
    # Spread evenly: the tiles repeat little more than their overlaps (no last tile doing mostly
    # its neighbour's work again).
    assert sum(e - s for s, e in spans) <= length + (len(spans) - 1) * (overlap + 4)


def test_tiled_output_matches_untiled():
    stylizer = Stylizer(make_net(16, 5), "cpu", "auto")
    x = photo(300, 420)
    untiled = stylizer.stylize_tensor(x, tile=0)
    calls = []
    tiled = stylizer.stylize_tensor(x, tile=160, overlap=64, progress=lambda d, t: calls.append((d, t)))
    assert tiled.shape == untiled.shape
    assert psnr(tiled, untiled) >= 35
    assert calls[-1][0] == calls[-1][1] > 4  # the statistics pass plus several tiles


@pytest.mark.usefixtures("one_thread")
def test_dilated_tiles_blend_seamlessly_with_the_overlap_fitted_to_the_receptive_field():
    stylizer = Stylizer(make_net(16, 5, dilations=DILATED), "cpu", "fp32")
    assert stylizer.overlap == 224 and Stylizer(make_net(16, 5), "cpu", "fp32").overlap == DEFAULT_OVERLAP
    x = photo(320, 448)  # two tiles side by side
    untiled = stylizer.stylize_tensor(x, tile=0)
    fitted = psnr(stylizer.stylize_tensor(x, tile=336), untiled)
    # The undilated network tiles this image at 128 px to ~95 dB; at 128 px the dilated one's tiles
    # reach past the blend's zero-weight band (~59 dB), at its own 224 px they do not (~85 dB).
    assert fitted >= 75 and fitted > psnr(stylizer.stylize_tensor(x, tile=336, overlap=DEFAULT_OVERLAP), untiled) + 15


def test_the_memory_budget_follows_the_path_that_runs(monkeypatch):
    import fastnst.infer.stylizer as inference

    monkeypatch.setattr(inference, "available_memory", lambda device: 1 << 40)  # the 0.5 GB cap decides
    cpu = torch.device("cpu")
    # One 1920x1080 frame fits one pass in int8 (whatever the dtype of its float layers) and in bf16 with
    # bf16 units; float32 needs twice the bytes.
    assert inference.pixel_budget(cpu, torch.int8) >= 1920 * 1080
    monkeypatch.setattr(inference, "cpu_supports_bf16", lambda: True)
    assert inference.pixel_budget(cpu, torch.bfloat16) >= 1920 * 1080
    assert inference.pixel_budget(cpu, torch.float32) < 1920 * 1080
    # Without bf16 units oneDNN converts every bf16 operand to float32: a smaller budget than float32's.
    monkeypatch.setattr(inference, "cpu_supports_bf16", lambda: False)
    assert inference.pixel_budget(cpu, torch.bfloat16) < inference.pixel_budget(cpu, torch.float32)
    assert inference.pixel_budget(cpu, torch.int8, base_channels=32) == pytest.approx(inference.pixel_budget(cpu, torch.int8) / 2, abs=1)


def test_automatic_tiling_when_over_the_memory_budget(monkeypatch):
    import fastnst.infer.stylizer as inference

    stylizer = Stylizer(make_net(), "cpu", "fp32")
    x = photo(300, 400)
    untiled = stylizer.stylize_tensor(x, tile=0)
    monkeypatch.setattr(inference, "available_memory", lambda device: 26_000_000)  # a budget of ~256x256 px
    assert stylizer.pixel_budget() < 300 * 400
    seen = []
    tiled = stylizer.stylize_tensor(x, progress=lambda d, t: seen.append(t))
    assert seen and seen[0] > 2
    # Statistics now come from a copy downscaled to the budget, so the result is not the untiled one,
    # but the tiles agree with each other: it equals one untiled pass with those same statistics.
    same_stats = stylizer.net(x, stats=stylizer.norm_stats(x)).clamp(0, 1)
    assert psnr(tiled, same_stats) >= 35
    assert psnr(tiled, untiled) < psnr(tiled, same_stats)


def test_large_images_are_tiled_whatever_the_free_memory(monkeypatch):
    """Rough edge: with lots of free memory an 8000x8000 photo ran as ~6,900 px tiles and peaked at 13 GB.
    One pass is now capped (MAX_PASS_BYTES), so the tile and the statistics copy follow the cap."""
    import fastnst.infer.stylizer as inference

    monkeypatch.setattr(inference, "available_memory", lambda device: 1 << 40)  # a terabyte free
    monkeypatch.setattr(inference, "cpu_supports_bf16", lambda: True)  # bf16 units: ~250 B/px
    stylizer = Stylizer(make_net(16, 5), "cpu", "bf16")
    tile = stylizer._tile_size(8000, 8000, None, inference.DEFAULT_OVERLAP)
    assert tile is not None and 1024 <= tile <= 2048
    seen = []
    monkeypatch.setattr(inference, "_resize_to_pixels", lambda x, n: seen.append(n) or x[..., :8, :8])
    stylizer.norm_stats(torch.zeros(1, 3, 16, 16))
    assert seen and seen[0] <= 2.1 * tile * tile


def test_an_8_bit_image_gives_the_float_images_result():
    stylizer = Stylizer(make_net(), "cpu", "fp32")
    x8 = (photo(150, 170) * 255).round().to(torch.uint8)
    x = x8.float() / 255
    for tile in (0, 96):
        assert torch.equal(stylizer.stylize_tensor(x8, tile=tile, overlap=32), stylizer.stylize_tensor(x, tile=tile, overlap=32))
    assert torch.equal(stylizer.stylize_tensor(x8, strength=0.0), x)


# -- colour and strength ------------------------------------------------------------------------------


def test_ycbcr_round_trip():
    x = torch.rand(2, 3, 8, 9)
    assert torch.allclose(ycbcr_to_rgb(rgb_to_ycbcr(x)), x, atol=1e-5)
    grey = torch.full((3, 4, 4), 0.3)
    assert torch.allclose(rgb_to_ycbcr(grey)[1:], torch.full((2, 4, 4), 0.5), atol=1e-6)


def test_preserve_color_keeps_the_photos_chroma():
    stylizer = Stylizer(make_net(), "cpu", "auto")
    x = photo(64, 80)
    plain = stylizer.stylize_tensor(x)
    kept = stylizer.stylize_tensor(x, preserve_color=True)
    chroma = lambda img: rgb_to_ycbcr(img)[:, 1:]  # noqa: E731
    luma = lambda img: rgb_to_ycbcr(img)[:, :1]  # noqa: E731
    # Where the new luminance and the old chroma fit in the RGB cube (nothing clipped), chroma is exact.
    inside = ((kept > 0.002) & (kept < 0.998)).all(dim=1, keepdim=True).expand(-1, 2, -1, -1)
    assert inside.float().mean() > 0.3
    assert (chroma(kept) - chroma(x))[inside].abs().max() < 1e-3
    assert (chroma(plain) - chroma(x)).abs().mean() > 0.02  # the style did change the colours
    assert (luma(kept) - luma(plain))[inside[:, :1]].abs().max() < 1e-3  # and the luminance is the stylized one


def test_strength_blends_and_zero_returns_the_input():
    stylizer = Stylizer(make_net(), "cpu", "fp32")
    x = photo(32, 40)
    assert torch.equal(stylizer.stylize_tensor(x, strength=0.0), x)
    full = stylizer.stylize_tensor(x)
    half = stylizer.stylize_tensor(x, strength=0.5)
    assert torch.allclose(half, 0.5 * (x + full), atol=1e-5)
    with pytest.raises(ValueError):
        blend(x, full, 1.5)
    with pytest.raises(ValueError):
        preserve_color(full, x[..., :10])


# -- stylize_image: kinds, sizes ---------------------------------------------------------------------


def test_pil_in_pil_out_same_size(model_path):
    img = Image.fromarray((photo(37, 53)[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8))
    out = stylize_image(model_path, img)
    assert isinstance(out, Image.Image) and out.size == img.size and out.mode == "RGB"
    assert out.tobytes() != img.tobytes()


def test_strength_zero_returns_the_pil_input_exactly(model_path):
    img = Image.fromarray((photo(21, 30)[0, 0].numpy() * 255).astype(np.uint8), mode="L")
    out = stylize_image(model_path, img, strength=0.0)
    assert out.mode == "L" and out.tobytes() == img.tobytes()


def test_tensor_in_tensor_out(model_path):
    x3 = photo(33, 47)[0].double()
    out = stylize_image(model_path, x3, precision="fp32")
    assert out.shape == x3.shape and out.dtype == torch.float64
    assert 0 <= float(out.min()) and float(out.max()) <= 1
    batch = torch.cat([photo(33, 47), photo(33, 47, seed=1)])
    outb = stylize_image(model_path, batch, precision="fp32")
    assert outb.shape == batch.shape
    assert torch.allclose(outb[:1], out.float().unsqueeze(0), atol=1e-5)
    small = stylize_image(model_path, x3, max_size=20)
    assert max(small.shape[-2:]) == 20
    with pytest.raises(TypeError):
        stylize_image(model_path, torch.zeros(3, 8, 8, dtype=torch.uint8))


def test_load_model_is_cached_and_names_unknown_models(model_path):
    a = load_model(model_path)
    assert load_model(str(model_path)) is a
    assert a.style == "wave"
    with pytest.raises(ModelFileError) as info:
        load_model("no_such_style_anywhere")
    assert "no_such_style_anywhere" in str(info.value) and "\n" not in str(info.value)


def test_reuse_freed_memory_in_a_fresh_process():
    import subprocess
    import sys

    code = "import fastnst.runtime as r, sys; sys.exit(0 if r.reuse_freed_memory() else 3)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={**__import__("os").environ, "FASTNST_KEEP_FREED_MEMORY": "1",
                            "PYTHONPATH": str(__import__("pathlib").Path(__file__).resolve().parents[2])})
    if sys.platform.startswith("linux"):
        assert r.returncode == 0, r.stderr


def test_norm_channels_with_zero_scale_are_exact():
    """A norm channel with weight 0 outputs a constant (ReLU of its bias): the folding must keep it."""
    net = make_net(8, 2, seed=1)
    for m in net.modules():
        if isinstance(m, torch.nn.InstanceNorm2d):
            m.weight.data[:2] = 0.0
            m.bias.data[0], m.bias.data[1] = 0.7, -0.3
    x = photo(45, 61)
    with torch.no_grad():
        expected = net(x)
    assert torch.allclose(FusedNet(net, torch.float32)(x), expected, atol=2e-4, rtol=0)


def test_load_model_leaves_the_allocator_alone(model_path):
    """A library call changes no process-wide state: only the CLI and the benchmarks opt in to mallopt."""
    import fastnst.runtime as runtime

    runtime._MALLOC_TUNED = None
    load_model(model_path, "cpu")
    assert runtime._MALLOC_TUNED is None


def test_a_stylizer_names_the_path_it_runs():
    assert Stylizer(make_net(16, 5), "cpu", "fp32").path_name == "float32"
    assert Stylizer(make_net(16, 5), "cpu", "bf16").path_name == "bfloat16"
    from fastnst.infer.backends.int8 import int8_supported

    if int8_supported():
        name = Stylizer(make_net(16, 5), "cpu", "int8").path_name
        assert name.startswith("int8 (") and name.endswith(")")
