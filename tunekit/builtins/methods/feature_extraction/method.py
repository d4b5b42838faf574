"""``feature-extraction``: the whole pretrained backbone is frozen; only the task head trains."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from torch import nn

from tunekit.builtins.methods.feature_extraction.options import FeatureExtractionOptions
from tunekit.methods.surgery import AppliedMethod, freeze_all, load_tunekit_adapter, resolve_modules, unfreeze


class FeatureExtraction:
    name = "feature-extraction"
    description = "Freeze the whole pretrained model; train only the task head."
    options_class = FeatureExtractionOptions
    identity_at_init = True
    supports_merge = False
    trains_base_weights = False
    trains_in_place = True  # it only unfreezes modules: export writes the trained model as it is
    default_lr = 3e-3  # the learning rate used when training.lr is not set (evidence: docs/defaults.md)

    def apply(self, model: nn.Module, options: Any, keep_trainable: Sequence[str] = ()) -> AppliedMethod:
        keep = resolve_modules(model, keep_trainable)
        freeze_all(model)
        unfreeze(model, keep)
        return AppliedMethod(self.name, model, options, keep, injected=list(keep), keep_trainable=list(keep_trainable))

    def expected_trainable(self, arch: Any, options: Any) -> int:
        """Nothing of the method's own trains."""
        return 0

    def load(self, model: nn.Module, folder: str | Path) -> AppliedMethod:
        return load_tunekit_adapter(folder, self.name, self.options_class, self.apply, model)
