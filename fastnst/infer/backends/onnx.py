"""Export a style model to ONNX with dynamic height and width, checked against PyTorch with ONNX Runtime.

    python -m fastnst.export --model starry -o starry.onnx      (command line: fastnst/cli/export.py)

The ONNX graph takes ``image``: float32 (N, 3, H, W) RGB in [0, 1], H and W at least the network's
minimum side (8, or 4 * (largest residual dilation + 1); in the file's metadata), and returns
``stylized`` of the same shape (not clamped: clamp to [0, 1] before converting to 8 bits), exactly
what ``TransformNet`` computes in PyTorch. Needs the ``onnx`` extra (``pip install -e ".[onnx]"``).
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import torch

from fastnst.atomic import atomic_path
from fastnst.nets.modelfile import StyleModel
from fastnst.nets.transform_net import TransformNet, unwrap

DEFAULT_OPSET = 17
# The graph is traced at this size; the H and W axes are exported as dynamic.
EXAMPLE_SIZE = (64, 96)
# Checked at sizes other than the traced one, odd ones included (the pad-and-crop path).
VERIFY_SIZES = ((64, 96), (131, 77), (256, 200))


def export_onnx(model: StyleModel | TransformNet, path: str | os.PathLike, opset: int = DEFAULT_OPSET) -> Path:
    """Write ``model`` as an ONNX file (atomically) with dynamic batch, height and width."""
    net = unwrap(model.net if isinstance(model, StyleModel) else model)
    info = model.info if isinstance(model, StyleModel) else {}
    # TransformNet's pad-and-crop (fastnst.nets.geometry) is trace-safe: the exporter records it as graph
    # operations on the runtime size, so height and width stay dynamic.
    net = net.float().cpu().eval()
    example = torch.rand(1, 3, *EXAMPLE_SIZE)
    path = Path(path)
    with atomic_path(path) as tmp:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the tracer's notes on shape arithmetic are expected here
            torch.onnx.export(
                net,
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
