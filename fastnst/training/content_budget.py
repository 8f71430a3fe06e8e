"""A content budget: hold the training content distance near a target by scaling the style weight.

One style weight gives very different results on different paintings: on the same photos, the one that
keeps Udnie's content distance near 1.2 lets a painting far from photos (Gauguin's Tahitian women, the
Night Café) paint over far more of the photo (1.9). The budget makes the amount of photo kept the setting,
and the style weight follows from it, per painting, during the run.

The measured quantity is the batch's content loss over the training photos' mean squared activation at
the content layer (``PerceptualLoss.content_power``): the scale-free content distance of
``python -m fastnst.evaluate``, on training crops. It is smoothed (an exponential moving average) and
an integral controller moves the log of the style weight's scale against its relative error:
``log_scale -= gain * (smoothed / target - 1)`` each step. The state is two numbers (the scale and the
smoothed level), saved with every checkpoint, so a resumed run goes on exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MAX_LOG_SCALE = math.log(16.0)  # the scale stays within 1/16 .. 16 of the configured style weight


@dataclass
class ContentBudget:
    """Scale for the style weight that holds ``content loss / power`` near ``target``."""

    target: float  # training content distance to hold (content loss / power)
    power: float  # the training photos' mean squared activation at the content layer
    gain: float = 0.1  # change of log(scale) per step, per unit of relative error
    smoothing: float = 0.9  # weight of the running level against the newest batch
    log_scale: float = 0.0
    level: float | None = None  # the smoothed content distance; None before the first step

    def __post_init__(self) -> None:
        if not (self.target > 0 and self.power > 0):
            raise ValueError(f"a content budget needs a positive target and power, got {self.target} and {self.power}")

    @property
    def scale(self) -> float:
        """What the configured style weight is multiplied by now."""
        return math.exp(self.log_scale)

    def update(self, content_loss: float) -> float:
        """Take one step's (unweighted) content loss; return the scale for the next step."""
        distance = content_loss / self.power
        self.level = distance if self.level is None else self.smoothing * self.level + (1 - self.smoothing) * distance
        step = self.gain * (self.level / self.target - 1.0)
        self.log_scale = min(MAX_LOG_SCALE, max(-MAX_LOG_SCALE, self.log_scale - step))
        return self.scale

    def state_dict(self) -> dict[str, float | None]:
        """What a checkpoint keeps; the target and the power come from the run's config and data."""
        return {"log_scale": self.log_scale, "level": self.level}

    def load_state_dict(self, state: dict[str, float | None]) -> None:
        self.log_scale = float(state["log_scale"])
        self.level = None if state.get("level") is None else float(state["level"])


def style_weight_scale(budget: ContentBudget | None) -> float:
    """What a configured style weight is multiplied by: the budget's scale, or 1 without a budget."""
    return budget.scale if budget is not None else 1.0
