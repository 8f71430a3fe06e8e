"""Atomic writes: all or nothing, nothing left behind, and the permissions a plain open() would give."""

from __future__ import annotations

import os

import pytest

from fastnst.atomic import atomic_path, save_json
from fastnst.nets.modelfile import save_style_model
from tests.support import random_style_net


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_written_files_get_the_usual_permissions(tmp_path):
    # mkstemp's 0600 once ended up on shared model files; the usual mode is 0666 minus the umask.
    expected = 0o666 & ~_umask()
    model = save_style_model(tmp_path / "m" / "ink.safetensors", random_style_net(4, 1), {"style": "ink"})
    record = save_json({"a": 1}, tmp_path / "j" / "r.json")
    for path in (model, record):
        assert path.stat().st_mode & 0o777 == expected, path


def test_failure_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_an_unwritable_directory_names_the_output_not_the_temporary_file(tmp_path, monkeypatch):
    import fastnst.atomic as atomic

    real_open = os.open

    def refuse(path, *args, **kwargs):
        if str(path).endswith(".tmp"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(atomic.os, "open", refuse)
    target = tmp_path / "out.png"
    with pytest.raises(PermissionError) as info:
        with atomic_path(target):
            pass
    assert info.value.filename == str(target) and ".tmp" not in str(info.value)


def test_a_checkpoint_holding_objects_is_refused_without_torchs_unsafe_advice(tmp_path):
    import torch

    from fastnst.training.checkpoint import CheckpointError, load_checkpoint

    path = tmp_path / "last.pt"
    torch.save({"format": "fastnst.train-checkpoint", "thing": _Anything()}, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    for advice in ("weights_only", "Weights only", "can still be loaded", "trust the source"):
        assert advice not in message


class _Anything:  # a class torch's weights_only loader refuses
    pass
