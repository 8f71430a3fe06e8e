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

    from fastnst.checkpoint import CheckpointError, load_checkpoint

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


def test_unwritable_reason_names_the_part_of_the_path_that_is_in_the_way(tmp_path, monkeypatch):
    from fastnst.atomic import unwritable_reason

    (tmp_path / "afile").write_text("x")
    assert unwritable_reason(tmp_path) is None
    assert unwritable_reason(tmp_path / "new" / "deeper") is None  # made when written
    assert unwritable_reason(tmp_path / "afile") == f"{tmp_path / 'afile'} is not a directory"
    assert unwritable_reason(tmp_path / "afile" / "sub") == f"{tmp_path / 'afile'} is not a directory"
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # as a non-root user in a read-only folder
    assert unwritable_reason(tmp_path / "new") == f"cannot write in {tmp_path} (permission denied)"


def test_a_checkpoint_write_that_fails_is_one_clear_error_and_keeps_the_previous_one(tmp_path, monkeypatch):
    from fastnst import checkpoint

    path = tmp_path / "checkpoints" / "last.pt"
    checkpoint.save_checkpoint(path, {"step": 1})
    before = path.read_bytes()

    def disk_full(obj, f):  # what torch's zip writer raises when the disk fills up
        f.write(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 40960 vs 40848")

    monkeypatch.setattr(checkpoint.torch, "save", disk_full)
    with pytest.raises(checkpoint.CheckpointError, match=r"last.pt: could not write the checkpoint \(.*unexpected pos.* MB free "
                                                         r"there\); the previous one, if any, is unchanged"):
        checkpoint.save_checkpoint(path, {"step": 2})
    assert path.read_bytes() == before and sorted(p.name for p in path.parent.iterdir()) == ["last.pt"]


def test_a_style_model_given_as_a_checkpoint_points_to_init_from(tmp_path):
    from fastnst.checkpoint import CheckpointError, load_checkpoint

    model = save_style_model(tmp_path / "starry.safetensors", random_style_net(base_channels=4, blocks=1), {"style": "starry"})
    with pytest.raises(CheckpointError, match=f"a style model file, not a training checkpoint .*init_from={model}"):
        load_checkpoint(model)


def test_without_replace_a_file_written_meanwhile_is_kept(tmp_path):
    target = tmp_path / "out.png"
    with pytest.raises(FileExistsError, match="written meanwhile by another process"):
        with atomic_path(target, replace=False) as tmp:
            tmp.write_bytes(b"mine")
            target.write_bytes(b"theirs")
    assert target.read_bytes() == b"theirs" and sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]
    with atomic_path(tmp_path / "new.png", replace=False) as tmp:
        tmp.write_bytes(b"mine")
    assert (tmp_path / "new.png").read_bytes() == b"mine" and len(list(tmp_path.iterdir())) == 2
