"""Options of prefix tuning."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tunekit.options import check, option


@dataclass
class PrefixTuningOptions:
    num_virtual_tokens: int = option(20, "Number of trainable key/value positions prepended in every layer.")
    projection: bool | int = option(
        False,
        "Reparameterise the prefixes during training with an MLP (true: hidden size of the model, or a number: "
        "that hidden size); the MLP is folded into plain prefixes when saved.",
    )
    dropout: float = option(0.0, "Dropout on the prefixes during training.")
    attention: list[Literal["encoder", "decoder", "cross"]] = option(
        ["encoder", "decoder", "cross"],
        "Encoder-decoder models (T5, BART): the attention that gets prefixes: encoder self-attention, decoder "
        "self-attention, decoder cross-attention. [decoder] alone is PEFT's layout (saved in PEFT's format); "
        "one-stack models prefix their one self-attention and need the default.",
    )

    def validate(self) -> None:
        check(self.num_virtual_tokens >= 1, f"method.num_virtual_tokens must be at least 1, not {self.num_virtual_tokens}.")
        check(isinstance(self.projection, bool) or self.projection >= 1,
              f"method.projection must be true, false or a positive hidden size, not {self.projection}.")
        check(0.0 <= self.dropout < 1.0, f"method.dropout must be in [0, 1), not {self.dropout}.")
        check(bool(self.attention) and len(set(self.attention)) == len(self.attention),
              f"method.attention must name each of encoder, decoder, cross at most once and at least one, not {self.attention}.")

    @property
    def default_attention(self) -> bool:
        """True when ``attention`` names all three kinds (the only setting a one-stack model accepts)."""
        return set(self.attention) == {"encoder", "decoder", "cross"}

    def projection_size(self, hidden: int) -> int:
        """Hidden size of the reparameterisation MLP, or 0 without one."""
        if self.projection is True:
            return hidden
        if self.projection is False:
            return 0
        return int(self.projection)
