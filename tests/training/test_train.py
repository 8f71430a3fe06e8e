"""The training loop, in-process, on tiny images with a random VGG: outputs, warm-up, resume, stops."""

from __future__ import annotations

import logging
import signal

import pytest
import torch
from safetensors import safe_open

from fastnst.checkpoint import load_checkpoint
from fastnst.cli.train import _resumed_config
from fastnst.nets.modelfile import load_style_model
from fastnst.nets.transform_net import TransformNet
from fastnst.training.config import ConfigError
from fastnst.training.data import DataError
from fastnst.training.loop import NonFiniteLossError, TrainingError, TrainingInterrupted, train
from fastnst.training.phases import lr_factor
from tests.support import compose, make_photo_folder, tiny_overrides

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return make_photo_folder(tmp_path_factory.mktemp("photos"), count=8)


def run(photos, out, callbacks=(), **extra):
    overrides = tiny_overrides(photos, out, **extra)
    cfg = compose(overrides)
    run_dir = out / "run"
    return train(cfg, run_dir, callbacks=callbacks, overrides=overrides), run_dir


def test_three_steps_write_checkpoint_model_logs_and_export(photos, tmp_path):
    seen = []
    result, run_dir = run(photos, tmp_path, callbacks=[seen.append], max_steps=3, warmup_epochs=0,
                          tensorboard=True, sample_every=2, log_every=1, export_to=tmp_path / "shipped",
                          sample_images=f"[{photos / 'a' / 'photo_1.png'}]")
    assert result.steps == 3 and [p.step for p in seen] == [1, 2, 3]
    assert all(p.phase == "perceptual" and p.total_steps == 3 for p in seen)
    assert {"content", "style", "tv", "total", "style/relu5_1"} <= set(seen[-1].terms)

    # Checkpoint: plain containers, loadable with weights_only=True, with every named part.
    ckpt = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert {"model", "optimizer", "scheduler", "step", "epoch", "rng", "config", "model_config"} <= set(ckpt)
    assert ckpt["step"] == 3 and ckpt["config"]["style"]["name"] == "starry"
    assert isinstance(ckpt["config"], dict) and ckpt["config"]["precision"] == "fp32"
    # The checkpoint is a model too (a run can be tried before it ends), with the same weights.
    from_checkpoint = load_style_model(run_dir / "checkpoints" / "last.pt")
    assert from_checkpoint.style == "starry" and from_checkpoint.info["checkpoint_step"] == 3
    assert from_checkpoint.info["style_image"] == "starry_night.jpg" and from_checkpoint.info["total_steps"] == 3

    # Style model file with its metadata, in the run dir and where export_to says.
    model = load_style_model(result.model_path)
    assert result.model_path == run_dir / "starry.safetensors"
    assert model.style == "starry" and model.config.base_channels == 4
    info = model.info
    assert info["steps"] == 3 and info["warmup_steps"] == 0 and info["image_size"] == 32
    assert info["style_image"] == "starry_night.jpg" and info["data"] == "folder" and info["data_images"] == 8
    assert info["style_layers"]["relu1_1"] == 992 and info["content_layers"] == {"relu4_2": 1.0}
    assert info["precision"] == "float32" and "fastnst_version" in info
    assert result.exported_to == tmp_path / "shipped" / "starry.safetensors"
    with safe_open(str(result.exported_to), "pt") as f:
        assert torch.equal(f.get_tensor("decoder.2.1.weight"), model.net.state_dict()["decoder.2.1.weight"])
    for key, value in model.net.state_dict().items():
        assert torch.equal(from_checkpoint.net.state_dict()[key], value), key

    # TensorBoard: every loss term, lr, throughput, sample images; samples also as JPEGs.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tb"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"loss/total", "loss/content", "loss/style", "loss/tv", "loss/style/relu3_1", "loss/weighted/style",
            "train/lr", "train/images_per_sec"} <= tags
    assert "samples" in events.Tags()["images"]
    assert sorted(p.name for p in (run_dir / "samples").iterdir()) == ["step_000002.jpg", "step_000003.jpg"]
    assert (run_dir / "config.yaml").is_file()


def test_a_style_pyramid_trains_and_is_recorded(photos, tmp_path):
    seen = []
    result, _ = run(photos, tmp_path, callbacks=[seen.append], max_steps=2, warmup_epochs=0,
                    **{"style.style_scales": "[1.0,0.5]", "data.image_size": 64, "style.image_size": 64})
    assert {"style/relu1_1", "style/relu1_1@0.5", "style/relu5_1@0.5"} <= set(seen[-1].terms)
    assert load_style_model(result.model_path).info["style_scales"] == [1.0, 0.5]


def test_warmup_drives_output_toward_input(photos, tmp_path):
    pixel = []
    result, _ = run(photos, tmp_path, callbacks=[lambda p: pixel.append(p.terms["pixel"])], warmup_epochs=12,
                    max_steps=0, lr=5e-3, **{"model.base_channels": 8})
    assert result.steps == len(pixel) == 48
    start, end = pixel[0], sum(pixel[-8:]) / 8
    assert end < 0.25 * start, (start, end)
    # The trained network reproduces its input's structure: output and input are strongly correlated.
    # (Not pixel-exact: instance norm makes the network blind to a global brightness/contrast change.)
    from fastnst.training.data import PhotoDataset, folder_image_paths

    images = torch.stack([PhotoDataset(folder_image_paths(photos), 32)[i] for i in range(8)])
    trained = load_style_model(result.model_path).net
    untrained = TransformNet(trained.config)

    def correlation(net):
        with torch.no_grad():
            out = net(images)
        return float(torch.corrcoef(torch.stack([out.flatten(), images.flatten()]))[0, 1])

    before, after = correlation(untrained), correlation(trained)
    assert after > 0.6 and after > before + 0.4, (before, after)


def test_perceptual_phase_starts_with_fresh_adam_moments(photos, tmp_path):
    # Warm-up moments scaled to pixel-loss gradients would inflate the first perceptual steps (train.py).
    result, run_dir = run(photos, tmp_path, warmup_epochs=1, max_steps=2)
    assert result.steps == 4 + 2  # 8 photos, batch 2: 4 warm-up steps
    ckpt = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    steps = {float(state["step"]) for state in ckpt["optimizer"]["state"].values()}
    assert steps == {2.0}  # counted from the first perceptual step, not from the start of the run


def test_lr_warmup_ramps_the_perceptual_phase_then_follows_the_schedule():
    # 10 identity warm-up steps at full lr, then a 4-step ramp, then constant / cosine.
    constant = [lr_factor(s, 10, 20, "constant", 0.1, ramp_steps=4) for s in range(30)]
    assert constant[:10] == [1.0] * 10
    assert constant[10:14] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert constant[14:] == [1.0] * 16
    cosine = [lr_factor(s, 10, 20, "cosine", 0.1, ramp_steps=4) for s in range(30)]
    plain = [lr_factor(s, 10, 20, "cosine", 0.1) for s in range(30)]
    assert cosine[10] == pytest.approx(0.25 * plain[10]) and cosine[14:] == plain[14:]
    assert plain[29] == pytest.approx(0.1)


MULTI = {"style.paintings": "[starry,scream]", "style.name": "pair"}


def test_a_multi_style_run_ends_with_a_model_file_per_painting_and_the_shared_one(photos, tmp_path):
    from PIL import Image

    result, run_dir = run(photos, tmp_path, max_steps=3, warmup_epochs=0, sample_every=2, sample_size=32,
                          export_to=tmp_path / "shipped", **MULTI)
    assert result.model_path == run_dir / "pair.safetensors"
    assert result.painting_models == [run_dir / "starry.safetensors", run_dir / "scream.safetensors"]
    assert sorted(p.name for p in (tmp_path / "shipped").iterdir()) == ["pair.safetensors", "scream.safetensors",
                                                                         "starry.safetensors"]
    shared, starry, scream = (load_style_model(p) for p in (result.model_path, *result.painting_models))
    assert (starry.style, starry.info["style_image"], scream.info["style_image"]) == ("starry", "starry_night.jpg",
                                                                                       "the_scream.jpg")
    assert shared.style == "pair" and shared.info["style_image"] is None
    assert shared.info["paintings"] == {"starry": "starry_night.jpg", "scream": "the_scream.jpg"}
    assert "mean" in shared.info["network"] and starry.info["network"] == "painting 1 of 2 of one network"
    # The paintings share every convolution and differ in their norms; the shared file holds their mean.
    a, b, m = (x.net.state_dict() for x in (starry, shared, scream))
    assert torch.equal(a["encoder.0.0.1.weight"], b["encoder.0.0.1.weight"])
    assert torch.allclose((a["encoder.0.1.weight"] + m["encoder.0.1.weight"]) / 2, b["encoder.0.1.weight"], atol=1e-6)
    assert not torch.equal(a["encoder.0.1.weight"], m["encoder.0.1.weight"])
    # Samples: the photos, then a row per painting.
    with Image.open(run_dir / "samples" / "step_000002.jpg") as grid:
        assert grid.height == 3 * 32


def test_a_multi_style_run_resumes_exactly_on_the_painting_it_stopped_at(photos, tmp_path):
    settings = dict(warmup_epochs=0, max_steps=4, seed=2, checkpoint_every=1, **MULTI)
    full, _ = run(photos, tmp_path / "full", **settings)

    def stop_at_3(p):
        if p.step == 3:
            raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted):
        run(photos, tmp_path / "cut", callbacks=[stop_at_3], **settings)
    resumed, _ = run(photos, tmp_path / "cut", resume=tmp_path / "cut" / "run", **settings)
    for name in ("pair", "starry", "scream"):
        a, b = _weights(full.run_dir / f"{name}.safetensors"), _weights(resumed.run_dir / f"{name}.safetensors")
        assert all(torch.equal(a[k], b[k]) for k in a), name
    # The checkpoint loads as the run's shared network (the mean norms), as <name>.safetensors holds it.
    shared = load_style_model(resumed.checkpoint)
    assert shared.style == "pair" and shared.info["paintings"] == ["starry", "scream"]
    assert all(torch.equal(v, _weights(resumed.model_path)[k]) for k, v in shared.net.state_dict().items())


def _weights(path):
    with safe_open(str(path), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


def test_interrupted_and_resumed_run_ends_with_identical_weights(photos, tmp_path):
    # Warm-up then perceptual with an lr ramp and a cosine schedule: the phase boundary, LR schedule,
    # optimiser state, data order and augmentation all have to resume exactly.
    settings = dict(warmup_epochs=0.5, max_steps=4, lr_schedule="cosine", lr_warmup_steps=2, seed=3,
                    checkpoint_every=1)
    full, _ = run(photos, tmp_path / "full", **settings)

    def stop_at_3(p):
        if p.step == 3:
            raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted) as interrupted:
        run(photos, tmp_path / "cut", callbacks=[stop_at_3], **settings)
    assert interrupted.value.step == 3 and interrupted.value.checkpoint.is_file()
    assert load_checkpoint(tmp_path / "cut" / "run")["step"] == 3

    resumed_steps = []
    resumed, _ = run(photos, tmp_path / "cut", callbacks=[lambda p: resumed_steps.append(p.step)],
                     resume=tmp_path / "cut" / "run", **settings)
    assert resumed_steps == [4, 5, 6] and resumed.steps == full.steps == 6
    a, b = _weights(full.model_path), _weights(resumed.model_path)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_ctrl_c_stops_after_the_step_and_saves(photos, tmp_path):
    def press_ctrl_c(p):
        if p.step == 2:
            signal.raise_signal(signal.SIGINT)

    before = signal.getsignal(signal.SIGINT)  # SIG_IGN when the tests run in the background (nohup ... &)
    with pytest.raises(TrainingInterrupted) as stopped:
        run(photos, tmp_path, callbacks=[press_ctrl_c], max_steps=10, warmup_epochs=0)
    # The request is honoured at the next step boundary, with a consistent checkpoint.
    assert stopped.value.step == 3
    assert load_checkpoint(stopped.value.checkpoint)["step"] == 3
    assert signal.getsignal(signal.SIGINT) is before  # the caller's handler restored


def test_non_finite_loss_stops_at_once(photos, tmp_path, monkeypatch):
    import fastnst.training.loop as train_module

    real = train_module.compute_loss
    calls = []

    def poisoned(ctx, images, phase):
        terms = real(ctx, images, phase)
        calls.append(1)
        if len(calls) == 2:
            terms["total"] = terms["total"] * float("nan")
        return terms

    monkeypatch.setattr(train_module, "compute_loss", poisoned)
    with pytest.raises(NonFiniteLossError) as exc:
        run(photos, tmp_path, max_steps=5, warmup_epochs=0)
    message = str(exc.value)
    assert "non-finite loss at step 2" in message and "lr" in message and "\n" not in message
    assert len(calls) == 2  # nothing ran after the bad step
    assert not (tmp_path / "run" / "starry.safetensors").exists()


def test_huge_learning_rate_is_caught(photos, tmp_path):
    with pytest.raises(NonFiniteLossError, match="non-finite"):
        run(photos, tmp_path, max_steps=6, warmup_epochs=0, lr=1e30, **{"style.style_weight": 1e6})


def test_corrupt_image_is_skipped_and_counted(photos, tmp_path, caplog):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(photos, data)
    bad = data / "a" / "zz_corrupt.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0garbage")
    caplog.set_level(logging.WARNING, logger="fastnst")
    result, _ = run(data, tmp_path, max_steps=5, warmup_epochs=0, **{"data.batch_size": 3})
    assert result.steps == 5
    assert list(result.skipped_images) == [str(bad)]
    assert "zz_corrupt.jpg" in caplog.text and "skipped 1 unreadable image" in caplog.text


def test_resume_recomposes_the_original_overrides(photos, tmp_path):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from fastnst.training.config import CONFIG_DIR

    overrides = tiny_overrides(photos, tmp_path, max_steps=1, warmup_epochs=0, style="scream",
                               **{"style.style_weight": 0.5})
    train(compose(overrides), tmp_path / "run", overrides=overrides)
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        current = [f"resume={tmp_path / 'run'}", "max_steps=2"]
        cfg, merged = _resumed_config(hydra_compose("train", overrides=current), current)
    assert cfg.style.name == "scream" and cfg.style.style_weight == 0.5 and cfg.data.root == str(photos)
    assert cfg.max_steps == 2 and cfg.resume == str(tmp_path / "run")
    result = train(cfg, tmp_path / "run", overrides=merged)
    assert result.steps == 2


@pytest.mark.parametrize("dilations", [None, "[2]"])
def test_init_from_starts_at_the_model_files_weights(photos, tmp_path, caplog, dilations):
    first, _ = run(photos, tmp_path / "a", max_steps=2, warmup_epochs=0)
    start = load_style_model(first.model_path).net.state_dict()
    # lr 0 keeps the weights where init_from put them: the result must be the file's weights.
    # Dilation has no parameters: an undilated model's weights start a dilated network too.
    extra = {} if dilations is None else {"model.residual_dilations": dilations}
    with caplog.at_level(logging.INFO, logger="fastnst.train"):
        second, _ = run(photos, tmp_path / "b", max_steps=1, warmup_epochs=0, lr=1e-30, init_from=first.model_path,
                        **extra)
    tuned = load_style_model(second.model_path)
    assert all(torch.allclose(tuned.net.state_dict()[k], v) for k, v in start.items())
    assert tuned.info["init_from"] == str(first.model_path)
    assert tuned.config.residual_dilations == (None if dilations is None else (2,))
    assert ("with residual dilations [2] instead of the file's [1]" in caplog.text) == (dilations is not None)


def test_trainable_norms_changes_the_norms_and_keeps_every_convolution(photos, tmp_path):
    first, _ = run(photos, tmp_path / "a", max_steps=2, warmup_epochs=0)
    start = load_style_model(first.model_path).net.state_dict()
    second, _ = run(photos, tmp_path / "b", max_steps=2, warmup_epochs=0, lr=1e-2, init_from=first.model_path,
                    trainable="norms")
    tuned = load_style_model(second.model_path).net
    for name, module in tuned.named_modules():
        if isinstance(module, torch.nn.Conv2d):
            assert torch.equal(module.weight, start[f"{name}.weight"]) and torch.equal(module.bias, start[f"{name}.bias"])
        elif isinstance(module, torch.nn.InstanceNorm2d):
            assert not torch.equal(module.weight, start[f"{name}.weight"]), name
    with pytest.raises(ConfigError, match="trainable=norms .* init_from="):
        run(photos, tmp_path / "c", max_steps=1, trainable="norms")


def test_init_from_with_another_width_is_refused(photos, tmp_path):
    first, _ = run(photos, tmp_path / "a", max_steps=1, warmup_epochs=0)
    with pytest.raises(Exception, match="base_channels=4.*choose the matching model"):
        run(photos, tmp_path / "b", max_steps=1, warmup_epochs=0, init_from=first.model_path, **{"model.base_channels": 8})


def test_resume_removes_a_checkpoint_write_cut_short(photos, tmp_path):
    """A kill during a checkpoint write leaves .last.pt.<hex>.tmp; resuming cleans it up."""
    settings = dict(warmup_epochs=0, tensorboard=False)
    run(photos, tmp_path, max_steps=2, **settings)
    stale = tmp_path / "run" / "checkpoints" / ".last.pt.0badc0de.tmp"
    stale.write_bytes(b"half a checkpoint")
    resumed, _ = run(photos, tmp_path, max_steps=3, resume=tmp_path / "run", **settings)
    assert resumed.steps == 3
    assert not stale.exists()
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["last.pt"]


def test_an_existing_export_is_refused_before_training(photos, tmp_path):
    shipped = tmp_path / "shipped" / "starry.safetensors"
    shipped.parent.mkdir()
    shipped.write_bytes(b"a shipped model")
    with pytest.raises(ConfigError, match="starry.safetensors exists .*overwrite=true"):
        run(photos, tmp_path, max_steps=1, warmup_epochs=0, export_to=shipped.parent)
    assert shipped.read_bytes() == b"a shipped model" and not (tmp_path / "run").exists()
    result, _ = run(photos, tmp_path, max_steps=1, warmup_epochs=0, export_to=shipped.parent, overwrite=True)
    assert result.exported_to == shipped and load_style_model(shipped).style == "starry"


def test_an_export_that_appears_during_the_run_is_not_replaced(photos, tmp_path, monkeypatch):
    # Two runs exporting to one folder: the one that ends second must not replace the first one's file.
    import fastnst.training.loop

    dest = tmp_path / "shipped" / "starry.safetensors"
    real = fastnst.training.loop.save_style_model

    def other_run_exports_first(path, net, info=None):
        if not dest.exists():
            dest.parent.mkdir(exist_ok=True)
            dest.write_bytes(b"the other run's model")
        return real(path, net, info)

    monkeypatch.setattr(fastnst.training.loop, "save_style_model", other_run_exports_first)
    with pytest.raises(ConfigError, match="appeared during the run.*the model is in .*run/starry.safetensors"):
        run(photos, tmp_path, max_steps=1, warmup_epochs=0, export_to=dest.parent)
    assert dest.read_bytes() == b"the other run's model"
    assert sorted(p.name for p in dest.parent.iterdir()) == ["starry.safetensors"]  # no temporary file left
    assert load_style_model(tmp_path / "run" / "starry.safetensors").style == "starry"


def test_a_painting_too_thin_for_vgg_is_a_config_error_naming_it(photos, tmp_path):
    from PIL import Image

    strip = tmp_path / "strip.png"
    Image.new("RGB", (600, 12), (200, 100, 50)).save(strip)
    with pytest.raises(ConfigError, match=r"strip.png: 600x12 px is too thin: at style.image_size=32 it is 32x1.* 16 px"):
        run(photos, tmp_path, max_steps=1, warmup_epochs=0, **{"style.image": strip, "style.trim_frame": False})
    assert not (tmp_path / "run").exists()


def test_data_with_no_readable_image_is_refused_before_the_run_directory_is_made(tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    for i in range(4):
        (bad / f"p{i}.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match=r"no readable image among the 4 files .*p0.jpg: not an image file"):
        run(bad, tmp_path, max_steps=1, warmup_epochs=0)
    assert not (tmp_path / "run").exists()


def test_an_export_that_cannot_be_written_is_one_error_naming_the_run_model(photos, tmp_path, monkeypatch):
    import fastnst.training.loop

    real = fastnst.training.loop.save_style_model

    def disk_full_outside_the_run(path, net, info=None):
        if "shipped" in str(path):
            raise OSError(28, "No space left on device")
        return real(path, net, info)

    monkeypatch.setattr(fastnst.training.loop, "save_style_model", disk_full_outside_the_run)
    with pytest.raises(TrainingError, match=r"export_to: could not write .*shipped.* \(No space left on device\); "
                                            r"the model is in .*run/starry.safetensors"):
        run(photos, tmp_path, max_steps=1, warmup_epochs=0, export_to=tmp_path / "shipped")
    assert load_style_model(tmp_path / "run" / "starry.safetensors").style == "starry"


def test_a_multi_style_run_steps_the_paintings_norms_at_sqrt_n_times_the_lr(photos, tmp_path):
    from fastnst.nets.multistyle import MultiStyleNet
    from fastnst.training.build import build_optimizer
    from fastnst.training.config import validate_config
    from fastnst.training.phases import plan_phases

    cfg = validate_config(compose(tiny_overrides(photos, tmp_path, max_steps=3, lr=1e-3, **MULTI)))
    model = MultiStyleNet(TransformNet().config, ["a", "b", "c", "d"])
    optimizer, _ = build_optimizer(cfg, model, plan_phases(cfg, batches_per_epoch=4))
    shared, own = optimizer.param_groups
    assert own["lr"] == pytest.approx(2 * shared["lr"]) and shared["lr"] == pytest.approx(1e-3)  # sqrt(4) = 2
    assert {id(p) for p in own["params"]} == {id(p) for p in model.painting_parameters()}
    assert len(shared["params"]) + len(own["params"]) == len([p for p in model.parameters() if p.requires_grad])
