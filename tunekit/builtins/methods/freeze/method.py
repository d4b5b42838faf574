"""``freeze`` (partial freezing): the top blocks, the norm above them and the task head train.

Embeddings and the lower blocks stay frozen. Decoders (GPT-2, Llama) apply a final norm after the last
block; it sits between the trained top block and the head, so it trains too (it is counted in
``expected_trainable``). BERT-family encoders have no final norm; their pooler stays frozen (it is
part of the pretrained backbone unless the task names it in ``keep_trainable``).
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
    default_lr = 1e-4  # the learning rate used when training.lr is not set

    def apply(self, model: nn.Module, options: Any, keep_trainable: Sequence[str] = ()) -> AppliedMethod:
        keep = resolve_modules(model, keep_trainable)
        blocks = architecture.blocks(model)
        if options.trainable_layers > len(blocks):
            raise MethodError(
                f"method.trainable_layers is {options.trainable_layers} but the model has only {len(blocks)} "
                f"blocks; use at most {len(blocks)} (or method full)."
            )
        top = [name for name, _ in blocks[len(blocks) - options.trainable_layers:]]
        norm = architecture.final_norm(model)
        touched = top + ([norm] if norm else [])
        freeze_all(model)
        unfreeze(model, touched + keep)
        return AppliedMethod(self.name, model, options, keep, injected=touched + keep,
                             keep_trainable=list(keep_trainable))

    def expected_trainable(self, arch: Any, options: Any) -> int:
        """``trainable_layers`` blocks plus the final norm (decoders)."""
        return options.trainable_layers * architecture.block_parameters(arch) + architecture.final_norm_parameters(arch)

    def float_modules(self, arch: Any, options: Any) -> list[str]:
        """The top blocks and the final norm train, so they must not be quantized."""
        family = architecture.family_of_name(arch.family)
        first = arch.layers - options.trainable_layers
        # Norms are never quantized (only linear layers are), so the blocks are all that needs naming.
        return [rf".*{re.escape(family.blocks)}\.{i}" for i in range(max(first, 0), arch.layers)]

    def load(self, model: nn.Module, folder: str | Path) -> AppliedMethod:
        return load_tunekit_adapter(folder, self.name, self.options_class, self.apply, model)
