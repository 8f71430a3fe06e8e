"""A run as a list of phases: which loss, how many steps, which learning rate and crop size at each step.

A recipe (``configs/recipe/<name>.yaml``) lists its phases (identity warm-up, perceptual training, a style
pyramid, ...); a config without ``phases:`` gets the classic two: ``warmup_epochs`` of identity warm-up,
then the perceptual loss for ``epochs`` or ``max_steps``. The plan is a pure function of the config and
the number of batches per epoch, so a run resumed at any step finds itself in the same phase with the
same learning rate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

from fastnst.training.config import TrainConfig, active_layers


@dataclass(frozen=True)
class Phase:
    """One resolved phase: every setting filled in, and where it sits in the run's step count."""

    name: str
    loss: str  # "identity" or "perceptual"
    start: int  # the run's step count when the phase begins
    steps: int
    lr: float
    lr_schedule: str  # "constant" or "cosine"
    lr_min_factor: float
    lr_warmup_steps: int
    reset_optimizer: bool
    image_size: int
    content_weight: float
    style_weight: float
    tv_weight: float
    style_scales: tuple[float, ...]
    log_style: bool = False
    style_layers: tuple[tuple[str, float], ...] | None = None  # None: the style group's layers

    @property
    def end(self) -> int:
        return self.start + self.steps

    @property
    def loss_key(self) -> "StyleForm":
        """Phases with the same key share one PerceptualLoss: same pyramid, same form of the style loss."""
        return StyleForm(self.style_scales, self.log_style, self.style_layers)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["style_scales"] = list(self.style_scales)
        d["style_layers"] = None if self.style_layers is None else dict(self.style_layers)
        return d


class StyleForm(NamedTuple):
    """What a PerceptualLoss is built from besides the painting: its pyramid, the log form or not, and
    its layer weights (None: the style group's, equalised if ``style.equalize_layers``)."""

    scales: tuple[float, ...]
    log_style: bool = False
    layers: tuple[tuple[str, float], ...] | None = None


def lr_factor(step: int, warmup_steps: int, perceptual_steps: int, schedule: str, min_factor: float,
              ramp_steps: int = 0) -> float:
    """LR multiplier at optimiser step ``step``: constant in the identity warm-up; in the perceptual
    phase a linear ramp over its first ``ramp_steps`` steps, times the chosen schedule.

    Why the ramp: the perceptual phase starts with fresh Adam moments and gradients ~10x the warm-up's;
    Adam's first updates are then ~lr * sign(g) for every weight at once and knock the warmed-up
    network far from the identity map (the usual remedy for Adam's early variance, cf. Liu et al.
    2020, "On the Variance of the Adaptive Learning Rate and Beyond").
    """
    if step < warmup_steps:
        return 1.0
    k = step - warmup_steps
    ramp = min(1.0, (k + 1) / ramp_steps) if ramp_steps > 0 else 1.0
    if schedule == "constant" or perceptual_steps <= 1:
        return ramp
    t = min(1.0, k / (perceptual_steps - 1))
    return ramp * (min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * t)))


def _epochs_to_steps(epochs: float, batches_per_epoch: int) -> int:
    return max(0, math.ceil(epochs * batches_per_epoch - 1e-9))


def plan_phases(cfg: TrainConfig, batches_per_epoch: int) -> list[Phase]:
    """The run's phases in order (phases of zero steps left out)."""
    s, d = cfg.style, cfg.data
    specs: list[dict[str, Any]]
    if cfg.phases:
        specs = []
        for p in cfg.phases:
            steps = p.steps if p.steps is not None else _epochs_to_steps(float(p.epochs), batches_per_epoch)
            specs.append({
                "name": p.name, "loss": p.loss.value, "steps": int(steps),
                "lr": p.lr, "lr_schedule": None if p.lr_schedule is None else p.lr_schedule.value,
                "lr_min_factor": p.lr_min_factor, "lr_warmup_steps": p.lr_warmup_steps,
                "reset_optimizer": p.reset_optimizer, "image_size": p.image_size,
                "content_weight": p.content_weight, "style_weight": p.style_weight, "tv_weight": p.tv_weight,
                "style_scales": p.style_scales, "log_style": p.log_style,
                "style_layers": None if p.style_layers is None else dict(p.style_layers),
            })
    else:
        perceptual = cfg.max_steps if cfg.max_steps is not None else _epochs_to_steps(cfg.epochs, batches_per_epoch)
        specs = [
            # The classic warm-up runs at the top-level lr, unscheduled.
            {"name": "warmup", "loss": "identity", "steps": _epochs_to_steps(cfg.warmup_epochs, batches_per_epoch),
             "lr_schedule": "constant", "lr_warmup_steps": 0},
            {"name": "perceptual", "loss": "perceptual", "steps": int(perceptual)},
        ]
    phases, start = [], 0
    for spec in specs:
        if spec["steps"] <= 0:
            continue

        def pick(key: str, default: Any, spec: dict[str, Any] = spec) -> Any:
            value = spec.get(key)
            return default if value is None else value

        phases.append(Phase(
            name=str(spec["name"]), loss=spec["loss"], start=start, steps=spec["steps"],
            lr=float(pick("lr", cfg.lr)), lr_schedule=str(pick("lr_schedule", cfg.lr_schedule.value)),
            lr_min_factor=float(pick("lr_min_factor", cfg.lr_min_factor)),
            lr_warmup_steps=int(pick("lr_warmup_steps", cfg.lr_warmup_steps)),
            reset_optimizer=bool(pick("reset_optimizer", True)), image_size=int(pick("image_size", d.image_size)),
            content_weight=float(pick("content_weight", s.content_weight)),
            style_weight=float(pick("style_weight", s.style_weight)),
            tv_weight=float(pick("tv_weight", s.tv_weight)),
            style_scales=tuple(float(x) for x in pick("style_scales", s.style_scales)),
            log_style=bool(pick("log_style", s.log_style)),
            style_layers=None if spec.get("style_layers") is None
            else tuple(active_layers(spec["style_layers"]).items()),
        ))
        start += spec["steps"]
    return phases


def total_steps(phases: Sequence[Phase]) -> int:
    return phases[-1].end if phases else 0


def phase_index(phases: Sequence[Phase], step: int) -> int:
    """The phase that optimiser step ``step`` (0-based) belongs to; past the end, the last one."""
    for i, phase in enumerate(phases):
        if step < phase.end:
            return i
    return len(phases) - 1


def phase_lr_factor(phases: Sequence[Phase], step: int, base_lr: float) -> float:
    """The multiplier of ``base_lr`` at ``step``: the phase's own lr, ramp and schedule."""
    if not phases:
        return 1.0
    p = phases[phase_index(phases, step)]
    return (p.lr / base_lr) * lr_factor(step - p.start, 0, p.steps, p.lr_schedule, p.lr_min_factor, p.lr_warmup_steps)
