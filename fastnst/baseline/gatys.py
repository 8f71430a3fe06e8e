"""The Gatys et al. (2016) baseline: style transfer by optimising the pixels of one image (the library).

The image itself is the parameter; the loss is the project's ``PerceptualLoss`` on the project's
``VGG19Features``, exactly as in training, so the numbers of the two methods are comparable.
Without a content image (or content weight 0) this is Gatys et al.'s texture synthesis (2015).

The library reports progress through a callback (as crowsonkb/style-transfer-pytorch does); only the
command line (``python -m fastnst.gatys``, in fastnst/cli/gatys.py) draws a progress bar and writes files.

Departures from the paper, on purpose:

* Pixels are kept in [0, 1] by clamping the image in place before every loss evaluation (projected
  optimisation, as in the PyTorch neural-style tutorial). The loss recorded for an image is therefore
  the loss of exactly the image that is saved (up to 8-bit rounding). Gatys optimised unconstrained.
* One L-BFGS "step" is one iteration with one loss evaluation (``max_iter=1``, no line search by
  default, like pastiche), so step counts are evaluation counts and per-step times compare directly.
* The best image seen (lowest total loss over every evaluation, including line-search trial points)
  is returned, not merely the last one.
* The optimiser minimises the total loss divided by its first value: the same minimiser, but
  L-BFGS's fixed thresholds (a curvature pair is kept only if y.s > 1e-10, a gradient below 1e-7
  ends the step) and Adam's eps then act alike whatever the loss scale (VGG weights, layers, weights).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
from torch.func import functional_call

from fastnst.nets.losses import GATYS_CONTENT_LAYERS, STYLE_LAYERS, PerceptualLoss
from fastnst.runtime import autocast

DEFAULT_CONTENT_LAYERS = GATYS_CONTENT_LAYERS  # see fastnst.nets.losses
DEFAULT_STYLE_LAYERS = STYLE_LAYERS
# For the pastiche (Caffe, 0-255) VGG with Gram / (C*H*W). Gatys et al.'s alpha/beta = 1e-3 (summed
# content error, Gram error / (4 N^2 M^2), layer weights 1/5) works out to a style weight of ~10-50 on
# the dominant relu4_1 term here; 10 keeps the photo recognisable (sweep 10,100,1000 to see).
# pastiche's own default balance is 1e3 (its 10 / C^2 per layer on Gram / (H*W), content 0.01): much
# more stylised.
DEFAULT_CONTENT_WEIGHT = 1.0
DEFAULT_STYLE_WEIGHT = 10.0
DEFAULT_TV_WEIGHT = 0.0
DEFAULT_LR = {"lbfgs": 1.0, "adam": 0.02}
OPTIMIZERS = ("lbfgs", "adam")
INITS = ("content", "noise", "content+noise")


class GatysError(RuntimeError):
    """The optimisation cannot go on (non-finite loss, impossible settings)."""


@dataclass
class StepReport:
    """What the optimiser tells its callback after each step."""

    step: int  # optimiser steps done so far (1 ... steps)
    steps: int  # steps requested
    losses: dict[str, float]  # terms of the image evaluated during this step
    best_total: float  # lowest total loss seen so far
    best_step: int  # steps that had been applied to the best image
    image: torch.Tensor  # the current image (after this step's update; do not modify)
    best_image: torch.Tensor  # the best image so far (do not modify)


@dataclass
class GatysResult:
    """The outcome of ``optimize_image``."""

    image: torch.Tensor  # best image seen, (1, 3, H, W) in [0, 1], on the CPU
    best_total: float  # its total loss as evaluated during the optimisation (== min of history totals)
    best_step: int  # optimiser steps applied to it
    losses: dict[str, float]  # its loss terms re-evaluated in float32 (the numbers to report)
    history: list[dict[str, float]] = field(default_factory=list)  # one entry per loss evaluation
    final_image: torch.Tensor | None = None  # the last iterate, for comparison with the best
    seconds: float = 0.0  # wall time of the optimisation loop


def terms_to_floats(terms: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """Loss terms as plain floats (for history, JSON and printing)."""
    return {name: float(value.detach()) for name, value in terms.items()}


@torch.no_grad()
def evaluate_losses(
    loss_fn: PerceptualLoss,
    image: torch.Tensor,
    content: torch.Tensor | Mapping[str, torch.Tensor] | None = None,
    precision: torch.dtype = torch.float32,
) -> dict[str, float]:
    """Loss terms of ``image`` (clamped to [0, 1], as it would be saved); float32 unless told otherwise."""
    device = loss_fn.vgg.mean.device
    if isinstance(content, torch.Tensor):
        content = content.to(device)
    with autocast(device, precision):
        return terms_to_floats(loss_fn(image.to(device).clamp(0.0, 1.0), content))


def initial_image(
    init: str,
    content: torch.Tensor | None,
    size_hw: tuple[int, int],
    noise_ratio: float = 0.5,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The starting image: the content, uniform white noise, or a blend ``(1-r)*content + r*noise``.

    Noise is drawn on the CPU so a seed gives the same start on every device.
    """
    if init not in INITS:
        raise ValueError(f"init must be one of {', '.join(INITS)}, got {init!r}")
    if init != "noise" and content is None:
        raise ValueError(f"init {init!r} needs a content image (use init 'noise' for texture synthesis)")
    if init == "content":
        return content.detach().float().cpu().clone()
    noise = torch.rand((1, 3, *size_hw), generator=generator)
    if init == "noise":
        return noise
    if not 0.0 <= noise_ratio <= 1.0:
        raise ValueError(f"noise_ratio must be in [0, 1], got {noise_ratio}")
    return (1.0 - noise_ratio) * content.detach().float().cpu() + noise_ratio * noise


def _make_optimizer(
    name: str, image: torch.Tensor, lr: float, history_size: int, line_search: str | None
) -> torch.optim.Optimizer:
    if name == "lbfgs":
        # max_iter=1: one iteration (one evaluation without line search) per step(); the curvature
        # history survives between calls, so N calls are N iterations of one L-BFGS run.
        return torch.optim.LBFGS(
            [image], lr=lr, max_iter=1, history_size=history_size, line_search_fn=line_search
        )
    if name == "adam":
        return torch.optim.Adam([image], lr=lr)
    raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {name!r}")


def _cast_weights(module: torch.nn.Module, dtype: torch.dtype, channels_last: bool) -> dict[str, torch.Tensor]:
    """The module's parameters cast to ``dtype`` (4-D ones NHWC if asked), for ``functional_call``."""
    out = {}
    for name, param in module.named_parameters():
        value = param.detach().to(dtype)
        if channels_last and value.dim() == 4:
            value = value.contiguous(memory_format=torch.channels_last)
        out[name] = value
    return out


class PixelOptimizer:
    """One Gatys optimisation, one step at a time (``optimize_image`` runs the loop).

    Every loss evaluation is recorded in ``history`` and compared with the best so far *inside* the
    closure, so with a line search (several evaluations per L-BFGS step) no evaluated image is missed.
    Arguments as for ``optimize_image``.
    """

    def __init__(
        self,
        loss_fn: PerceptualLoss,
        init: torch.Tensor,
        content: torch.Tensor | None = None,
        *,
        optimizer: str = "lbfgs",
        lr: float | None = None,
        precision: torch.dtype = torch.float32,
        channels_last: bool = True,
        history_size: int = 100,
        line_search: str | None = None,
    ) -> None:
        if init.dim() != 4 or init.shape[:2] != (1, 3):
            raise ValueError(f"init must have shape (1, 3, H, W), got {tuple(init.shape)}")
        self.loss_fn = loss_fn
        self.device = loss_fn.vgg.mean.device
        self.precision = precision
        self.channels_last = channels_last
        self.content = content
        self.image = init.detach().to(device=self.device, dtype=torch.float32).clamp(0.0, 1.0).contiguous()
        self.image.requires_grad_(True)
        lr = DEFAULT_LR.get(optimizer, 1.0) if lr is None else float(lr)
        self.optimizer = _make_optimizer(optimizer, self.image, lr, history_size, line_search)
        # Under autocast the frozen VGG weights would be cast to the low precision again at every
        # evaluation (autocast caches casts only for weights that require grad); casting them once and
        # passing them with functional_call gives the same numbers without ~20 M weight copies a step.
        self._weights = None if precision == torch.float32 else _cast_weights(loss_fn, precision, channels_last)
        self.targets = None
        if content is not None:
            # Targets from the same (possibly bf16) forward as the image's, so a content start has loss 0.
            with autocast(self.device, precision):
                self.targets = loss_fn.content_targets(content.to(device=self.device, dtype=torch.float32))
        self.history: list[dict[str, float]] = []
        self.steps_done = 0
        self.best_total = math.inf
        self.best_step = 0
        self.best_image = self.image.detach().clone()
        self._scale: float | None = None

    def evaluate(self, with_grad: bool = True) -> torch.Tensor:
        """Loss of the current image (clamped first); records it; backward if ``with_grad``."""
        image = self.image
        with torch.no_grad():
            image.clamp_(0.0, 1.0)  # projection onto valid pixels (see module docstring)
        vgg_input = image.contiguous(memory_format=torch.channels_last) if self.channels_last else image
        with torch.set_grad_enabled(with_grad), autocast(self.device, self.precision):
            if self._weights is None:
                terms = self.loss_fn(vgg_input, self.targets)
            else:
                terms = functional_call(self.loss_fn, self._weights, (vgg_input, self.targets), strict=False)
        record = terms_to_floats(terms)
        if not math.isfinite(record["total"]):
            raise GatysError(
                f"non-finite loss at step {self.steps_done}: {record} (try lower weights or precision fp32)"
            )
        self.history.append({"step": float(self.steps_done), "eval": float(len(self.history)), **record})
        if record["total"] < self.best_total:
            self.best_total, self.best_step = record["total"], self.steps_done
            self.best_image = image.detach().clone()
        if self._scale is None:
            self._scale = record["total"] if record["total"] > 0 else 1.0
        objective = terms["total"] / self._scale
        if with_grad:
            objective.backward()
        return objective

    def _closure(self) -> torch.Tensor:
        self.optimizer.zero_grad(set_to_none=True)
        return self.evaluate(with_grad=True)

    def step(self) -> dict[str, float]:
        """One optimiser step; returns the loss terms of the (last) image it evaluated."""
        self.optimizer.step(self._closure)
        self.steps_done += 1
        return {k: v for k, v in self.history[-1].items() if k not in ("step", "eval")}

    def report(self) -> StepReport:
        losses = {k: v for k, v in self.history[-1].items() if k not in ("step", "eval")}
        return StepReport(
            step=self.steps_done, steps=self.steps_done, losses=losses, best_total=self.best_total,
            best_step=self.best_step, image=self.image.detach(), best_image=self.best_image,
        )

    def finish(self, seconds: float = 0.0) -> GatysResult:
        """Evaluate the last iterate too, then the best image's float32 loss terms."""
        self.evaluate(with_grad=False)
        return GatysResult(
            image=self.best_image.cpu(),
            best_total=self.best_total,
            best_step=self.best_step,
            # Reported in float32 against float32 content targets, whatever the optimisation precision.
            losses=evaluate_losses(self.loss_fn, self.best_image, self.content),
            history=self.history,
            final_image=self.image.detach().cpu().clone(),
            seconds=seconds,
        )


def optimize_image(
    loss_fn: PerceptualLoss,
    init: torch.Tensor,
    content: torch.Tensor | None = None,
    *,
    optimizer: str = "lbfgs",
    steps: int = 500,
    lr: float | None = None,
    precision: torch.dtype = torch.float32,
    channels_last: bool = True,
    history_size: int = 100,
    line_search: str | None = None,
    callback: Callable[[StepReport], None] | None = None,
) -> GatysResult:
    """Optimise the pixels of ``init`` to minimise ``loss_fn`` against ``content`` (None: texture).

    Args:
        loss_fn: the perceptual loss (its VGG's device is the device used).
        init: (1, 3, H, W) starting image in [0, 1] (see ``initial_image``).
        content: the content image, or None for texture synthesis / style-only reconstruction.
        optimizer: ``lbfgs`` (one iteration per step) or ``adam``.
        steps: optimiser steps; the image after the last step is evaluated too.
        lr: learning rate; default 1.0 for L-BFGS, 0.02 for Adam (pixels in [0, 1]).
        precision: autocast dtype for the VGG forward/backward (``torch.bfloat16`` is the CPU speed
            lever); the image, the optimiser state and the loss sums stay float32.
        channels_last: feed the VGG NHWC input (faster oneDNN convolutions on CPU).
        history_size: L-BFGS curvature pairs kept.
        line_search: ``None`` or ``"strong_wolfe"`` (L-BFGS only; several evaluations per step).
        callback: called with a ``StepReport`` after every step.

    Returns the best image seen with its float32 loss terms, and the history of every evaluation.
    Raises GatysError on a non-finite loss (at once, with the step).
    """
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    run = PixelOptimizer(
        loss_fn, init, content, optimizer=optimizer, lr=lr, precision=precision,
        channels_last=channels_last, history_size=history_size, line_search=line_search,
    )
    start = time.perf_counter()
    for _ in range(steps):
        run.step()
        if callback is not None:
            report = run.report()
            report.steps = steps
            callback(report)
    return run.finish(seconds=time.perf_counter() - start)
