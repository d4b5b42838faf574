"""``nf4`` and ``fp4`` quantizers: load the frozen base in 4-bit with bitsandbytes (the QLoRA recipe).

``nf4`` stores each weight as a 4-bit NormalFloat code, ``fp4`` as a 4-bit float; both keep one scale per
block of 64 weights, and double quantization stores those scales in 8-bit too. Matmuls dequantize to the
compute dtype. The modules a run trains stay in full precision, named exactly as for ``int8`` (whose
:func:`skip_patterns` this module reuses). Embeddings, a tied ``lm_head`` and the norms are never quantized
by bitsandbytes; only the linear layers inside the blocks are. bitsandbytes' 4-bit kernels run on CPU too.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any, Literal, Sequence

from tunekit.builtins.quantizers.int8 import skip_patterns
from tunekit.errors import UsageError
from tunekit.hookspecs import hookimpl
from tunekit.options import option


@dataclass
class FourBitOptions:
    compute_dtype: Literal["auto", "float32", "bfloat16", "float16"] = option(
        "auto", "Dtype the 4-bit weights are dequantized to for each matmul; `auto`: bfloat16 on a CUDA GPU that "
        "supports it, float32 otherwise.")
    double_quant: bool = option(True, "Quantize the per-block scales too (about 0.4 bit less per weight).")


def compute_dtype(name: str) -> Any:
    """The torch dtype for ``FourBitOptions.compute_dtype`` (``auto`` resolved for this machine)."""
    import torch

    if name == "auto":
        bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        return torch.bfloat16 if bf16 else torch.float32
    return getattr(torch, name)


class FourBit:
    """One 4-bit quantizer (``nf4`` or ``fp4``): the two differ only in bitsandbytes' ``bnb_4bit_quant_type``."""

    options_class = FourBitOptions

    def __init__(self, quant_type: str, description: str) -> None:
        self.name = quant_type
        self.description = description

    def load_kwargs(self, skip_modules: Sequence[str], options: FourBitOptions | None = None) -> dict[str, Any]:
        """``from_pretrained`` keyword arguments: a 4-bit ``BitsAndBytesConfig`` that leaves ``skip_modules`` in float."""
        from transformers import BitsAndBytesConfig

        if importlib.util.find_spec("bitsandbytes") is None:
            raise UsageError(f"--quantize {self.name} needs the bitsandbytes package; pip install bitsandbytes.")
        options = options or FourBitOptions()
        skip = skip_patterns(skip_modules)
        config = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=self.name,
            bnb_4bit_compute_dtype=compute_dtype(options.compute_dtype),
            bnb_4bit_use_double_quant=options.double_quant,
            llm_int8_skip_modules=skip or None,
        )
        return {"quantization_config": config}

    def after_load(self, model: Any) -> None:
        """Keep every 4-bit layer on the kernel that trains.

        On a CPU with AVX512-BF16, bitsandbytes repacks a 4-bit weight in place the first time the layer runs
        in eval mode without gradients, for a faster inference kernel that rounds the block scales to bfloat16
        and that autograd cannot pass through: every later training step would then get no gradient below
        that layer (a run evaluates, and answers held-out prompts, between steps). Its flag is switched off.
        """
        for module in model.modules():
            if hasattr(module, "support_avx512bf16_for_cpu"):
                module.support_avx512bf16_for_cpu = False


@hookimpl
def register_quantizers(register):
    register(FourBit("nf4", "Load the base model in 4-bit NormalFloat (bitsandbytes, QLoRA); the head and trained "
                            "modules stay float."))
    register(FourBit("fp4", "Load the base model in 4-bit float (bitsandbytes); the head and trained modules stay "
                            "float."))
