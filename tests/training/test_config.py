"""Hydra configuration of the trainer: every group composes, strictness, run directories, resume overrides."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from fastnst.assets import STYLES_DIR
from fastnst.cli.train import merge_overrides
from fastnst.nets.vgg import LAYER_NAMES
from fastnst.training.config import (
    CONFIG_DIR,
    ConfigError,
    DataSource,
    Precision,
    TrainConfig,
    model_config,
    new_run_dir,
    run_dir_of_checkpoint,
    validate_config,
)
from tests.support import compose

STYLES = sorted(p.stem for p in (CONFIG_DIR / "style").glob("*.yaml"))
DATA = sorted(p.stem for p in (CONFIG_DIR / "data").glob("*.yaml"))
MODELS = sorted(p.stem for p in (CONFIG_DIR / "model").glob("*.yaml"))


def test_config_groups_present():
    assert {"starry", "scream"} <= set(STYLES)
    assert set(DATA) == {"coco", "folder", "packages", "sample"}
    assert {"johnson", "small"} <= set(MODELS)


@pytest.mark.parametrize("style", STYLES)
def test_every_style_composes(style):
    # Paintings that do not ship (image: ???) are given as a path, as a user would.
    extra = [] if style in ("starry", "scream") else [f"style.image={STYLES_DIR / 'starry_night.jpg'}"]
    cfg = validate_config(compose([f"style={style}", "data=sample", *extra]))
    assert cfg.style.name == ("starry_night" if style == "painting" else style)  # any painting: named after its file
    assert cfg.style.style_weight > 0 and cfg.style.content_weight > 0
    assert set(cfg.style.style_layers) <= set(LAYER_NAMES) and set(cfg.style.content_layers) <= set(LAYER_NAMES)
    # Exactly the file's layers: nothing merged in from the schema (it once added relu2_2 to relu4_2).
    assert dict(cfg.style.content_layers) == {"relu4_2": 1.0}
    from fastnst.training.config import style_image_file

    assert style_image_file(cfg.style.image).is_file()  # the painting ships with the package


def test_a_style_whose_painting_does_not_ship_asks_for_it():
    with pytest.raises(ConfigError, match=r"missing value for style.image \(this painting does not ship.*style.image="):
        validate_config(compose(["style=great_wave", "data=sample"]))


@pytest.mark.parametrize("data", DATA)
def test_every_data_group_composes(data, tmp_path):
    cfg = compose([f"data={data}", f"data.root={tmp_path}"])
    cfg = validate_config(cfg)
    assert cfg.data.name == (DataSource.folder if data == "packages" else DataSource(data))
    assert (cfg.data.image_size, cfg.data.batch_size) == (256, 4) and cfg.data.num_workers >= 1


@pytest.mark.parametrize("model,width,dilations", [("johnson", 32, None), ("small", 16, None),
                                                   ("small_dilated", 16, (1, 2, 4, 2, 1))])
def test_model_groups_set_width_depth_and_dilations(model, width, dilations):
    cfg = compose([f"model={model}"])
    assert cfg.model.base_channels == width and cfg.model.num_residual_blocks == 5
    net = model_config(validate_config(compose([f"model={model}", "data=sample"])))
    assert net.base_channels == width and net.residual_dilations == dilations


def test_defaults_and_documented_keys():
    cfg = compose([])
    assert cfg.style.name == "starry" and cfg.data.name == DataSource.coco and cfg.model.name == "johnson"
    for key in ("max_steps", "epochs", "warmup_epochs", "lr", "precision", "compile", "device", "seed", "resume",
                "export_to"):
        assert key in cfg
    for key in ("image_size", "batch_size", "root", "num_workers"):
        assert key in cfg.data
    assert cfg.precision == Precision.auto and cfg.lr == pytest.approx(1e-3)
    # train.yaml documents the same top-level defaults as the schema (no drift between the two).
    schema = OmegaConf.structured(TrainConfig)
    for key in schema:
        if key not in ("style", "data", "model"):
            assert cfg[key] == schema[key], key


def test_any_painting_without_a_config_file(tmp_path):
    painting = tmp_path / "great_wave.jpg"
    cfg = compose([f"style.image={painting}", "style.name=mine"])
    assert cfg.style.name == "mine" and cfg.style.image == str(painting)
    # Without a name, the style is named after the painting's file (not after the default style).
    assert compose([f"style.image={painting}"]).style.name == "great_wave"


def test_command_line_overrides_reach_every_level():
    cfg = compose(["style.style_weight=2.5", "data.batch_size=8", "lr=5e-4", "precision=bf16", "max_steps=7",
                   "style.style_layers.relu5_1=0.25"])
    assert cfg.style.style_weight == 2.5 and cfg.data.batch_size == 8 and cfg.lr == 5e-4
    assert cfg.precision == Precision.bf16 and cfg.max_steps == 7 and cfg.style.style_layers.relu5_1 == 0.25


@pytest.mark.parametrize("override", ["foo=1", "data.foo=1", "style.colour=red", "model.depth=3"])
def test_unknown_key_rejected(override):
    with pytest.raises(ConfigCompositionException):
        compose([override])


def test_key_added_with_plus_rejected_by_validation():
    cfg = compose(["+style.extra=1"])  # Hydra lets '+' force a new key in; the trainer still refuses it
    with pytest.raises(ConfigError, match="extra"):
        validate_config(cfg)


@pytest.mark.parametrize("override", ["lr=fast", "data.batch_size=1.5", "precision=fp64", "compile=maybe",
                                      "epochs=two", "data=imagenet", "style.style_layers.relu1_1=big"])
def test_wrong_type_or_value_rejected(override):
    with pytest.raises(ConfigCompositionException):
        compose([override])


@pytest.mark.parametrize("override,match", [
    ("data.image_size=8", "image_size"), ("lr=-1", "lr"), ("data.batch_size=0", "batch_size"),
    ("+style.style_layers.relu9_9=1", "relu9_9"), ("model.base_channels=0", "base_channels"),
    ("style.name=a/b", "style.name"), ("lr_warmup_steps=-1", "lr_warmup_steps"),
    ("model.residual_dilations=[1,2]", "one per residual block"), ("model.residual_dilations=[1,2,0,2,1]", "in \\[1, 64\\]"),
    ("style.style_scales=[]", "style_scales"), ("style.style_scales=[1.0,1.0]", "distinct"),
    ("style.style_scales=[1.0,2.0]", "style_scales"),
    ("style.style_scales=[1.0,0.05]", "the 0.05 level of a 256 px crop would be under 16 px"),
])
def test_out_of_range_values_rejected(override, match):
    with pytest.raises(ConfigError, match=match):
        validate_config(compose(["data=sample", override]))


def test_equalize_layers_and_log_style_are_exclusive():
    with pytest.raises(ConfigError, match="style.equalize_layers and style.log_style both balance the style layers"):
        validate_config(compose(["data=sample", "style.equalize_layers=true", "style.log_style=true"]))
    validate_config(compose(["data=sample", "style.log_style=true"]))


@pytest.mark.parametrize("overrides,match", [
    (["style.paintings=[starry,starry]"], "each painting needs a name of its own"),
    (["style.paintings=[starry,scream]", "init_from=starry"], "init_from= starts one network"),
    (["style.paintings=[starry,scream]", "style.name=scream"], "style.name=scream would be the name of one painting"),
])
def test_several_paintings_need_distinct_names_and_random_weights(overrides, match):
    with pytest.raises(ConfigError, match=match):
        validate_config(compose(["data=sample", *overrides]))
    cfg = validate_config(compose(["data=sample", "style.paintings=[starry,scream]", "style.name=pair"]))
    assert cfg.style.paintings == ["starry", "scream"]


def test_folder_needs_a_root():
    with pytest.raises(ConfigError, match="data.root"):
        validate_config(compose(["data=folder"]))


def test_run_dir_is_per_style_and_time_and_cwd_stays(tmp_path):
    cfg = compose(["style=scream", f"output_dir={tmp_path}"], return_hydra_config=True)
    run_dir = Path(cfg.hydra.run.dir)
    assert run_dir.parent == tmp_path / "scream"
    assert len(run_dir.name) == len("2025-01-31_12-00-00")
    assert cfg.hydra.job.chdir is False


def test_resumed_run_continues_in_its_directory(tmp_path):
    run = tmp_path / "starry" / "2025-01-01_00-00-00"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.pt").write_bytes(b"")
    assert run_dir_of_checkpoint(str(run)) == run
    assert run_dir_of_checkpoint(str(run / "checkpoints" / "last.pt")) == run
    cfg = compose([f"resume={run}", f"output_dir={tmp_path}"], return_hydra_config=True)
    assert Path(cfg.hydra.run.dir) == run


def test_new_run_dir_never_reuses_a_directory(tmp_path):
    import datetime

    now = datetime.datetime(2025, 1, 2, 3, 4, 5)
    first = Path(new_run_dir(str(tmp_path), "starry", now))
    second = Path(new_run_dir(str(tmp_path), "starry", now))
    assert second != first and second.parent == first.parent


def test_runs_started_in_the_same_second_get_directories_of_their_own(tmp_path):
    # Several runs started by a script: each claims its directory when it picks the name, before
    # Hydra makes it, so no two share one.
    import datetime

    now = datetime.datetime(2025, 1, 2, 3, 4, 5)
    dirs = [new_run_dir(str(tmp_path), "starry", now) for _ in range(3)]
    assert len(set(dirs)) == 3 and all(Path(d).is_dir() for d in dirs)


def test_merge_overrides_later_values_win():
    saved = ["style=scream", "data=sample", "lr=0.01", "hydra.run.dir=/x"]
    current = ["resume=/runs/a", "lr=0.002", "max_steps=10"]
    merged = merge_overrides(saved, current)
    assert merged == ["style=scream", "data=sample", "lr=0.002", "resume=/runs/a", "max_steps=10"]


def test_a_painting_that_does_not_ship_is_looked_up_in_paintings_dir(tmp_path):
    import shutil

    from fastnst.training.build import load_paintings

    shutil.copy(STYLES_DIR / "starry_night.jpg", tmp_path / "mine.jpg")
    several = ["data=sample", "style.paintings=[scream,mine.jpg]", "style.name=pair"]
    cfg = validate_config(compose([*several, f"style.paintings_dir={tmp_path}"]))
    assert [path for _, path in load_paintings(cfg)] == [STYLES_DIR / "the_scream.jpg", tmp_path / "mine.jpg"]
    with pytest.raises(ConfigError, match="style.paintings: mine.jpg: no such file.*style.paintings_dir=DIR"):
        load_paintings(validate_config(compose(several)))
