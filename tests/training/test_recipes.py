"""Recipes: every shipped model's config composes; phases run, resume exactly across a boundary, and the
model file records what made it (config, overrides, data files with their sha256)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors import safe_open

from fastnst.imageio import trim_uniform_frame
from fastnst.nets.modelfile import is_shared_network, read_model_header, resolve_model_path
from fastnst.training.build import build_losses
from fastnst.training.config import CONFIG_DIR, ConfigError, active_layers, validate_config
from fastnst.training.loop import TrainingInterrupted, train
from fastnst.training.phases import plan_phases
from tests.support import compose, make_photo_folder, tiny_overrides

pytestmark = pytest.mark.usefixtures("one_thread")

RECIPES = sorted(p.stem for p in (CONFIG_DIR / "recipe").glob("*.yaml"))
SHIPPED = ["great_wave", "kandinsky", "scream", "starry"]  # the shipped models' recipes, from random weights
PAINTING = Path(__file__).resolve().parents[2] / "fastnst" / "assets" / "styles" / "starry_night.jpg"
# Three phases: identity, perceptual at 32 px, perceptual at 48 px crops with another style weight.
PHASES = ("phases=[{name:warm,loss:identity,steps:2},"
          "{name:first,steps:2,lr_schedule:cosine,lr_warmup_steps:1},"
          "{name:second,steps:2,image_size:48,style_weight:0.05,lr:5e-4}]")


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return make_photo_folder(tmp_path_factory.mktemp("photos"), count=8)


@pytest.mark.parametrize("recipe", SHIPPED)
def test_every_shipped_recipe_composes_into_a_checked_config(recipe, tmp_path):
    cfg = validate_config(compose([f"recipe={recipe}", f"data.root={tmp_path}", f"style.image={PAINTING}"]))
    assert cfg.recipe == recipe and cfg.phases, "a recipe names itself and lists its phases"
    assert cfg.phases[0].loss.value == "identity"
    assert cfg.model.residual_dilations is not None and cfg.model.base_channels == 16
    assert len(cfg.data.files) == 57 and not any("dog.jpg" in f or "baboon.jpg" in f for f in cfg.data.files)
    phases = plan_phases(cfg, batches_per_epoch=142)
    assert phases[0].steps == 142 and sum(p.steps for p in phases) >= 3000


def test_shipped_recipes_are_the_four_models():
    assert set(SHIPPED) <= set(RECIPES)


def test_the_quick_recipe_fine_tunes_the_shipped_base_network_on_the_bundled_photos():
    cfg = validate_config(compose(["recipe=quick", f"style.image={PAINTING}"]))
    assert cfg.recipe == "quick" and cfg.init_from == "base" and cfg.data.name.value == "sample"
    _, info = read_model_header(resolve_model_path(cfg.init_from))  # ships, and is the shared network of recipe=base
    assert info["recipe"] == "base" and is_shared_network(info)
    assert cfg.style.log_style and set(cfg.style.style_layers.values()) == {1.0} and cfg.style.name == "starry_night"
    assert cfg.style.content_target == 0.7  # the photo kept is the setting; the style weight follows it
    phases = plan_phases(cfg, batches_per_epoch=140)
    assert [p.loss for p in phases] == ["perceptual"] and sum(p.steps for p in phases) <= 200


def test_the_base_recipe_trains_eight_paintings_none_of_them_quicks(tmp_path):
    cfg = validate_config(compose(["recipe=base", f"data.root={tmp_path}", f"style.paintings_dir={tmp_path}"]))
    assert cfg.recipe == "base" and cfg.style.name == "base" and len(cfg.style.paintings) == 8
    assert cfg.style.image == "starry"  # filled in from the first painting (painting.yaml leaves it open); unused
    assert cfg.style.log_style and set(cfg.style.style_layers.values()) == {1.0}  # recipe=quick's loss
    assert cfg.phases[0].loss.value == "identity" and len(cfg.data.files) == 57
    measured_by_quick = ("udnie", "gauguin", "turner", "night_cafe")
    assert not any(name in painting for painting in cfg.style.paintings for name in measured_by_quick)


def test_phases_and_max_steps_together_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="max_steps does not apply"):
        validate_config(compose(["recipe=scream", f"data.root={tmp_path}", "max_steps=5"]))


def test_a_phase_needs_steps_or_epochs(tmp_path):
    with pytest.raises(ConfigError, match=r"phases\.0 \(a\): give exactly one of steps or epochs"):
        validate_config(compose(["data=sample", "phases=[{name:a}]"]))


def run(photos, out, callbacks=(), **extra):
    overrides = tiny_overrides(photos, out, **extra) + [PHASES]
    return train(compose(overrides), out / "run", callbacks=callbacks, overrides=overrides)


def _weights(path):
    with safe_open(str(path), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


def test_phases_run_in_order_with_their_own_crop_size_and_lr(photos, tmp_path):
    seen = []
    result = run(photos, tmp_path, callbacks=[seen.append], log_every=1)
    assert [(p.step, p.phase) for p in seen] == [(1, "warm"), (2, "warm"), (3, "first"), (4, "first"),
                                                  (5, "second"), (6, "second")]
    assert seen[2].lr == pytest.approx(1e-3 * 1.0) and seen[4].lr == pytest.approx(5e-4)
    _, info = read_model_header(result.model_path)
    assert info["phase_steps"] == {"warm": 2, "first": 2, "second": 2}
    assert info["image_size"] == 48 and info["style_weight"] == 0.05


@pytest.mark.parametrize("stop_at", [4, 3])  # at the boundary between two perceptual phases, and inside one
def test_a_run_interrupted_near_a_phase_boundary_resumes_exactly(photos, tmp_path, stop_at):
    settings = dict(seed=5, checkpoint_every=1)
    full = run(photos, tmp_path / "full", **settings)

    def stop(p):
        if p.step == stop_at:
            raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted):
        run(photos, tmp_path / "cut", callbacks=[stop], **settings)
    steps = []
    resumed = run(photos, tmp_path / "cut", callbacks=[lambda p: steps.append(p.step)], resume=tmp_path / "cut" / "run",
                  **settings)
    assert steps == list(range(stop_at + 1, 7))
    a, b = _weights(full.model_path), _weights(resumed.model_path)
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_a_content_budget_run_moves_the_style_weight_resumes_exactly_and_records_the_weight(photos, tmp_path):
    # A target of half the content distance the tiny network keeps (~0.5): the budget lowers the style weight
    # every step.
    settings = dict(seed=5, checkpoint_every=1, log_every=1, **{"style.content_target": 0.25})
    seen = []
    full = run(photos, tmp_path / "full", callbacks=[seen.append], **settings)
    a1, a2, b1, b2 = [p.terms["style_weight"] for p in seen if p.phase != "warm"]  # phases "first", "second"
    assert a1 == pytest.approx(1e-2) and a2 < a1  # the first phase's weight, scaled down after one step
    assert b1 / 0.05 < a2 / 1e-2 and b2 < b1  # the second phase's own weight, the scale carried on and still falling
    _, info = read_model_header(full.model_path)
    assert info["config"]["style"]["content_target"] == 0.25 and 0 < info["style_weight"] < b2

    def stop(p):
        if p.step == 4:
            raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted):
        run(photos, tmp_path / "cut", callbacks=[stop], **settings)
    resumed = run(photos, tmp_path / "cut", resume=tmp_path / "cut" / "run", **settings)
    a, b = _weights(full.model_path), _weights(resumed.model_path)
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_a_content_target_must_be_positive(tmp_path):
    with pytest.raises(ConfigError, match="style.content_target must be > 0"):
        validate_config(compose(["data=sample", "style.content_target=0"]))


def test_the_model_file_records_config_overrides_and_every_training_file(photos, tmp_path):
    # A shipped recipe cut down to tiny: its own photo list and network replaced by the test's.
    result = run(photos, tmp_path, recipe="scream", **{"data.files": "[]", "model.residual_dilations": "null",
                                                       "data.repeat": 1})
    _, info = read_model_header(result.model_path)
    assert info["recipe"] == "scream" and info["style"] == "scream"
    assert info["config"]["data"]["root"] == str(photos) and info["config"]["phases"][2]["name"] == "second"
    assert PHASES in info["overrides"]
    files = {f["path"]: f["sha256"] for f in info["training_images"]["files"]}
    on_disk = sorted(str(p.relative_to(photos)) for p in photos.rglob("*.png"))
    assert sorted(files) == on_disk
    for name, digest in files.items():
        assert digest == hashlib.sha256((photos / name).read_bytes()).hexdigest()
    assert info["device_name"] and info["init_from_file"] is None and "git_commit" in info


def test_kept_checkpoints_hold_each_periodic_step(photos, tmp_path):
    result = run(photos, tmp_path, checkpoint_every=2, keep_checkpoints=True)
    kept = sorted(p.name for p in (result.run_dir / "checkpoints").glob("step_*.pt"))
    assert kept == ["step_2.pt", "step_4.pt", "step_6.pt"]
    steps = [torch.load(result.run_dir / "checkpoints" / name, weights_only=True)["step"] for name in kept]
    assert steps == [2, 4, 6]


def test_a_log_style_run_trains_and_records_it(photos, tmp_path):
    seen = []
    result = run(photos, tmp_path, callbacks=[seen.append], **{"style.log_style": True, "style.style_weight": 1.0})
    assert all(torch.isfinite(torch.tensor(p.loss)) for p in seen)
    _, info = read_model_header(result.model_path)
    assert info["config"]["style"]["log_style"] is True


LOG_LAST = ("phases=[{name:warm,loss:identity,steps:1},{name:first,steps:2},"
            "{name:polish,steps:2,log_style:true,style_layers:{relu1_1:1,relu2_1:2},style_weight:1.0}]")


def test_a_phase_trains_its_own_form_of_the_style_loss(photos, tmp_path):
    overrides = tiny_overrides(photos, tmp_path) + [LOG_LAST]
    cfg = validate_config(compose(overrides))
    first, polish = plan_phases(cfg, batches_per_epoch=4)[1:]
    assert not first.log_style and first.style_layers is None and first.loss_key != polish.loss_key
    assert polish.log_style and dict(polish.style_layers) == {"relu1_1": 1.0, "relu2_1": 2.0}
    losses, _ = build_losses(cfg, [first, polish], torch.device("cpu"), torch.contiguous_format)
    assert losses[0, first.loss_key].style_layers == active_layers(cfg.style.style_layers)  # the style group's
    assert not losses[0, first.loss_key].log_style and losses[0, polish.loss_key].log_style
    seen = []
    result = train(compose(overrides), tmp_path / "run", callbacks=[seen.append], overrides=overrides)
    assert [p.phase for p in seen[-2:]] == ["polish", "polish"] and all(torch.isfinite(torch.tensor(p.loss)) for p in seen)
    _, info = read_model_header(result.model_path)
    assert info["style_layers"] == {"relu1_1": 1.0, "relu2_1": 2.0}  # as the last phase trained them
    assert info["config"]["phases"][2]["log_style"] is True


@pytest.mark.parametrize("phase, message", [
    ("{name:p,steps:1,style_layers:{relu9_1:1}}", r"phases\.0 \(p\): style_layers: unknown VGG-19 layer 'relu9_1'"),
    ("{name:p,steps:1,style_layers:{relu1_1:0}}", r"phases\.0 \(p\): style_layers has no layer with a positive weight"),
    ("{name:p,steps:1,log_style:true}", r"phases\.0 \(p\): log_style with style.equalize_layers"),
])
def test_a_phases_own_style_loss_is_checked(tmp_path, phase, message):
    with pytest.raises(ConfigError, match=message):
        validate_config(compose(["data=sample", "style.equalize_layers=true", f"phases=[{phase}]"]))


def test_init_from_is_recorded_with_its_sha256(photos, tmp_path):
    first = run(photos, tmp_path / "a")
    second = run(photos, tmp_path / "b", init_from=first.model_path)
    _, info = read_model_header(second.model_path)
    assert info["init_from_file"]["sha256"] == hashlib.sha256(first.model_path.read_bytes()).hexdigest()


def test_a_scanned_paintings_black_frame_is_cut_off():
    img, cut = trim_uniform_frame(Image.open(PAINTING).convert("RGB"))
    assert cut == (7 + 12, 8 + 12, 5 + 15, 8 + 15) and img.size == (752 - 43, 600 - 39)  # frame + 2% edge


def test_an_unframed_painting_is_left_as_it_is():
    img = Image.effect_noise((64, 48), 60).convert("RGB")
    same, cut = trim_uniform_frame(img)
    assert cut == (0, 0, 0, 0) and same is img


def test_equalized_layers_each_start_at_the_photos_content_power():
    from fastnst.nets.losses import equal_say_factors, gram_matrix
    from fastnst.nets.vgg import VGG19Features

    torch.manual_seed(0)
    vgg = VGG19Features("random")
    painting, photos = torch.rand(1, 3, 64, 80), torch.rand(3, 3, 48, 48)
    layers = ["relu1_1", "relu3_1", "relu5_1"]
    factors = equal_say_factors(vgg, painting, photos, layers)
    with torch.no_grad():
        feats = vgg(photos, (*layers, "relu4_2"))
        targets = vgg(painting, tuple(layers))
    power = float(feats["relu4_2"].pow(2).mean())
    for k in layers:
        weighted = factors[k] * float(((gram_matrix(feats[k]) - gram_matrix(targets[k])) ** 2).mean())
        assert weighted == pytest.approx(power, rel=1e-4)


def test_equalize_layers_scales_the_configured_weights_and_the_file_records_them(photos, tmp_path):
    plain = run(photos, tmp_path / "plain")
    equal = run(photos, tmp_path / "equal", **{"style.equalize_layers": "true"})
    _, a = read_model_header(plain.model_path)
    _, b = read_model_header(equal.model_path)
    configured = {k: float(v) for k, v in a["config"]["style"]["style_layers"].items() if v}
    assert a["style_layers"] == configured  # as configured when not equalized
    assert set(b["style_layers"]) == set(configured) and all(b["style_layers"][k] != configured[k] for k in configured)
    assert b["config"]["style"]["equalize_layers"] is True
