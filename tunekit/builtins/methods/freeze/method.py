"""``freeze`` (partial freezing): the top blocks, the norm above them and the task head train.

Embeddings and the lower blocks stay frozen. Decoders (GPT-2, Llama) apply a final norm after the last
block; it sits between the trained top block and the head, so it trains too (it is counted in
``expected_trainable``). BERT-family encoders have no final norm; their pooler stays frozen (it is
part of the pretrained backbone unless the task names it in ``keep_trainable``).

Encoder-decoder models (T5, BART): the top N blocks of *each* stack train, with each stack's final norm
(T5, mBART); N may be at most the smaller stack's block count. T5's relative-position table lives in
the first block of each stack, so it trains only when N covers every block.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Sequence

from torch import nn

from tunekit.builtins.methods.freeze.options import FreezeOptions
from tunekit.errors import MethodError
from tunekit.methods import architecture
from tunekit.methods.surgery import AppliedMethod, freeze_all, load_tunekit_adapter, resolve_modules, unfreeze


class Freeze:
    name = "freeze"
    description = "Partial freezing: train the top N blocks (and final norm) plus the head; freeze the rest."
    options_class = FreezeOptions
    identity_at_init = True
    supports_merge = False
    trains_base_weights = False
    trains_in_place = True  # it only unfreezes modules: export writes the trained model as it is
    default_lr = 3e-4  # the learning rate used when training.lr is not set (evidence: docs/defaults.md)

    def apply(self, model: nn.Module, options: Any, keep_trainable: Sequence[str] = ()) -> AppliedMethod:
        keep = resolve_modules(model, keep_trainable)
        stacks = [found for _, found in architecture.stacks(model)]
        smallest = min(len(found) for found in stacks)
        if options.trainable_layers > smallest:
            raise MethodError(
                f"method.trainable_layers is {options.trainable_layers} but the model has only {smallest} blocks"
                f"{' in its smaller stack' if len(stacks) > 1 else ''}; use at most {smallest} (or method full)."
            )
        top = [name for found in stacks for name, _ in found[len(found) - options.trainable_layers:]]
        touched = top + architecture.final_norms(model)
        freeze_all(model)
        unfreeze(model, touched + keep)
        return AppliedMethod(self.name, model, options, keep, injected=touched + keep,
                             keep_trainable=list(keep_trainable))

    def expected_trainable(self, arch: Any, options: Any) -> int:
        """``trainable_layers`` blocks (of each stack) plus the final norm(s)."""
        n = options.trainable_layers
        count = n * architecture.block_parameters(arch) + architecture.final_norm_parameters(arch)
        if not arch.decoder_layers:
            return count
        count += n * architecture.decoder_block_parameters(arch)
        for layers in (arch.layers, arch.decoder_layers):  # T5's relative-position table sits in block 0
            count += architecture.relative_bias_parameters(arch) if n >= layers else 0
        return count

    def float_modules(self, arch: Any, options: Any) -> list[str]:
        """The top blocks (of each stack) and the final norms train, so they must not be quantized."""
        family = architecture.family_of_name(arch.family)
        counts = (arch.layers, arch.decoder_layers) if arch.decoder_layers else (arch.layers,)
        # Norms are never quantized (only linear layers are), so the blocks are all that needs naming.
        return [rf".*{re.escape(stack.blocks)}\.{i}" for stack, layers in zip(family.stacks(), counts, strict=True)
                for i in range(max(layers - options.trainable_layers, 0), layers)]

    def load(self, model: nn.Module, folder: str | Path) -> AppliedMethod:
        return load_tunekit_adapter(folder, self.name, self.options_class, self.apply, model)
