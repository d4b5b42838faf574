"""LoRA adapter files in PEFT's layout, so ``peft.PeftModel.from_pretrained`` loads them (and tunekit loads PEFT's).

Config: PEFT's ``LoraConfig`` keys. Tensors: ``base_model.model.<module>.lora_A.weight`` /
``lora_B.weight``, and the kept-trainable head as ``base_model.model.<head>.<param>`` (PEFT's
``modules_to_save``). Reading validates every key: the ones tunekit uses must have the right type, the
PEFT features tunekit does not implement (DoRA, rsLoRA, per-layer ranks, ...) must be off, and a key
neither tunekit nor PEFT knows is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from tunekit.builtins.methods.lora.options import LoraOptions
from tunekit.errors import CheckpointError, ConfigError
from tunekit.methods import adapter_files
from tunekit.methods.surgery import peft_task_type
from tunekit.options import build

PREFIX = "base_model.model."

# PEFT keys that only describe the file (ignored when reading).
METADATA = {"peft_type", "peft_version", "task_type", "base_model_name_or_path", "revision", "inference_mode",
            "auto_mapping", "megatron_core", "qalora_group_size", "fan_in_fan_out", "ensure_weight_tying"}
# PEFT features tunekit does not implement: accepted only at these "off" values.
OFF_VALUES: dict[str, tuple[Any, ...]] = {
    "bias": ("none",), "use_dora": (False, None), "use_rslora": (False, None), "lora_bias": (False, None),
    "rank_pattern": ({}, None), "alpha_pattern": ({}, None), "layers_to_transform": (None,),
    "layers_pattern": (None, [], ""), "target_parameters": (None, []), "trainable_token_indices": (None,),
    "layer_replication": (None,), "exclude_modules": (None, []), "use_qalora": (False, None),
    "alora_invocation_tokens": (None,), "arrow_config": (None,), "eva_config": (None,), "corda_config": (None,),
    "use_bdlora": (None, False), "velora_config": (None,), "kasa_config": (None,), "lora_ga_config": (None,),
    "megatron_config": (None,), "monteclora_config": (None,), "loftq_config": ({}, None),
    "init_lora_weights": (True, False, "gaussian"),
}
USED = {"r", "lora_alpha", "lora_dropout", "target_modules", "modules_to_save"}


def peft_config(model: nn.Module, options: LoraOptions, targets: list[str] | str, fan_in_fan_out: bool,
                keep_trainable: list[str]) -> dict[str, Any]:
    """PEFT ``LoraConfig`` fields for an adapter tunekit trained."""
    return {
        "peft_type": "LORA",
        "task_type": peft_task_type(model),
        "base_model_name_or_path": getattr(getattr(model, "config", None), "_name_or_path", None) or None,
        "r": options.r,
        "lora_alpha": options.lora_alpha,
        "lora_dropout": options.dropout,
        "target_modules": targets,
        "fan_in_fan_out": fan_in_fan_out,
        "bias": "none",
        "modules_to_save": list(keep_trainable) or None,
        "inference_mode": True,
        "init_lora_weights": True,
        "use_rslora": False,
        "use_dora": False,
    }


def read_peft_config(folder: str | Path) -> tuple[LoraOptions, list[str]]:
    """Validate a PEFT-layout LoRA config and return (options, modules_to_save)."""
    config = adapter_files.read_config(folder)
    where = str(Path(folder) / adapter_files.CONFIG_NAME)
    if config.get("peft_type") != "LORA":
        raise CheckpointError(f"{where!r} is not a LoRA adapter (peft_type {config.get('peft_type')!r}); "
                              "load it with the method that wrote it.")
    for key, value in config.items():
        if key in USED or key in METADATA:
            continue
        if key not in OFF_VALUES:
            raise CheckpointError(f"{where!r} has unknown key {key!r}; tunekit reads PEFT LoRA configs only.")
        if value not in OFF_VALUES[key]:
            raise CheckpointError(
                f"{where!r} sets {key}={value!r}, a PEFT feature tunekit does not implement; load this "
                "adapter with PEFT, or train one without it."
            )
    keep = config.get("modules_to_save") or []
    if not isinstance(keep, list) or not all(isinstance(k, str) for k in keep):
        raise CheckpointError(f"{where!r}: modules_to_save must be a list of module names; fix the file.")
    targets = config.get("target_modules")
    if not isinstance(targets, (list, str)) or (isinstance(targets, list) and not all(isinstance(t, str) for t in targets)):
        raise CheckpointError(f"{where!r}: target_modules must be a list of names or a regex string; fix the file.")
    values = {"r": config.get("r", 8), "alpha": config.get("lora_alpha", 8), "dropout": config.get("lora_dropout", 0.0),
              "target_modules": targets}
    try:
        options = build(LoraOptions, values, where="lora")
    except ConfigError as exc:
        raise CheckpointError(f"{where!r} is invalid: {exc}") from None
    if isinstance(targets, str) and targets != "all-linear":
        options.target_modules = targets  # a PEFT string is always a regex: keep it one
    return options, keep


def normalise_keys(tensors: dict[str, Any]) -> dict[str, Any]:
    """Accept the head under older PEFT names too (``<head>.modules_to_save.<param>``)."""
    return {k.replace(".modules_to_save.", ".").replace(".original_module.", "."): v for k, v in tensors.items()}
