"""Bottleneck adapters: ``houlsby`` (after attention and feed-forward) and ``pfeiffer`` (feed-forward only).

Each adapter is ``down (hidden -> hidden // reduction_factor) -> non-linearity -> up (-> hidden)`` added
residually to the output projection of its sub-layer; the up-projection starts at zero, so the model
computes exactly the base model at initialisation. Weights are saved in tunekit's own adapter format
(``adapter_config.json`` with ``tunekit_method`` + ``adapter_model.safetensors``).

Encoder-decoder models (T5, BART): adapters go into the blocks of both stacks. Houlsby puts one after
*every* attention sub-layer, so a decoder block gets three (self-attention, cross-attention,
feed-forward) and an encoder block two; Pfeiffer keeps one per block (feed-forward). (AdapterHub's
Houlsby config leaves cross-attention out unless ``cross_adapter`` is set; tunekit adapts it, since the
cross-attention is where a seq2seq decoder reads its source.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from torch import nn

from tunekit.builtins.methods.bottleneck.layer import BottleneckWrapper
from tunekit.builtins.methods.bottleneck.options import BottleneckOptions
from tunekit.errors import MethodError
from tunekit.methods import architecture
from tunekit.methods.surgery import (
    AppliedMethod,
    adapter_dtype,
    freeze_all,
    load_tunekit_adapter,
    replace_module,
    resolve_modules,
    unfreeze,
)


class BottleneckMethod:
    """One bottleneck-adapter method; ``slots`` says after which sub-layers adapters go."""

    options_class = BottleneckOptions
    identity_at_init = True
    supports_merge = False  # the non-linearity makes the adapter impossible to fold into a linear layer
    trains_base_weights = False
    default_lr = 3e-3  # the learning rate used when training.lr is not set (evidence: docs/defaults.md)

    def __init__(self, name: str, description: str, slots: tuple[str, ...]) -> None:
        self.name = name
        self.description = description
        self.slots = slots

    def _targets(self, model: nn.Module) -> list[str]:
        finders = {"attention": architecture.attention_outputs, "cross": architecture.cross_attention_outputs,
                   "ffn": architecture.ffn_outputs}
        names: list[str] = []
        for slot in self.slots:
            names.extend(finders[slot](model))
        return names

    def apply(self, model: nn.Module, options: Any, keep_trainable: Sequence[str] = ()) -> AppliedMethod:
        keep = resolve_modules(model, keep_trainable)
        hidden = architecture.arch_info(model).hidden
        width = hidden // options.reduction_factor
        if width < 1:
            raise MethodError(
                f"method.reduction_factor {options.reduction_factor} leaves no bottleneck for hidden size "
                f"{hidden}; use a reduction factor of at most {hidden}."
            )
        freeze_all(model)
        targets = self._targets(model)
        dtype = adapter_dtype(model)
        for name in targets:
            base = model.get_submodule(name)
            wrapper = BottleneckWrapper(base, hidden, width, options.non_linearity, options.dropout)
            wrapper.adapter.to(device=next(base.parameters()).device, dtype=dtype)
            replace_module(model, name, wrapper)
        unfreeze(model, [f"{n}.adapter" for n in targets] + keep)
        return AppliedMethod(self.name, model, options, keep, injected=targets + keep,
                             keep_trainable=list(keep_trainable), created=(".adapter.",))

    def expected_trainable(self, arch: Any, options: Any) -> int:
        """blocks x slots x (hidden*width + width + width*hidden + hidden), width = hidden // reduction
        (cross-attention slots: decoder blocks of encoder-decoder models only)."""
        width = arch.hidden // options.reduction_factor
        per_adapter = 2 * arch.hidden * width + width + arch.hidden
        per_slot = {"attention": arch.all_layers, "cross": arch.decoder_layers, "ffn": arch.all_layers}
        return sum(per_slot[slot] for slot in self.slots) * per_adapter

    def load(self, model: nn.Module, folder: str | Path) -> AppliedMethod:
        return load_tunekit_adapter(folder, self.name, self.options_class, self.apply, model)


HOULSBY = BottleneckMethod(
    "houlsby", "Houlsby bottleneck adapters after the attention (self and cross) and feed-forward outputs of every block.",
    ("attention", "cross", "ffn"),
)
PFEIFFER = BottleneckMethod(
    "pfeiffer", "Pfeiffer bottleneck adapter after the feed-forward output of every block.", ("ffn",)
)
