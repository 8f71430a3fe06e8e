"""Export a style model to ONNX with dynamic height and width, checked against PyTorch with ONNX Runtime.

    python -m fastnst.export --model starry -o starry.onnx      (command line: fastnst/cli/export.py)

The ONNX graph takes ``image``: float32 (N, 3, H, W) RGB in [0, 1], H and W at least the network's
minimum side (8, or 4 * (largest residual dilation + 1); in the file's metadata), and returns
``stylized`` of the same shape (not clamped: clamp to [0, 1] before converting to 8 bits): what
``TransformNet`` computes in PyTorch, to float32 rounding. Needs the ``onnx`` extra
(``pip install -e ".[onnx]"``).

The graph is the inference plan (fastnst.infer.plan) in standard ONNX operators: :class:`PlanModule`
maps each step to convolutions, padding, InstanceNormalization and ReLU, and the sub-pixel phases to
slices and interleaving reshapes, all on the runtime size.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from fastnst.atomic import atomic_path
from fastnst.infer.plan import Buffer, Conv, NetworkPlan, NormReLU, PhaseConv, ResidualAdd, build_plan
from fastnst.nets.geometry import pad_to_multiple_of_4
from fastnst.nets.modelfile import StyleModel
from fastnst.nets.transform_net import TransformNet, unwrap

DEFAULT_OPSET = 17
# The graph is traced at this size; the H and W axes are exported as dynamic.
EXAMPLE_SIZE = (64, 96)
# Checked at sizes other than the traced one, odd ones included (the pad-and-crop path).
VERIFY_SIZES = ((64, 96), (131, 77), (256, 200))


def _interleave(phases: list[torch.Tensor]) -> torch.Tensor:
    """Four (N, C, h, w) phases (a, b) in order (0, 0), (0, 1), (1, 0), (1, 1) -> the (N, C, 2h, 2w)
    map with phase (a, b) at pixels (2i + a, 2j + b) (depth-to-space, with no shape arithmetic)."""
    rows = [torch.stack(phases[2 * a : 2 * a + 2], dim=-1).flatten(-2) for a in range(2)]  # (N, C, h, 2w)
    return torch.stack(rows, dim=3).flatten(2, 3)


def _phases(y: torch.Tensor, channels: int) -> list[torch.Tensor]:
    """The 4 phases of a 2x2 phase conv's (N, 4*C, h+1, w+1) output: phase (a, b) sits at offset (a, b)."""
    rows = (slice(0, -1), slice(1, None))
    return [y[:, g * channels : (g + 1) * channels, rows[g // 2], rows[g % 2]] for g in range(4)]


def _pad(x: torch.Tensor, buffer: Buffer) -> torch.Tensor:
    """x padded as ``buffer`` says, and in 2x2 phase-major blocks for the space-to-depth layout."""
    if buffer.layout != "space_to_depth":
        return F.pad(x, (buffer.pad,) * 4, mode=buffer.mode)
    x = F.pad(x, (2 * buffer.pad,) * 4, mode=buffer.mode)
    return torch.cat([x[:, :, p::2, q::2] for p in range(2) for q in range(2)], dim=1)


class PlanModule(nn.Module):
    """The plan's steps as float32 operators that trace to standard ONNX (a plain module, run by
    PyTorch too). The plan's tensors are the graph's constants."""

    def __init__(self, plan: NetworkPlan) -> None:
        super().__init__()
        self.plan = plan.to("cpu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2], x.shape[-1]
        p = self.plan.image_pad
        act = F.pad(pad_to_multiple_of_4(x, self.plan.config.min_side), (p, p, p, p), mode="reflect")
        stream = stream_out = None
        for step in self.plan.steps:
            if isinstance(step, (Conv, PhaseConv)):
                src = _pad(stream, stream_out) if step.reads == "stream" else act
                stride, dilation = (step.stride, step.dilation) if isinstance(step, Conv) else (1, 1)
                y = F.conv2d(src, step.weight, stride=stride, dilation=dilation)
            elif isinstance(step, NormReLU):
                if step.phase_channels:
                    y = _interleave(_phases(y, step.phase_channels))
                z = F.relu(F.instance_norm(y, weight=step.norm.gamma, bias=step.norm.beta, eps=step.norm.eps))
                if step.opens_stream:
                    stream, stream_out = z, step.writes
                else:
                    act = _pad(z, step.writes)
            elif isinstance(step, ResidualAdd):
                stream = stream + F.instance_norm(y, weight=step.norm.gamma, bias=step.norm.beta, eps=step.norm.eps)
                stream_out = step.writes
            else:  # the output conv on 2x2 blocks, back to full resolution
                o = F.conv2d(act, step.weight, step.bias)
                k = step.channels
                return _interleave([o[:, g * k : (g + 1) * k] for g in range(4)])[..., :h, :w]
        raise ValueError("the plan has no output step")


def export_onnx(model: StyleModel | TransformNet, path: str | os.PathLike, opset: int = DEFAULT_OPSET) -> Path:
    """Write ``model`` as an ONNX file (atomically) with dynamic batch, height and width."""
    net = unwrap(model.net if isinstance(model, StyleModel) else model)
    info = model.info if isinstance(model, StyleModel) else {}
    # The pad-and-crop (fastnst.nets.geometry) and the phase slicing are trace-safe: the exporter
    # records them as graph operations on the runtime size, so height and width stay dynamic.
    graph = PlanModule(build_plan(net.float().cpu()))
    example = torch.rand(1, 3, *EXAMPLE_SIZE)
    path = Path(path)
    with atomic_path(path) as tmp:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the tracer's notes on shape arithmetic are expected here
            torch.onnx.export(
                graph,
                (example,),
                tmp,
                dynamo=False,
                input_names=["image"],
                output_names=["stylized"],
                dynamic_axes={"image": {0: "batch", 2: "height", 3: "width"}, "stylized": {0: "batch", 2: "height", 3: "width"}},
                opset_version=opset,
                do_constant_folding=True,
            )
        _add_metadata(tmp, net, info)
    return path


def _add_metadata(path: str, net: TransformNet, info: dict) -> None:
    try:
        import onnx
    except ImportError:  # metadata is a nicety; the graph is complete without it
        return
    proto = onnx.load(path)
    meta = {
        "fastnst.model_config": json.dumps(net.config.to_dict()),
        "fastnst.info": json.dumps(info, default=str),
        "fastnst.io": f"image: float32 (N,3,H,W) RGB in [0,1], H,W >= {net.config.min_side} -> stylized: same shape, clamp to [0,1]",
    }
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, path)


def verify_onnx(path: str | os.PathLike, net: TransformNet, sizes=VERIFY_SIZES, seed: int = 0) -> float:
    """Largest |ONNX Runtime - PyTorch| over random images of ``sizes``; raises ImportError without onnxruntime."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    net = net.float().cpu().eval()
    generator = torch.Generator().manual_seed(seed)
    worst = 0.0
    for h, w in sizes:
        x = torch.rand(1, 3, h, w, generator=generator)
        with torch.no_grad():
            expected = net(x)
        (got,) = session.run(["stylized"], {"image": x.numpy()})
        if tuple(got.shape) != tuple(expected.shape):
            raise AssertionError(f"ONNX output shape {got.shape} != PyTorch {tuple(expected.shape)} at {h}x{w}")
        worst = max(worst, float((torch.from_numpy(got) - expected).abs().max()))
    return worst
