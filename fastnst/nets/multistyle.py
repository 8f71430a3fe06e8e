"""Several paintings in one transform network (Dumoulin, Shlens & Kudlur 2017, "A Learned Representation
for Artistic Style"): the convolutions are shared, and each painting has its own instance-norm scales and
shifts ("conditional instance normalisation"), about 1% of the weights.

Training only: each painting comes out as an ordinary TransformNet (``style_net``), a model file like any
other, so inference, int8 and ONNX know nothing of this. ``mean_net`` is the network with the mean of the
paintings' scales and shifts, the start a new painting is fine-tuned from (``recipe=quick``).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn
from torch.func import functional_call

from fastnst.nets.transform_net import TransformerConfig, TransformNet

# What a multi-style run's <name>.safetensors (and its checkpoint, loaded as a model) holds.
SHARED_NETWORK = "the shared network, with the mean of the paintings' instance-norm scales and shifts"


def norm_names(net: TransformNet) -> list[str]:
    """The instance-norm layers' module names, in network order."""
    return [name for name, m in net.named_modules() if isinstance(m, nn.InstanceNorm2d)]


class MultiStyleNet(nn.Module):
    """A TransformNet whose instance-norm affine parameters are chosen per painting (``select``).

    The painting is set on the module rather than passed to ``forward`` so that the training loop,
    DistributedDataParallel and sample rendering call it as they call a TransformNet. One painting per
    batch, as Dumoulin et al. train.
    """

    def __init__(self, config: TransformerConfig, styles: Sequence[str]) -> None:
        super().__init__()
        if not styles or len(set(styles)) != len(styles):
            raise ValueError(f"a multi-style network needs distinct painting names, got {list(styles)}")
        self.config = config
        self.styles = tuple(styles)
        self.net = TransformNet(config)
        self._norms = norm_names(self.net)
        n = len(self.styles)
        # Row i holds painting i's scales and shifts; each starts as the single network's (1 and 0).
        self.scales = nn.ParameterList(
            [nn.Parameter(self.net.get_submodule(name).weight.detach().repeat(n, 1)) for name in self._norms])
        self.shifts = nn.ParameterList(
            [nn.Parameter(self.net.get_submodule(name).bias.detach().repeat(n, 1)) for name in self._norms])
        for name in self._norms:  # stand-ins, replaced on every call: not trained
            self.net.get_submodule(name).requires_grad_(False)
        self.style_index = 0

    def painting_parameters(self) -> list[nn.Parameter]:
        """Every painting's own weights (the norms' scales and shifts), as opposed to the shared convolutions."""
        return [*self.scales, *self.shifts]

    def select(self, index: int) -> None:
        """Paint with painting ``index`` from the next forward on."""
        if not 0 <= index < len(self.styles):
            raise IndexError(f"painting {index} of {len(self.styles)}")
        self.style_index = index

    def _norm_params(self, scales: Sequence[torch.Tensor], shifts: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        params = {}
        for name, scale, shift in zip(self._norms, scales, shifts):
            params[f"{name}.weight"], params[f"{name}.bias"] = scale, shift
        return params

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        i = self.style_index
        return functional_call(self.net, self._norm_params([s[i] for s in self.scales], [b[i] for b in self.shifts]), (x,))

    @torch.no_grad()
    def _with_norms(self, scales: Sequence[torch.Tensor], shifts: Sequence[torch.Tensor]) -> TransformNet:
        net = copy.deepcopy(self.net).requires_grad_(True)
        net.load_state_dict({**net.state_dict(), **{k: v.detach().clone() for k, v in self._norm_params(scales, shifts).items()}})
        return net

    def style_net(self, index: int) -> TransformNet:
        """Painting ``index`` as a plain TransformNet (a copy)."""
        return self._with_norms([s[index] for s in self.scales], [b[index] for b in self.shifts])

    def mean_net(self) -> TransformNet:
        """The shared convolutions with the mean of every painting's scales and shifts (a copy)."""
        return self._with_norms([s.mean(0) for s in self.scales], [b.mean(0) for b in self.shifts])
