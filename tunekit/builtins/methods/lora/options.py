"""Options of LoRA."""

from __future__ import annotations

from dataclasses import dataclass

from tunekit.options import check, option


@dataclass
class LoraOptions:
    r: int = option(8, "Rank of the low-rank update B @ A.")
    alpha: float | None = option(None, "Scaling numerator: the update is multiplied by alpha / r. Default 2 * r (scale 2).")
    dropout: float = option(0.0, "Dropout on the LoRA input path during training.")
    target_modules: str | list[str] | None = option(
        None,
        "Which linear layers get LoRA: a list of names or dotted name suffixes (a comma-separated string works "
        "too), a regex matched against the full module name, or 'all-linear' (every linear layer of the "
        "transformer blocks, never the head). Default per architecture: BERT query,value; GPT-2 c_attn; "
        "Llama q_proj,v_proj; T5 q,v and BART q_proj,v_proj (every attention: encoder self, decoder self and cross).",
    )

    def validate(self) -> None:
        check(self.r >= 1, f"method.r must be at least 1, not {self.r}.")
        check(self.alpha is None or self.alpha > 0, f"method.alpha must be positive, not {self.alpha}.")
        check(0.0 <= self.dropout < 1.0, f"method.dropout must be in [0, 1), not {self.dropout}.")
        if isinstance(self.target_modules, list):
            check(len(self.target_modules) > 0, "method.target_modules must not be an empty list; omit it for the defaults.")

    @property
    def lora_alpha(self) -> float:
        """alpha, with its default 2 * r resolved."""
        return float(self.alpha) if self.alpha is not None else 2.0 * self.r
