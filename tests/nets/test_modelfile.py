"""Style model files: round trip, and refusal of bad files without unpickling anything."""

from __future__ import annotations

import json
import pickle

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from fastnst.nets.modelfile import ModelFileError, list_shipped_models, load_style_model, read_model_header, save_style_model
from fastnst.nets.transform_net import TransformerConfig, TransformNet

SMALL = TransformerConfig(base_channels=8, num_residual_blocks=2)


@pytest.fixture()
def model_file(tmp_path):
    torch.manual_seed(0)
    net = TransformNet(SMALL)
    info = {"style": "starry", "steps": 123, "loss_weights": {"content": 1.0, "style": 1e5, "tv": 0.0}}
    return save_style_model(tmp_path / "starry.safetensors", net, info), net


def test_round_trip_rebuilds_from_file_alone(model_file):
    path, net = model_file
    loaded = load_style_model(path)
    assert loaded.config == SMALL
    assert loaded.info["steps"] == 123 and loaded.style == "starry"
    x = torch.rand(1, 3, 24, 24)
    with torch.no_grad():
        assert torch.equal(loaded.net(x), net.eval()(x))
    assert not loaded.net.training
    assert list(path.parent.glob("*.tmp")) == []


def test_dilations_survive_the_round_trip_as_a_plain_list(tmp_path):
    torch.manual_seed(0)
    config = TransformerConfig(base_channels=8, num_residual_blocks=2, residual_dilations=(2, 3))
    net = TransformNet(config).eval()
    path = save_style_model(tmp_path / "wide.safetensors", net)
    with safe_open(str(path), "pt") as f:
        assert json.loads(f.metadata()["model_config"])["residual_dilations"] == [2, 3]
    loaded = load_style_model(path)
    assert loaded.config == config
    x = torch.rand(1, 3, 27, 30)
    with torch.no_grad():
        assert torch.equal(loaded.net(x), net(x))


def test_a_header_without_dilations_is_the_undilated_network(tmp_path):
    """Files written before dilation existed: no key, the network they were trained as, same output."""
    torch.manual_seed(0)
    net = TransformNet(SMALL).eval()
    meta = {"format": "fastnst.style-model", "format_version": "1",
            "model_config": '{"arch": "johnson2016", "base_channels": 8, "num_residual_blocks": 2}'}
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, tmp_path / "old.safetensors", metadata=meta)
    loaded = load_style_model(tmp_path / "old.safetensors")
    assert loaded.config == SMALL and loaded.config.residual_dilations is None
    x = torch.rand(1, 3, 21, 18)
    with torch.no_grad():
        assert torch.equal(loaded.net(x), net(x))
    # Saved again, the header is what it was: older fastnst versions read it.
    with safe_open(str(save_style_model(tmp_path / "again.safetensors", loaded.net)), "pt") as f:
        assert f.metadata()["model_config"] == meta["model_config"]


@pytest.mark.parametrize("path", list_shipped_models(), ids=lambda p: p.stem)
def test_shipped_models_build_the_dilations_their_header_names(path):
    """Shipped models may have dilated residual blocks (checkpoints/README.md): the network built from
    the file alone must use exactly the dilations its header records."""
    with safe_open(str(path), "pt") as f:
        dilations = json.loads(f.metadata()["model_config"]).get("residual_dilations") or [1]
    net = load_style_model(path).net
    used = {m.dilation[0] for m in net.modules() if isinstance(m, torch.nn.Conv2d)}
    assert used == set(dilations) | {1}


def test_invalid_dilations_in_a_header_are_refused(tmp_path):
    net = TransformNet(SMALL)
    meta = {"format": "fastnst.style-model", "format_version": "1",
            "model_config": '{"arch": "johnson2016", "base_channels": 8, "num_residual_blocks": 2, "residual_dilations": [2]}'}
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, tmp_path / "bad.safetensors", metadata=meta)
    with pytest.raises(ModelFileError, match="bad.safetensors.*one per residual block"):
        load_style_model(tmp_path / "bad.safetensors")


def test_saves_unwrapped_module_from_compile_wrapper(tmp_path):
    net = TransformNet(SMALL)

    class Wrapper(torch.nn.Module):  # stands in for torch.compile's OptimizedModule
        def __init__(self, m):
            super().__init__()
            self._orig_mod = m

    path = save_style_model(tmp_path / "w.safetensors", Wrapper(net))
    assert load_style_model(path).config == SMALL


def test_truncated_file_refused(model_file, tmp_path):
    path, _ = model_file
    data = path.read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="cut.safetensors"):
        load_style_model(cut)


def test_file_for_another_architecture_refused(tmp_path):
    net = TransformNet(SMALL)
    tensors = {k: v.contiguous() for k, v in net.state_dict().items()}
    meta = {"format": "fastnst.style-model", "format_version": "1",
            "model_config": '{"arch": "johnson2016", "base_channels": 16, "num_residual_blocks": 2}'}
    save_file(tensors, tmp_path / "other.safetensors", metadata=meta)
    with pytest.raises(ModelFileError, match="other.safetensors.*shape"):
        load_style_model(tmp_path / "other.safetensors")

    meta["model_config"] = '{"arch": "cyclegan", "base_channels": 8, "num_residual_blocks": 2}'
    save_file(tensors, tmp_path / "gan.safetensors", metadata=meta)
    with pytest.raises(ModelFileError, match="gan.safetensors.*unsupported architecture"):
        read_model_header(tmp_path / "gan.safetensors")

    # A plain safetensors file without our header (e.g. someone else's weights).
    save_file(tensors, tmp_path / "plain.safetensors")
    with pytest.raises(ModelFileError, match="not a fastnst style model"):
        load_style_model(tmp_path / "plain.safetensors")

    # Right header, weights of a different depth.
    meta["model_config"] = '{"arch": "johnson2016", "base_channels": 8, "num_residual_blocks": 3}'
    save_file(tensors, tmp_path / "deep.safetensors", metadata=meta)
    with pytest.raises(ModelFileError, match="missing"):
        load_style_model(tmp_path / "deep.safetensors")


class _Exploit:
    def __reduce__(self):
        import os

        return (os.system, ("touch PWNED",))


def test_pickle_that_would_run_code_is_refused_without_running(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    evil = tmp_path / "evil.safetensors"
    evil.write_bytes(pickle.dumps({"weights": _Exploit()}))
    torch_evil = tmp_path / "evil_torch.safetensors"
    torch.save({"x": _Exploit()}, torch_evil)
    evil_checkpoint = tmp_path / "last.pt"  # a .pt is read as a training checkpoint, weights_only
    torch.save({"x": _Exploit()}, evil_checkpoint)
    for path in (evil, torch_evil, evil_checkpoint):
        with pytest.raises(ModelFileError, match=path.name):
            load_style_model(path)
    assert not (tmp_path / "PWNED").exists()


def test_a_pt_file_that_is_not_a_training_checkpoint_is_refused_in_one_line(tmp_path):
    other = tmp_path / "weights.pt"
    torch.save(TransformNet(SMALL).state_dict(), other)  # bare weights: no network config to rebuild from
    with pytest.raises(ModelFileError, match="weights.pt: not a fastnst training checkpoint") as err:
        load_style_model(other)
    assert "\n" not in str(err.value)
    with pytest.raises(ModelFileError, match="not found"):
        read_model_header(tmp_path / "none.pt")


def test_missing_file_and_nan_weights(tmp_path):
    with pytest.raises(ModelFileError, match="not found"):
        load_style_model(tmp_path / "none.safetensors")
    net = TransformNet(SMALL)
    with torch.no_grad():
        net.encoder[0][0][1].weight[0, 0, 0, 0] = float("nan")
    path = save_style_model(tmp_path / "nan.safetensors", net)
    with pytest.raises(ModelFileError, match="NaN"):
        load_style_model(path)


def test_resolve_model_by_name_or_path(tmp_path, monkeypatch, model_file):
    import fastnst.nets.modelfile as mf

    path, _ = model_file
    monkeypatch.setattr(mf, "CHECKPOINTS_DIR", tmp_path)
    assert mf.resolve_model_path("starry") == path
    assert mf.resolve_model_path(str(path)) == path
    assert mf.load_style_model("starry").style == "starry"
    with pytest.raises(ModelFileError, match="nosuch.*shipped: starry"):
        mf.resolve_model_path("nosuch")
