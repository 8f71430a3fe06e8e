"""The int8 inference path (fastnst.infer.backends.int8): quality against float32, the API around it, the
OpenMP opt-in of the command lines. Quality, not speed (speed: scripts/bench_stylize.py)."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import fastnst.infer.stylizer as inference
from fastnst.infer.backends.int8 import AUTO_MIN_PSNR, GUARD_MIN_PSNR, Int8Net, guard_image, guard_psnr
from fastnst.infer.color import blend
from fastnst.infer.stylizer import Stylizer, stylize_image
from fastnst.nets.modelfile import CHECKPOINTS_DIR, load_style_model
from fastnst.nets.transform_net import TransformerConfig, TransformNet
from fastnst.runtime import resolve_precision
from tests.support import random_style_net

pytestmark = pytest.mark.usefixtures("default_malloc")

SHIPPED = sorted(CHECKPOINTS_DIR.glob("*.safetensors"))


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a.double() - b.double()) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


@pytest.fixture(scope="module")
def starry():
    return load_style_model(CHECKPOINTS_DIR / "starry.safetensors").net.eval()


@pytest.fixture(scope="module")
def starry_dilated(starry):
    """starry's weights in the small_dilated layout, where init_from starts a fine-tune (dilation has no
    parameters): a trained network's activations through dilated convolutions."""
    c = starry.config
    config = TransformerConfig(base_channels=c.base_channels, num_residual_blocks=5, residual_dilations=(1, 2, 4, 2, 1))
    net = TransformNet(config).eval()
    net.load_state_dict(starry.state_dict())
    return net


@pytest.fixture(scope="module")
def photo() -> torch.Tensor:
    """A real photo (scikit-image's astronaut; a synthetic one without scikit-image), 8-bit values."""
    return guard_image(160)[..., :, :144]


def fp32(net, x: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return net(x).clamp(0, 1)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_int8_output_is_within_the_quality_floor_of_fp32(path, photo):
    net = load_style_model(path).net.eval()
    got = Int8Net(net)(photo).clamp(0, 1)
    assert got.shape == photo.shape and got.dtype == torch.float32
    assert psnr(got, fp32(net, photo)) >= GUARD_MIN_PSNR + 3  # trained models measure 40-46 dB


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_every_shipped_model_passes_the_auto_guard(path):
    # precision="auto" picks int8 for every shipped model; the guard image's margin over the 35 dB floor
    # is what keeps a model's worst real photo above it (kandinsky once passed 40 dB with a 31.7 dB photo).
    assert guard_psnr(load_style_model(path).net.eval()) >= AUTO_MIN_PSNR


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("dilations", [None, (1, 2, 4, 2, 1), (3, 1, 2)])
def test_int8_dilated_random_net_is_within_the_floor_of_fp32(photo, dilations):
    net = random_style_net(8, len(dilations or (1, 1)), norm_scale=(-1.5, 1.5), dilations=dilations)
    got = Int8Net(net)(photo).clamp(0, 1)
    assert psnr(got, fp32(net, photo)) >= 33  # random weights: 34-38 dB (int8_net.AUTO_MIN_PSNR's note)


@pytest.mark.usefixtures("one_thread")
def test_int8_dilated_trained_weights_are_within_the_guard(starry_dilated, photo):
    assert psnr(Int8Net(starry_dilated)(photo).clamp(0, 1), fp32(starry_dilated, photo)) >= GUARD_MIN_PSNR


@pytest.mark.parametrize("h,w", [(37, 53), (64, 30), (8, 9), (5, 7)])
@pytest.mark.parametrize("name", ["starry", "starry_dilated"])
def test_int8_handles_any_size(request, name, photo, h, w):
    net = request.getfixturevalue(name)
    x = photo[..., :h, :w].contiguous()
    got = Int8Net(net)(x)
    assert got.shape == x.shape and torch.isfinite(got).all()
    if min(h, w) >= 16:
        assert psnr(got.clamp(0, 1), fp32(net, x)) >= 30


def test_int8_batch_is_per_image(starry, photo):
    net = Int8Net(starry)
    batch = torch.cat([photo, photo.flip(-1)])
    out = net(batch)
    assert torch.equal(out[1:], net(photo.flip(-1)))


def test_u8_in_and_out_equals_the_float_path(starry, photo):
    """stylize_u8 (PIL's HWC uint8, no float copy) == rounding the float path's output."""
    net = Int8Net(starry)
    u8 = (photo[0].permute(1, 2, 0) * 255).round().to(torch.uint8).contiguous()
    got = net.stylize_u8(u8)
    expected = (net(photo)[0].clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0)
    assert got.shape == u8.shape and got.dtype == torch.uint8
    assert (got.int() - expected.int()).abs().max() <= 1


def test_native_passes_equal_the_torch_passes(starry, photo, monkeypatch):
    """fastnst.infer.backends.native: the native library and its torch fallback compute the same network. Not to
    the bit: a fused multiply-add moves a bf16 activation by an ulp here and there, which moves u8
    roundings downstream, so the two are two draws of int8 noise of the same size: equally close to
    float32 within ~1 dB (starry on this photo: 44.8 and 43.7 dB)."""
    net = Int8Net(starry)
    ref = fp32(starry, photo)
    native = psnr(net(photo).clamp(0, 1), ref)
    monkeypatch.setenv("FASTNST_NATIVE", "0")
    torch_passes = psnr(net(photo).clamp(0, 1), ref)
    assert min(native, torch_passes) >= GUARD_MIN_PSNR + 5 and abs(native - torch_passes) < 2


def test_recorded_statistics_reproduce_the_output(starry, photo):
    net = Int8Net(starry)
    out, stats = net.record_stats(photo)
    assert len(stats.layers) == net.num_norm_layers
    assert torch.equal(net(photo, stats=stats), out)


def test_stylizer_int8_tiles_preserves_colour_and_blends(starry, photo):
    stylizer = Stylizer(starry, "cpu", "int8")
    assert stylizer.dtype == torch.int8 and isinstance(stylizer.net, Int8Net)
    x = torch.nn.functional.interpolate(photo, size=(288, 256), mode="bilinear", align_corners=False).clamp(0, 1)
    ref = Stylizer(starry, "cpu", "fp32")
    untiled = stylizer.stylize_tensor(x, tile=0)
    # Tiles as large as the dilated starry's context needs (191 px receptive field: at 160 px tiles with
    # 64 px overlap even fp32 tiles differ from the whole image at 40 dB)
    tiled = stylizer.stylize_tensor(x, tile=192, overlap=96)
    assert psnr(tiled, untiled) >= 38  # tiles quantize with their own ranges: noise-level differences
    assert psnr(tiled, ref.stylize_tensor(x, tile=192, overlap=96)) >= GUARD_MIN_PSNR
    kept = stylizer.stylize_tensor(x, preserve_color=True)
    assert psnr(kept, ref.stylize_tensor(x, preserve_color=True)) >= GUARD_MIN_PSNR
    half = stylizer.stylize_tensor(x, strength=0.5)
    assert torch.allclose(half, blend(x, untiled, 0.5), atol=1e-5)


def test_pil_in_pil_out_on_int8(starry, photo):
    img = Image.fromarray((photo[0].permute(1, 2, 0) * 255).round().byte().numpy())
    before = np.asarray(img).copy()
    out = stylize_image(starry, img, precision="int8")
    assert isinstance(out, Image.Image) and out.size == img.size and out.mode == "RGB"
    assert np.array_equal(np.asarray(img), before)  # the input is never written
    ref = stylize_image(starry, img, precision="fp32")
    err = np.asarray(out, dtype=np.float64) / 255 - np.asarray(ref, dtype=np.float64) / 255
    assert 10 * math.log10(1 / float((err**2).mean())) >= GUARD_MIN_PSNR


def test_auto_uses_int8_only_where_the_guard_holds(starry, monkeypatch):
    monkeypatch.setattr(inference, "cpu_supports_int8", lambda: True)
    trained = Stylizer(starry, "cpu", "auto")
    assert trained.dtype == torch.int8 and trained.int8_psnr >= AUTO_MIN_PSNR
    untrained = Stylizer(random_style_net(16, 5, norm_scale=(-1.5, 1.5)), "cpu", "auto")
    assert untrained.int8_psnr < AUTO_MIN_PSNR and untrained.dtype != torch.int8
    monkeypatch.setattr(inference, "cpu_supports_int8", lambda: False)
    assert Stylizer(starry, "cpu", "auto").dtype != torch.int8


def test_guard_measures_against_fp32(starry):
    assert guard_psnr(starry) == pytest.approx(guard_psnr(starry, Int8Net(starry)))
    assert guard_psnr(starry) >= AUTO_MIN_PSNR


def test_int8_is_a_cpu_precision():
    assert resolve_precision("int8", torch.device("cpu")) == torch.int8
    with pytest.raises(ValueError, match="int8 is for CPUs"):
        resolve_precision("int8", torch.device("cuda"))


def test_cli_stylizes_with_precision_int8(tmp_path, photo):
    from fastnst.cli.stylize import main

    src = tmp_path / "in.png"
    Image.fromarray((photo[0].permute(1, 2, 0) * 255).round().byte().numpy()).save(src)
    assert main(["--model", "starry", str(src), "-o", str(tmp_path / "out.png"), "--precision", "int8", "--quiet"]) == 0
    assert Image.open(tmp_path / "out.png").size == (photo.shape[-1], photo.shape[-2])


# -- the command lines' OpenMP opt-in -----------------------------------------------------------------


def _env_after(code: str, **env: str) -> str:
    full = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    full.update(env)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full, check=True)
    return out.stdout.strip()


def test_stylize_command_opts_into_a_short_openmp_spin_before_torch_loads():
    code = "import os, sys; import fastnst.stylize; print(os.environ.get('GOMP_SPINCOUNT'))"
    assert _env_after(code) == "1000"
    assert _env_after(code, GOMP_SPINCOUNT="5") == "5"  # the user's setting wins
    assert _env_after(code, OMP_WAIT_POLICY="active") == "None"


def test_library_use_leaves_openmp_alone():
    code = ("import os, fastnst, torch; fastnst.load_model('starry', 'cpu', 'bf16'); "
            "from fastnst.cli.openmp import prefer_short_spin; r = prefer_short_spin(); "
            "print(os.environ.get('GOMP_SPINCOUNT'), r)")
    assert _env_after(code) == "None False"  # too late once torch is loaded: not set at all


def test_uint8_tensors_go_straight_into_the_int8_network(starry, photo):
    stylizer = Stylizer(starry, "cpu", "int8")
    u8 = (photo * 255).round().to(torch.uint8)
    assert torch.equal(stylizer.stylize_tensor(u8), stylizer.stylize_tensor(photo))


def test_kept_buffers_give_the_same_output_and_follow_the_size(starry, photo):
    net = Int8Net(starry)
    first = net(photo)
    kept = dict(net.buffers._local.kept)
    assert kept and torch.equal(net(photo), first)  # the second pass runs in the first one's buffers
    assert all(a is b for a, b in zip(kept.values(), net.buffers._local.kept.values()))
    small = photo[..., :64, :64].contiguous()
    assert torch.equal(net(small), Int8Net(starry)(small))
    assert not set(kept) & set(net.buffers._local.kept)  # a new size drops the old size's buffers


def test_each_thread_has_its_own_buffers(starry, photo):
    from concurrent.futures import ThreadPoolExecutor

    net = Int8Net(starry)
    other = photo.flip(-1).contiguous()
    want = [net(photo), net(other)]
    with ThreadPoolExecutor(2) as pool:
        for _ in range(3):
            got = list(pool.map(net, [photo, other]))
            assert all(torch.equal(g, w) for g, w in zip(got, want))
