"""What every backend offers the stylizer and the video path, and the instance-norm statistics they share.

A backend executes a :class:`~fastnst.infer.plan.NetworkPlan`: it is called like a module on an
(N, 3, H, W) image batch, and can record each norm layer's statistics of one image (tiling normalises
every tile with the whole image's) and smooth them over the frames of a video. Subclasses implement
:meth:`Backend.execute`; the rest is here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from fastnst.infer.plan import NetworkPlan, build_plan
from fastnst.nets.transform_net import TransformerConfig, TransformNet

Moments = tuple[torch.Tensor, torch.Tensor]


@dataclass
class NormStats:
    """Per-layer instance-norm statistics (float32 mean and biased variance, one pair per norm layer,
    in the order of the plan's norm steps).

    Recorded from one image with ``Backend.record_stats``; passed back to normalise other
    images (tiles) with them instead of their own.
    """

    layers: list[Moments] = field(default_factory=list)

    def to(self, device: torch.device | str) -> "NormStats":
        return NormStats([(m.to(device), v.to(device)) for m, v in self.layers])


class NormContext:
    """One image's pass through the norm layers: which layer is next, and where its statistics come
    from (its own, given ones, or given ones blended with its own) and go to (``record``)."""

    def __init__(self, given: NormStats | None, record: NormStats | None, momentum: float | None = None) -> None:
        self.given, self.record, self.index = given, record, 0
        self.momentum = momentum  # set: blend the given statistics with the image's own (Backend.smoothed)

    def statistics(self, own: Callable[[], Moments]) -> Moments:
        """The next norm layer's (mean, var); ``own()`` computes the image's own where they are needed."""
        given = None
        if self.given is not None:
            if self.index >= len(self.given.layers):
                raise ValueError("NormStats has fewer layers than the network")
            given = self.given.layers[self.index]
        self.index += 1
        if given is not None and self.momentum is not None:
            own_mean, own_var = own()
            m = self.momentum
            mean, var = torch.lerp(own_mean, given[0], m), torch.lerp(own_var, given[1], m)
            self.record.layers.append((mean, var))
        elif given is not None:
            mean, var = given
        else:
            mean, var = own()
            if self.record is not None:
                self.record.layers.append((mean, var))
        return mean, var


def as_plan(net: TransformNet | NetworkPlan) -> NetworkPlan:
    """A plan as it is, or the plan of a TransformNet."""
    return net if isinstance(net, NetworkPlan) else build_plan(net)


class Backend:
    """Inference-only TransformNet executing a plan: ``backend(x, stats=None)``, ``record_stats``,
    ``smoothed``. ``dtype`` says the arithmetic (torch.int8 for the int8 backend)."""

    plan: NetworkPlan
    dtype: torch.dtype
    device: torch.device

    @property
    def config(self) -> TransformerConfig:
        return self.plan.config

    @property
    def num_norm_layers(self) -> int:
        return self.plan.num_norm_layers

    def execute(self, x: torch.Tensor, given: NormStats | None, record: NormStats | None,
                momentum: float | None = None) -> torch.Tensor:
        """(N, 3, H, W) image -> (N, 3, H, W) float32 output, each image's norms as
        ``NormContext(given, record, momentum)`` says."""
        raise NotImplementedError

    def __call__(self, x: torch.Tensor, stats: NormStats | None = None) -> torch.Tensor:
        return self.forward(x, stats)

    @torch.inference_mode()
    def forward(self, x: torch.Tensor, stats: NormStats | None = None) -> torch.Tensor:
        """(N, 3, H, W) float image in [0, 1] -> (N, 3, H, W) float32 stylized image (not clamped).

        With ``stats``, every image is normalised with those statistics instead of its own.
        """
        return self.execute(x, stats, None)

    @torch.inference_mode()
    def record_stats(self, x: torch.Tensor) -> tuple[torch.Tensor, NormStats]:
        """Stylize one image (1, 3, H, W) and return its output and its instance-norm statistics."""
        if x.shape[0] != 1:
            raise ValueError("record_stats takes a single image (batch of one)")
        record = NormStats()
        return self.execute(x, None, record), record

    @torch.inference_mode()
    def smoothed(self, x: torch.Tensor, running: NormStats | None, momentum: float) -> tuple[torch.Tensor, NormStats]:
        """Stylize one video frame (1, 3, H, W) with statistics smoothed over time.

        Each norm layer uses ``momentum * running + (1 - momentum) * own`` (own: this frame's
        statistics at that layer, given the smoothed layers before it), in the same single pass.
        Returns the output and the statistics used, the ``running`` of the next frame; with
        ``running=None`` (the first frame, or after a scene cut) the frame's own statistics.
        """
        if x.shape[0] != 1:
            raise ValueError("smoothed takes a single frame (batch of one)")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
        record = NormStats()
        if running is None:
            return self.execute(x, None, record), record
        return self.execute(x, running, record, momentum), record
