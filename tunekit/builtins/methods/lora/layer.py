"""The LoRA wrapper: ``y = base_layer(x) + (alpha / r) * B(A(dropout(x)))``.

Works around ``nn.Linear`` (weight ``[out, in]``), transformers ``Conv1D`` (GPT-2; weight ``[in, out]``,
so merged deltas are transposed) and bitsandbytes ``Linear8bitLt`` (the base computes in int8; the
LoRA path computes in floating point on the same input). ``B`` starts at zero, so the wrapped layer
computes exactly the base layer at initialisation.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from tunekit.errors import MethodError
from tunekit.methods.surgery import is_quantized_linear


def layer_dims(base: nn.Module) -> tuple[int, int, bool]:
    """(in_features, out_features, fan_in_fan_out) of a linear-like layer."""
    if isinstance(base, nn.Linear):
        return base.in_features, base.out_features, False
    weight = base.weight  # transformers Conv1D stores [in, out]
    return int(weight.shape[0]), int(weight.shape[1]), True


class LoraWrapper(nn.Module):
    """A linear layer plus a trainable low-rank update."""

    def __init__(self, base_layer: nn.Module, r: int, alpha: float, dropout: float = 0.0) -> None:
        super().__init__()
        in_features, out_features, self.fan_in_fan_out = layer_dims(base_layer)
        self.base_layer = base_layer
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.lora_A = nn.Linear(in_features, r, bias=False)
        self.lora_B = nn.Linear(r, out_features, bias=False)
        self.scaling = alpha / r
        self.merged = False
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)

    @property
    def weight(self) -> torch.Tensor:
        """The wrapped layer's weight (T5's feed-forward reads ``wo.weight`` to pick its dtype)."""
        return self.base_layer.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base_layer(x)
        if self.merged:
            return y
        dtype = self.lora_A.weight.dtype
        update = self.lora_B(self.lora_A(self.lora_dropout(x.to(dtype)))) * self.scaling
        return y + update.to(y.dtype)

    def delta_weight(self) -> torch.Tensor:
        """The update in the base weight's layout (transposed for Conv1D)."""
        delta = (self.lora_B.weight @ self.lora_A.weight) * self.scaling
        return delta.T if self.fan_in_fan_out else delta

    def _check_float_base(self) -> None:
        if is_quantized_linear(self.base_layer):
            raise MethodError(
                "cannot merge LoRA into a quantized (int8) base weight without rounding loss; build a merged "
                "float model with tunekit.methods.merge.merged_float_model(model, applied) instead."
            )

    def merge(self) -> None:
        if self.merged:
            return
        self._check_float_base()
        with torch.no_grad():
            weight = self.base_layer.weight
            weight.add_(self.delta_weight().to(weight.dtype))
        self.merged = True

    def unmerge(self) -> None:
        if not self.merged:
            return
        with torch.no_grad():
            weight = self.base_layer.weight
            weight.sub_(self.delta_weight().to(weight.dtype))
        self.merged = False
