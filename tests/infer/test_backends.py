"""Every backend executes the one inference plan (fastnst.infer.plan) and computes the network's
function: fused float32 and bf16, int8 (where PyTorch has oneDNN's quantized convolutions) and the
ONNX graph (where onnxruntime is installed), against the plain TransformNet, on a random-weight
network with negative norm scales and dilated blocks and on a shipped model. Tolerances are those of
test_inference.py, test_int8.py and test_export.py."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fastnst.infer.backends.base import Backend, NormStats
from fastnst.infer.backends.fused import FusedNet
from fastnst.infer.backends.int8 import GUARD_MIN_PSNR, Int8Net, guard_image
from fastnst.infer.plan import NormReLU, ResidualAdd, build_plan
from fastnst.infer.stylizer import Stylizer
from fastnst.nets.modelfile import CHECKPOINTS_DIR, load_style_model
from fastnst.video.temporal import FrameStylizer, Stabilization
from tests.support import random_style_net

pytestmark = pytest.mark.usefixtures("default_malloc")

HAS_INT8 = hasattr(torch.ops.onednn, "qconv2d_pointwise")
BUILD = {
    "fused-fp32": lambda net: FusedNet(net, torch.float32),
    "fused-bf16": lambda net: FusedNet(net, torch.bfloat16),
    "int8": Int8Net,
}
BACKENDS = ["fused-fp32", "fused-bf16", pytest.param("int8", marks=pytest.mark.skipif(not HAS_INT8, reason="no oneDNN int8 conv"))]


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a.double() - b.double()) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


@pytest.fixture(scope="module", params=["random", "starry"])
def net(request):
    if request.param == "random":  # sign flips (negative scales) and dilated blocks
        return random_style_net(base_channels=8, blocks=3, norm_scale=(-1.5, 1.5), dilations=(1, 2, 1))
    return load_style_model(CHECKPOINTS_DIR / "starry.safetensors").net.eval()


@pytest.fixture(scope="module")
def photo() -> torch.Tensor:
    """A real photo (scikit-image's astronaut; a synthetic one without scikit-image), 8-bit values, odd width."""
    return guard_image(160)[..., :, :141]


def reference(net, x: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return net(x)


def within_tolerance(kind: str, trained: bool, got: torch.Tensor, expected: torch.Tensor) -> None:
    if kind == "fused-fp32":
        assert torch.allclose(got, expected, atol=2e-4, rtol=0), (got - expected).abs().max()
    elif kind == "fused-bf16":
        assert psnr(got.clamp(0, 1), expected.clamp(0, 1)) >= 35
    else:  # int8: trained models measure 40-46 dB, random weights 34-38 dB
        assert psnr(got.clamp(0, 1), expected.clamp(0, 1)) >= (GUARD_MIN_PSNR + 3 if trained else 33)


def test_the_plan_has_one_norm_step_per_instance_norm_in_layer_order(net):
    plan = build_plan(net)
    norms = [s for s in plan.steps if isinstance(s, (NormReLU, ResidualAdd))]
    assert [s.index for s in norms] == list(range(sum(isinstance(m, torch.nn.InstanceNorm2d) for m in net.modules())))
    assert all(float(s.norm.gamma.min()) >= 0 for s in norms)
    assert sum(isinstance(s, ResidualAdd) for s in plan.steps) == net.config.num_residual_blocks


@pytest.mark.parametrize("kind", BACKENDS)
def test_every_backend_computes_the_network(kind, net, photo, request):
    backend: Backend = BUILD[kind](net)
    trained = request.node.callspec.params["net"] == "starry"
    within_tolerance(kind, trained, backend(photo), reference(net, photo))


@pytest.mark.parametrize("kind", BACKENDS)
def test_every_backend_records_reuses_and_smooths_statistics(kind, net, photo):
    backend: Backend = BUILD[kind](net)
    out, stats = backend.record_stats(photo)
    assert len(stats.layers) == backend.num_norm_layers == build_plan(net).num_norm_layers
    assert torch.allclose(backend(photo, stats=stats), out, atol=1e-5)
    first, running = backend.smoothed(photo, None, 0.5)
    assert torch.equal(first, out) and isinstance(running, NormStats)
    darker = photo * 0.8
    smoothed, blended = backend.smoothed(darker, running, 0.5)
    own = backend(darker)
    assert len(blended.layers) == backend.num_norm_layers
    assert not torch.allclose(smoothed, own, atol=1e-3)  # pulled towards the previous frame's statistics


@pytest.mark.parametrize("precision", ["fp32", pytest.param("int8", marks=pytest.mark.skipif(not HAS_INT8, reason="no int8"))])
def test_frame_stylizer_smooths_statistics_with_any_backend(precision, photo):
    net = random_style_net(base_channels=8, blocks=2)
    frames = FrameStylizer(Stylizer(net, "cpu", precision), stabilization=Stabilization(stats_momentum=0.5, blend=0.0))
    frame = (photo[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    outs = [frames(np.ascontiguousarray(frame[:, ::-1] if i % 2 else frame)) for i in range(3)]
    assert all(o.shape == frame.shape and o.dtype == np.uint8 for o in outs)


def test_the_onnx_graph_computes_the_network(net, photo, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from fastnst.infer.backends.onnx import export_onnx

    path = export_onnx(net, tmp_path / "net.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(["stylized"], {"image": photo.numpy()})
    np.testing.assert_allclose(got, reference(net, photo).numpy(), atol=1e-4, rtol=0)
