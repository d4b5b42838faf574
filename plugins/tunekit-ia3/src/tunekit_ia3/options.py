"""Options of the ``ia3`` method (``--set method.NAME=VALUE``)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from tunekit.options import check, option


@dataclass
class IA3Options:
    """Options of the ``ia3`` method (``--set method.NAME=VALUE``)."""

    key_value_modules: list[str] = option(
        [], "Projections whose outputs IA3 rescales (keys and values); name, dotted suffix or regex. Default: per architecture."
    )
    feedforward_modules: list[str] = option(
        [], "Feed-forward down projections whose inputs IA3 rescales. Default: per architecture."
    )
    fused_qkv_modules: list[str] = option(
        [], "Fused query/key/value projections (GPT-2 c_attn); only the key and value thirds are rescaled."
    )

    def validate(self) -> None:
        for key in ("key_value_modules", "feedforward_modules", "fused_qkv_modules"):
            for pattern in getattr(self, key):
                try:
                    re.compile(pattern)
                except re.error:
                    check(False, f"method.{key}: {pattern!r} is not a valid pattern; use a module name or a regex.")

    @property
    def uses_defaults(self) -> bool:
        return not (self.key_value_modules or self.feedforward_modules or self.fused_qkv_modules)
