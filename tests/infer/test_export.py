"""ONNX export: dynamic sizes, parity with PyTorch under ONNX Runtime, the command line."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fastnst.cli.export import main
from fastnst.infer.backends.onnx import EXAMPLE_SIZE, export_onnx, verify_onnx
from fastnst.nets.modelfile import load_style_model, save_style_model
from tests.support import random_style_net

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")


def save_model(tmp_path_factory, dilations=None):
    net = random_style_net(base_channels=8, blocks=2, dilations=dilations)
    path = tmp_path_factory.mktemp("m") / "ink.safetensors"
    save_style_model(path, net, {"style": "ink", "steps": 5})
    return path


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return save_model(tmp_path_factory)


@pytest.fixture(scope="module", params=[None, (2, 4)], ids=["undilated", "dilated"])
def any_model_path(tmp_path_factory, request):
    return save_model(tmp_path_factory, request.param)


def test_onnx_matches_pytorch_at_other_sizes(any_model_path, tmp_path):
    model = load_style_model(any_model_path)
    out = export_onnx(model, tmp_path / "ink.onnx")
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    m = model.config.min_side  # the smallest input the graph takes: 8, 20 with dilation 4
    for shape in [(1, 3, 131, 77), (2, 3, 40, 56), (1, 3, m, m + 1), (1, 3, *EXAMPLE_SIZE)]:
        x = torch.rand(*shape, generator=torch.Generator().manual_seed(sum(shape)))
        with torch.no_grad():
            expected = model.net(x).numpy()
        (got,) = session.run(["stylized"], {"image": x.numpy()})
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert '"base_channels": 8' in meta["fastnst.model_config"] and '"style": "ink"' in meta["fastnst.info"]
    assert f"H,W >= {m}" in meta["fastnst.io"]
    assert model.config.residual_dilations is None or '"residual_dilations": [2, 4]' in meta["fastnst.model_config"]
    assert verify_onnx(out, model.net) < 1e-4


def test_export_command_line(model_path, tmp_path, capsys):
    assert main(["--model", str(model_path), "-o", str(tmp_path / "o" / "ink.onnx")]) == 0
    out = capsys.readouterr().out
    assert "wrote" in out and "verified with ONNX Runtime" in out
    assert (tmp_path / "o" / "ink.onnx").is_file()
    assert not [p for p in (tmp_path / "o").iterdir() if p.name.endswith(".tmp")]
    assert main(["--model", "no_such_model", "-o", str(tmp_path / "x.onnx")]) == 2
    assert "error: no_such_model" in capsys.readouterr().err


def test_export_takes_o_like_the_other_commands_and_refuses_to_overwrite(model_path, tmp_path, capsys):
    out = tmp_path / "ink.onnx"
    assert main(["--model", str(model_path), "-o", str(out), "--no-verify"]) == 0
    assert main(["--model", str(model_path), "--output", str(out), "--no-verify"]) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert main(["--model", str(model_path), "--onnx", str(out), "--no-verify", "--overwrite"]) == 0  # the old spelling


def test_export_to_a_directory_writes_model_onnx_inside_it(model_path, tmp_path, capsys):
    folder = tmp_path / "exports"
    folder.mkdir()
    assert main(["--model", str(model_path), "-o", f"{folder}/", "--no-verify"]) == 0
    assert main(["--model", str(model_path), "-o", str(folder), "--no-verify"]) == 1  # now that file exists
    assert f"{folder / 'ink.onnx'} exists (use --overwrite" in capsys.readouterr().err
    assert main(["--model", str(model_path), "-o", str(folder), "--no-verify", "--overwrite"]) == 0
    assert [p.name for p in folder.iterdir()] == ["ink.onnx"]
    assert main(["--model", str(model_path), "-o", f"{tmp_path / 'new'}/", "--no-verify"]) == 0  # made for it
    assert (tmp_path / "new" / "ink.onnx").is_file()


def test_export_under_a_file_is_a_clear_error(model_path, tmp_path, capsys):
    (tmp_path / "afile").write_text("not a directory")
    assert main(["--model", str(model_path), "-o", str(tmp_path / "afile" / "x.onnx"), "--no-verify"]) == 1
    assert capsys.readouterr().err.strip() == f"error: -o {tmp_path / 'afile' / 'x.onnx'}: {tmp_path / 'afile'} is not a directory"
