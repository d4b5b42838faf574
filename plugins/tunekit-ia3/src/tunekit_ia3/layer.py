"""The IA3 wrapper: a frozen projection plus one learned vector that rescales its output or its input.

``side="out"`` rescales output features (keys, values): ``y = base(x) * l``. ``side="in"`` rescales
the input features of a feed-forward down projection, i.e. the intermediate activations:
``y = base(x * l)``. ``offset`` leaves the first ``offset`` output features alone, which is how a fused
query/key/value projection (GPT-2's ``c_attn``) gets vectors for its key and value thirds only.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from tunekit.errors import MethodError

Side = Literal["in", "out"]


def weight_layout(module: nn.Module) -> tuple[int, int, bool]:
    """(in_features, out_features, transposed) for ``nn.Linear``-like and GPT-2 ``Conv1D``-like modules.

    A Conv1D keeps its weight as ``[in, out]`` (``transposed``) and records ``nf`` = out features.
    """
    weight = getattr(module, "weight", None)
    if weight is None or weight.dim() != 2:
        raise MethodError(
            f"IA3 can only wrap linear projections, not {type(module).__name__}; choose linear modules in the targets."
        )
    if hasattr(module, "nf"):  # transformers' Conv1D
        return int(weight.shape[0]), int(module.nf), True
    if hasattr(module, "in_features") and hasattr(module, "out_features"):
        return int(module.in_features), int(module.out_features), False
    raise MethodError(
        f"IA3 can only wrap linear projections, not {type(module).__name__}; choose linear modules in the targets."
    )


def is_quantized(module: nn.Module) -> bool:
    """True when the module's weight is stored quantized (bitsandbytes int8 / packed 4-bit)."""
    weight = getattr(module, "weight", None)
    return weight is not None and (not weight.is_floating_point() or hasattr(weight, "quant_state"))


class IA3Scaled(nn.Module):
    """``base_layer`` (frozen) with a learned rescaling vector ``ia3_l`` initialised to ones."""

    def __init__(self, base_layer: nn.Module, side: Side, size: int, offset: int = 0) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.side = side
        self.offset = offset
        ref = base_layer.weight
        dtype = ref.dtype if ref.is_floating_point() else torch.float32
        self.ia3_l = nn.Parameter(torch.ones(size, dtype=dtype, device=ref.device))
        self.merged = False

    @property
    def weight(self) -> torch.Tensor:
        """The wrapped layer's weight (some model code reads ``.weight`` of a projection)."""
        return self.base_layer.weight

    def full_vector(self) -> torch.Tensor:
        """The scale for every output (or input) feature, ones where the vector does not reach."""
        if self.offset == 0:
            return self.ia3_l
        return torch.cat([self.ia3_l.new_ones(self.offset), self.ia3_l])

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:  # noqa: ANN002, ANN003
        if self.merged:
            return self.base_layer(x, *args, **kwargs)
        scale = self.full_vector()
        if self.side == "in":
            return self.base_layer(x * scale.to(x.dtype), *args, **kwargs)
        y = self.base_layer(x, *args, **kwargs)
        return y * scale.to(y.dtype)

    @torch.no_grad()
    def _rescale_weights(self, factor: torch.Tensor) -> None:
        if is_quantized(self.base_layer):
            raise MethodError(
                "IA3 cannot merge into a quantized base layer exactly; load the model without --quantize to merge."
            )
        _in, _out, transposed = weight_layout(self.base_layer)
        w = self.base_layer.weight
        f = factor.to(w.dtype)
        # Linear weight is [out, in]; Conv1D weight is [in, out].
        if self.side == "out":
            w.mul_(f[None, :] if transposed else f[:, None])
            bias = getattr(self.base_layer, "bias", None)
            if bias is not None:
                bias.mul_(f.to(bias.dtype))
        else:
            w.mul_(f[:, None] if transposed else f[None, :])

    def merge(self) -> None:
        """Fold the vector into the wrapped weights (output rows, or input columns for ``side="in"``)."""
        if self.merged:
            return
        self._rescale_weights(self.full_vector().detach())
        self.merged = True

    def unmerge(self) -> None:
        """Divide the vector back out of the wrapped weights."""
        if not self.merged:
            return
        vector = self.full_vector().detach()
        if bool((vector.abs() < 1e-12).any()):
            raise MethodError("IA3 cannot unmerge a vector with zero entries; reload the base model instead.")
        self._rescale_weights(1.0 / vector)
        self.merged = False

    def extra_repr(self) -> str:
        return f"side={self.side!r}, size={self.ia3_l.numel()}, offset={self.offset}, merged={self.merged}"
