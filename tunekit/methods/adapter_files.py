"""Reading and writing adapter folders: ``adapter_config.json`` + ``adapter_model.safetensors``.

These are the file names PEFT, vLLM and TGI use. LoRA and prefix-tuning folders use PEFT's config keys
and tensor names, so ``peft.PeftModel.from_pretrained`` loads them; the other built-in methods write
tunekit's own config (``{"tunekit_method": name, "options": {...}, "keep_trainable": [...]}``) under
the same two names. Weights only ever go through safetensors; nothing here unpickles anything.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from tunekit.errors import CheckpointError

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"


def write(folder: str | Path, config: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    """Write ``config`` as JSON and ``tensors`` (made contiguous, on CPU) as safetensors into ``folder``."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    (out / CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    clean = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    save_file(clean, str(out / WEIGHTS_NAME), metadata={"format": "pt"})


def read_config(folder: str | Path) -> dict[str, Any]:
    """The parsed ``adapter_config.json`` of ``folder`` (CheckpointError if absent or not a JSON object)."""
    path = Path(folder) / CONFIG_NAME
    if not path.is_file():
        raise CheckpointError(f"{str(path)!r} does not exist; point at a folder written by a method's save().")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise CheckpointError(f"{str(path)!r} is not valid JSON; re-save the adapter.") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{str(path)!r} must hold a JSON object; re-save the adapter.")
    return config


def read_tensors(folder: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of ``adapter_model.safetensors`` in ``folder`` (CheckpointError if absent or corrupt)."""
    path = Path(folder) / WEIGHTS_NAME
    if not path.is_file():
        raise CheckpointError(f"{str(path)!r} does not exist; the adapter folder is incomplete, re-save it.")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{str(path)!r} is not a readable safetensors file ({exc}); re-save the adapter.") from None


def method_of(folder: str | Path) -> str:
    """The method that wrote ``folder``: tunekit's ``tunekit_method`` key, else the registered method whose
    ``peft_type`` attribute matches PEFT's ``peft_type``."""
    from tunekit.methods.protocol import METHOD_OPTIONAL
    from tunekit.plugins import registries  # here, not at import: plugins import this module while they load
    from tunekit.protocols import optional

    config = read_config(folder)
    if isinstance(config.get("tunekit_method"), str):
        return config["tunekit_method"]
    peft_type = config.get("peft_type")
    claims = {optional(e.obj, "peft_type", METHOD_OPTIONAL): e.name for e in registries().methods}
    claims.pop(None, None)
    if peft_type in claims:
        return claims[peft_type]
    known = ", ".join(sorted(claims)) or "none"
    raise CheckpointError(
        f"{str(Path(folder) / CONFIG_NAME)!r} names neither a tunekit method nor a PEFT type an installed method "
        f"reads ({peft_type!r}; read: {known}); install the plugin for that method or re-save the adapter with tunekit."
    )
