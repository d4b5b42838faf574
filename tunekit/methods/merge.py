"""Merging a method into a plain floating-point model (also from an 8-bit base).

Merging LoRA into int8 weights would round the update away, so ``Applied.merge`` refuses an int8
base. ``merged_float_model`` is the explicit way out: it dequantizes every bitsandbytes layer to a
float ``nn.Linear``, folds the method's weights in, removes the method's wrappers and the quantization
settings, and returns a model that ``save_pretrained`` writes as an ordinary float checkpoint.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from tunekit.errors import MethodError
from tunekit.methods.protocol import APPLIED_OPTIONAL
from tunekit.methods.surgery import is_quantized_linear, replace_module
from tunekit.protocols import optional


def dequantized_weight(module: nn.Module) -> torch.Tensor:
    """The float32 weight ``[out, in]`` of a bitsandbytes 8-bit or 4-bit linear layer."""
    import bitsandbytes.functional as bnbf

    weight = module.weight
    if type(module).__name__ == "Linear4bit":
        data, state = weight.data, weight.quant_state
        if getattr(state, "packing_format_for_cpu", False):
            # bitsandbytes repacked it for its CPU inference kernel; it has no public way back, so its own inverse
            data, state = bnbf._convert_weight_packed_for_cpu_inverse(data, state)
        return bnbf.dequantize_4bit(data, state).float()
    scales = getattr(weight, "SCB", None)
    if scales is None:
        scales = getattr(getattr(module, "state", None), "SCB", None)
    if scales is None:  # not quantized yet (bitsandbytes quantizes lazily on first use)
        return weight.data.float()
    return bnbf.int8_vectorwise_dequant(weight.data, scales).float()


def float_linear(module: nn.Module) -> nn.Linear:
    """A float32 ``nn.Linear`` computing what the quantized ``module`` represents."""
    weight = dequantized_weight(module)
    out = nn.Linear(weight.shape[1], weight.shape[0], bias=module.bias is not None, device=weight.device)
    with torch.no_grad():
        out.weight.copy_(weight)
        if module.bias is not None:
            out.bias.copy_(module.bias.float())
    out.requires_grad_(False)
    return out


def dequantize_model(model: nn.Module) -> nn.Module:
    """Replace every bitsandbytes linear layer with a float one and drop the quantization settings."""
    for name, module in list(model.named_modules()):
        if is_quantized_linear(module):
            replace_module(model, name, float_linear(module))
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    for attr, value in (("hf_quantizer", None), ("is_quantized", False), ("is_loaded_in_8bit", False), ("is_loaded_in_4bit", False),
                        ("quantization_method", None)):
        if attr in vars(model):
            setattr(model, attr, value)
    nn.Module.float(model)
    return model


def merged_float_model(model: nn.Module, applied: Any) -> nn.Module:
    """Dequantize ``model``, merge ``applied`` into it and unwrap it: a plain float model, ready to save.

    Raises MethodError for methods that cannot be merged (bottleneck adapters, prefix tuning).
    """
    if not optional(applied, "supports_merge", APPLIED_OPTIONAL):
        raise MethodError(
            f"method {optional(applied, 'method', APPLIED_OPTIONAL)!r} cannot be merged into the base weights; save "
            "the adapter and load it on top of the base model instead."
        )
    dequantize_model(model)
    applied.merge()
    unload = optional(applied, "unload", APPLIED_OPTIONAL)
    if callable(unload):
        unload()
    return model
