"""The bottleneck adapter module, wrapped around a block's output projection.

``BottleneckWrapper(base_layer, ...)`` computes ``y = base_layer(x)`` and returns
``y + up(act(down(y)))``: the adapter sits on the sub-layer's output, before the block's own residual
connection and norm (the placement of Houlsby et al. 2019 and Pfeiffer et al. 2021). ``up`` starts at
zero, so a freshly applied adapter leaves the model's outputs unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh}


class Bottleneck(nn.Module):
    """down-projection -> non-linearity -> dropout -> up-projection (zero-initialised)."""

    def __init__(self, hidden: int, width: int, non_linearity: str, dropout: float = 0.0) -> None:
        super().__init__()
        self.down = nn.Linear(hidden, width)
        self.act = ACTIVATIONS[non_linearity]()
        self.dropout = nn.Dropout(dropout)
        self.up = nn.Linear(width, hidden)
        nn.init.normal_(self.down.weight, std=1e-2)
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.up(self.dropout(self.act(self.down(hidden_states))))


class BottleneckWrapper(nn.Module):
    """A linear layer followed by a residual bottleneck adapter on its output."""

    def __init__(self, base_layer: nn.Module, hidden: int, width: int, non_linearity: str, dropout: float) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.adapter = Bottleneck(hidden, width, non_linearity, dropout)

    @property
    def weight(self) -> torch.Tensor:
        """The wrapped layer's weight (T5's feed-forward reads ``wo.weight`` to pick its dtype)."""
        return self.base_layer.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base_layer(x)
        dtype = self.adapter.down.weight.dtype
        return y + self.adapter(y.to(dtype)).to(y.dtype)
