"""Options of the bottleneck adapters (Houlsby and Pfeiffer)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tunekit.options import check, option


@dataclass
class BottleneckOptions:
    reduction_factor: int = option(16, "Bottleneck width is hidden_size // reduction_factor.")
    non_linearity: Literal["relu", "gelu", "silu", "tanh"] = option("relu", "Activation between the down- and up-projection.")
    dropout: float = option(0.0, "Dropout on the bottleneck activations during training.")

    def validate(self) -> None:
        check(self.reduction_factor >= 1, f"method.reduction_factor must be at least 1, not {self.reduction_factor}.")
        check(0.0 <= self.dropout < 1.0, f"method.dropout must be in [0, 1), not {self.dropout}.")
