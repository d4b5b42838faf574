"""``int8`` quantizer: load the frozen base with bitsandbytes LLM.int8 (8-bit linear layers).

Modules created fresh at load time (a new task head) and modules a method trains are listed in
``skip_modules`` and stay in full precision. bitsandbytes' 8-bit kernels run on CPU too.
"""

from __future__ import annotations

from typing import Any, Sequence

from tunekit.errors import UsageError
from tunekit.hookspecs import hookimpl


class Int8:
    name = "int8"
    description = "Load the base model in 8-bit (bitsandbytes LLM.int8); the head and trained modules stay float."

    def load_kwargs(self, skip_modules: Sequence[str]) -> dict[str, Any]:
        try:
            from transformers import BitsAndBytesConfig
        except ImportError:  # pragma: no cover - transformers always has it
            raise UsageError("this transformers has no BitsAndBytesConfig; upgrade transformers to use --quantize int8.") from None
        import importlib.util

        if importlib.util.find_spec("bitsandbytes") is None:
            raise UsageError("--quantize int8 needs the bitsandbytes package; pip install bitsandbytes.")
        return {"quantization_config": BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=list(skip_modules) or None)}


@hookimpl
def register_quantizers(register):
    register(Int8())
