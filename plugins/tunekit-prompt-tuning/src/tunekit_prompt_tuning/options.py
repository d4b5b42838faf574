"""Options of the ``prompt-tuning`` method (``--set method.NAME=VALUE``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tunekit.options import check, option


@dataclass
class PromptTuningOptions:
    """Options of the ``prompt-tuning`` method (``--set method.NAME=VALUE``)."""

    num_virtual_tokens: int = option(20, "Number of trainable prompt vectors prepended to every input.")
    init: Literal["vocab", "random"] = option(
        "vocab", "Start from the embeddings of randomly drawn vocabulary tokens (`vocab`) or from noise (`random`)."
    )
    seed: int = option(0, "Seed for drawing the initial prompt.")

    def validate(self) -> None:
        check(self.num_virtual_tokens > 0, f"method.num_virtual_tokens must be positive, not {self.num_virtual_tokens}.")
