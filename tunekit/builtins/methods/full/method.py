"""``full``: every parameter trains; saving writes the whole model with ``save_pretrained`` (safetensors)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import torch
from safetensors.torch import load_file
from torch import nn

from tunekit.builtins.methods.full.options import FullOptions
from tunekit.errors import CheckpointError
from tunekit.methods import architecture
from tunekit.methods.surgery import AppliedMethod, resolve_modules, unfreeze

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"


class AppliedFull(AppliedMethod):
    def save(self, folder: str | Path) -> None:
        """A complete model folder (config + safetensors weights) that ``from_pretrained`` opens."""
        self.model.save_pretrained(str(folder))

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        return {n: p.detach() for n, p in self.model.named_parameters()}


class Full:
    name = "full"
    description = "Full fine-tuning: every weight trains; saves the whole model."
    options_class = FullOptions
    identity_at_init = True
    supports_merge = False
    trains_base_weights = True
    default_lr = 1e-4  # the learning rate used when training.lr is not set (evidence: docs/defaults.md)

    def apply(self, model: nn.Module, options: Any, keep_trainable: Sequence[str] = ()) -> AppliedFull:
        keep = resolve_modules(model, keep_trainable)
        unfreeze(model, [""])  # the root module: all parameters (quantized ones are refused)
        return AppliedFull(self.name, model, options, keep, injected=["(all)"], keep_trainable=list(keep_trainable))

    def expected_trainable(self, arch: Any, options: Any) -> int:
        """Every pretrained parameter: embeddings, blocks, final norm, pooler, untied output layer."""
        return architecture.backbone_parameters(arch)

    def load(self, model: nn.Module, folder: str | Path) -> AppliedFull:
        """Load the weights of a folder ``AppliedFull.save`` wrote into ``model`` (same architecture)."""
        state = _read_weights(Path(folder))
        with torch.no_grad():
            result = model.load_state_dict(state, strict=False)
        loaded = {p.data_ptr() for k, p in model.state_dict().items() if k in state}
        # Tied weights (an output layer sharing the input embedding) are saved once.
        missing = [k for k in result.missing_keys if model.state_dict()[k].data_ptr() not in loaded]
        if missing or result.unexpected_keys:
            detail = f"missing {missing[:3]}" if missing else f"unexpected {result.unexpected_keys[:3]}"
            raise CheckpointError(
                f"the model saved in {str(folder)!r} does not match {type(model).__name__} ({detail}); "
                "load it with the task and base model it was trained with."
            )
        return self.apply(model, self.options_class(), ())


def _read_weights(folder: Path) -> dict[str, torch.Tensor]:
    if (folder / SINGLE_FILE).is_file():
        return load_file(str(folder / SINGLE_FILE))
    if (folder / INDEX_FILE).is_file():
        index = json.loads((folder / INDEX_FILE).read_text(encoding="utf-8"))
        state: dict[str, torch.Tensor] = {}
        for shard in sorted(set(index.get("weight_map", {}).values())):
            state.update(load_file(str(folder / Path(shard).name)))
        return state
    raise CheckpointError(f"{str(folder)!r} holds no {SINGLE_FILE}; point at a folder saved by method full.")
