"""Options of the ``freeze`` method (``--set method.NAME=VALUE``)."""

from __future__ import annotations

from dataclasses import dataclass

from tunekit.options import check, option


@dataclass
class FreezeOptions:
    trainable_layers: int = option(2, "Number of top transformer blocks that train (the rest of the backbone is frozen).")

    def validate(self) -> None:
        check(self.trainable_layers >= 1, f"method.trainable_layers must be at least 1, not {self.trainable_layers}.")
