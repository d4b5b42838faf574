"""IA3 folders in PEFT's layout (``peft_type: IA3``): read PEFT's, and write them for encoder-decoder models.

PEFT's ``target_modules`` minus its ``feedforward_modules`` rescale their outputs (tunekit's
``key_value_modules``), the ``feedforward_modules`` their inputs; both are name suffixes or one regex, as in
tunekit. PEFT stores each vector as ``base_model.model.<module>.ia3_l`` shaped ``[out, 1]`` or ``[1, in]``;
tunekit's are flat, under the same module names. ``write`` produces that layout (``task_type`` from the model
class, the targets as full module names, so PEFT wraps exactly the modules tunekit wrapped).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from tunekit.errors import CheckpointError, ConfigError
from tunekit.methods import adapter_files
from tunekit.methods.surgery import peft_task_type
from tunekit.options import build
from tunekit_ia3.options import IA3Options

PREFIX = "base_model.model."
METADATA = {"peft_type", "task_type", "base_model_name_or_path", "revision", "peft_version", "auto_mapping",
            "inference_mode", "fan_in_fan_out", "init_ia3_weights", "exclude_modules", "modules_to_save",
            "target_modules", "feedforward_modules"}


def is_peft(folder: str | Path) -> bool:
    """True when ``folder`` holds an IA3 adapter in PEFT's layout."""
    return adapter_files.read_config(folder).get("peft_type") == "IA3"


def _names(value: Any, key: str, where: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise CheckpointError(f"{where!r}: {key} must be a list of module names or a regex; fix the file.")


def read_config(folder: str | Path) -> tuple[IA3Options, list[str]]:
    """(IA3 options, modules_to_save) of a PEFT IA3 folder; unknown keys and excluded modules are refused."""
    config = adapter_files.read_config(folder)
    where = str(Path(folder) / adapter_files.CONFIG_NAME)
    unknown = sorted(set(config) - METADATA)
    if unknown:
        raise CheckpointError(f"{where!r} has unknown key {unknown[0]!r}; tunekit reads PEFT IA3 configs only.")
    if config.get("exclude_modules"):
        raise CheckpointError(f"{where!r} sets exclude_modules, which tunekit does not implement; list the targets instead.")
    targets = _names(config.get("target_modules"), "target_modules", where)
    feedforward = _names(config.get("feedforward_modules"), "feedforward_modules", where)
    if not targets:
        raise CheckpointError(f"{where!r} names no target_modules; write the targets PEFT used into the file.")
    values = {"key_value_modules": [t for t in targets if t not in feedforward], "feedforward_modules": feedforward}
    try:
        options = build(IA3Options, values, where="ia3")
    except ConfigError as exc:
        raise CheckpointError(f"{where!r} is invalid: {exc}") from None
    return options, _names(config.get("modules_to_save"), "modules_to_save", where)


def tensors(folder: str | Path, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """PEFT's tensors under tunekit's parameter names, vectors flattened to the shapes in ``params``."""
    out = {}
    for key, value in adapter_files.read_tensors(folder).items():
        name = key.removeprefix(PREFIX).replace(".modules_to_save.", ".").replace(".original_module.", ".")
        if name.endswith(".ia3_l") and name in params:
            value = value.reshape(params[name].shape)
        out[name] = value
    return out


def write(folder: str | Path, model: Any, vectors: dict[str, tuple[str, torch.Tensor]]) -> None:
    """Write ``vectors`` (``{module name: (side, full vector)}``, side ``in`` for feed-forward inputs) as a PEFT
    IA3 folder for ``model`` (nothing else trains: PEFT's ``modules_to_save`` stays empty)."""
    config = {
        "peft_type": "IA3", "task_type": peft_task_type(model),
        "base_model_name_or_path": getattr(getattr(model, "config", None), "_name_or_path", None) or None,
        "target_modules": sorted(vectors), "feedforward_modules": sorted(n for n, (side, _) in vectors.items() if side == "in"),
        "fan_in_fan_out": False, "init_ia3_weights": True, "inference_mode": True, "modules_to_save": None,
    }
    tensors = {f"{PREFIX}{name}.ia3_l": vector.detach().reshape((1, -1) if side == "in" else (-1, 1))
               for name, (side, vector) in vectors.items()}
    adapter_files.write(folder, config, tensors)
