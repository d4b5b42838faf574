"""Shared pieces of the built-in methods: module surgery helpers and a base ``Applied`` implementation.

A third-party method may use these too (they are public), but nothing requires it: the protocol in
``tunekit.methods.protocol`` is all the rest of tunekit relies on.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from tunekit import options as opts
from tunekit.errors import CheckpointError, ConfigError, MethodError
from tunekit.methods import adapter_files
from tunekit.names import each_suffix, ends_with

# ---------------------------------------------------------------- module helpers


def resolve_modules(model: nn.Module, names: Sequence[str], what: str = "keep_trainable") -> list[str]:
    """Qualified names of the modules named (exactly or as a dotted suffix) in ``names``.

    Raises MethodError for a name that matches no module. Nested matches (a module inside another
    match) are dropped, so each resolved module is the outermost one.
    """
    all_names = [n for n, _ in model.named_modules() if n]
    found = each_suffix(all_names, names, lambda wanted: MethodError(
        f"{what} names module {wanted!r} but {type(model).__name__} has no module of that name; "
        f"use one of its top-level modules ({', '.join(n for n in all_names if '.' not in n)})."))
    return [n for n in found if not any(n.startswith(other + ".") for other in found)]


def present_modules(model: nn.Module, names: Sequence[str]) -> list[str]:
    """The entries of ``names`` that name a module of ``model`` (PEFT lists both ``classifier`` and ``score``)."""
    all_names = [n for n, _ in model.named_modules() if n]
    return [w for w in names if any(ends_with(n, w) for n in all_names)]


def split_name(qualified: str) -> tuple[str, str]:
    """``("a.b", "c")`` for ``"a.b.c"``; ``("", "c")`` for ``"c"``."""
    parent, _, child = qualified.rpartition(".")
    return parent, child


def replace_module(model: nn.Module, qualified: str, new: nn.Module) -> None:
    """Put ``new`` where ``qualified`` is in ``model``."""
    parent, child = split_name(qualified)
    setattr(model.get_submodule(parent) if parent else model, child, new)


def freeze_all(model: nn.Module) -> None:
    for p in model.parameters():
        p.requires_grad_(False)


def unfreeze(model: nn.Module, module_names: Sequence[str]) -> None:
    """Make every floating-point parameter of the named modules trainable (quantized ones are refused)."""
    for name in module_names:
        for pname, p in model.get_submodule(name).named_parameters():
            if not p.is_floating_point():
                raise MethodError(
                    f"module {name!r} is quantized ({name}.{pname} is {p.dtype}) and cannot train; "
                    "keep it out of quantization (the runner's skip list) or use a method that freezes it."
                )
            p.requires_grad_(True)


def is_quantized_linear(module: nn.Module) -> bool:
    """True for bitsandbytes 8-bit / 4-bit linear layers (checked by class name; bitsandbytes stays optional)."""
    return type(module).__name__ in ("Linear8bitLt", "Linear4bit")


def adapter_dtype(model: nn.Module) -> torch.dtype:
    """The dtype for new trainable weights: the model's floating dtype, but float32 instead of float16.

    (Half-precision master weights do not train reliably, and CPU kernels for them are slow.)
    """
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    return torch.float32 if dtype == torch.float16 else dtype


TASK_TYPES = (
    ("ForSequenceClassification", "SEQ_CLS"),
    ("ForTokenClassification", "TOKEN_CLS"),
    ("ForQuestionAnswering", "QUESTION_ANS"),
    ("ForCausalLM", "CAUSAL_LM"),
    ("LMHeadModel", "CAUSAL_LM"),
    ("ForConditionalGeneration", "SEQ_2_SEQ_LM"),  # T5, mT5, BART, mBART
    ("Seq2SeqLM", "SEQ_2_SEQ_LM"),
    ("MTModel", "SEQ_2_SEQ_LM"),  # MarianMTModel
)


def peft_task_type(model: nn.Module) -> str | None:
    """PEFT's ``task_type`` for a transformers model class (from its class name), or None."""
    cls = type(model).__name__
    return next((t for suffix, t in TASK_TYPES if cls.endswith(suffix)), None)


# ---------------------------------------------------------------- the base Applied


@dataclasses.dataclass
class AppliedMethod:
    """A method applied to one model. Subclasses override the file layout and merge where they differ.

    The trainable parameters (method weights and kept head) are exactly what is saved: nothing
    trainable is left out, and nothing frozen goes in.
    """

    method: str
    model: nn.Module
    options: Any
    keep: list[str]
    """Resolved qualified names of the kept-trainable head modules."""
    injected: list[str] = dataclasses.field(default_factory=list)
    keep_trainable: list[str] = dataclasses.field(default_factory=list)
    """The names as given by the task (written to the file so load() can resolve them again)."""
    created: tuple[str, ...] = ()
    """Name fragments (e.g. ``".lora_A."``) of the parameters the method created from scratch."""

    supports_merge = False

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """``{file key: tensor}`` of everything that trains."""
        return {self.file_key(n): p.detach() for n, p in self.model.named_parameters() if p.requires_grad}

    @property
    def new_parameters(self) -> list[str]:
        """Trainable parameters the method created (the engine gives them the new-weights learning rate)."""
        return [n for n, p in self.model.named_parameters()
                if p.requires_grad and any(c in "." + n for c in self.created)]

    def file_key(self, name: str) -> str:
        """The tensor name in ``adapter_model.safetensors`` for the in-memory parameter ``name``."""
        return name

    def file_config(self) -> dict[str, Any]:
        return {
            "tunekit_method": self.method,
            "options": dataclasses.asdict(self.options),
            "keep_trainable": list(self.keep_trainable),
        }

    def save(self, folder: str | Path) -> None:
        adapter_files.write(folder, self.file_config(), self.trainable_state_dict())

    def load_tensors(self, tensors: dict[str, torch.Tensor], folder: str | Path) -> None:
        """Copy saved tensors into the trainable parameters; every key must match in name and shape."""
        params = {self.file_key(n): p for n, p in self.model.named_parameters() if p.requires_grad}
        load_into(params, tensors, folder)

    def merge(self) -> None:
        raise MethodError(f"method {self.method!r} has no weights to merge; save the adapter instead.")

    def unmerge(self) -> None:
        raise MethodError(f"method {self.method!r} has no weights to merge; save the adapter instead.")


def load_into(params: dict[str, torch.Tensor], tensors: dict[str, torch.Tensor], folder: str | Path, *,
              file_name: str = adapter_files.WEIGHTS_NAME,
              fix: str = "load it into the base model and task it was trained with") -> None:
    """Copy ``tensors`` into ``params`` (same keys, same shapes) or raise CheckpointError.

    The one tensor loader of tunekit: adapters (``Applied.load_tensors``) and the engine's checkpoints use it.
    ``folder``/``file_name`` name the file in the error, ``fix`` says what to do about a mismatch.
    """
    where = str(Path(folder) / file_name)
    missing = sorted(set(params) - set(tensors))
    extra = sorted(set(tensors) - set(params))
    if missing or extra:
        detail = f"missing {missing[:3]}" if missing else f"unexpected {extra[:3]}"
        raise CheckpointError(f"{where!r} does not match this model and method ({detail}); {fix}.")
    with torch.no_grad():
        for key, param in params.items():
            value = tensors[key]
            if tuple(value.shape) != tuple(param.shape):
                raise CheckpointError(
                    f"{where!r} holds {key} with shape {tuple(value.shape)} but the model expects "
                    f"{tuple(param.shape)}; {fix}."
                )
            param.copy_(value.to(device=param.device, dtype=param.dtype))


def read_tunekit_config(folder: str | Path, method: str, options_class: type) -> tuple[Any, list[str]]:
    """Validate tunekit's own adapter config and return (options, keep_trainable)."""
    config = adapter_files.read_config(folder)
    where = str(Path(folder) / adapter_files.CONFIG_NAME)
    allowed = {"tunekit_method", "options", "keep_trainable"}
    unknown = sorted(set(config) - allowed)
    if unknown:
        raise CheckpointError(f"{where!r} has unknown key {unknown[0]!r}; re-save the adapter with tunekit.")
    if config.get("tunekit_method") != method:
        raise CheckpointError(
            f"{where!r} was written by method {config.get('tunekit_method')!r}, not {method!r}; "
            f"load it with method {config.get('tunekit_method')!r}."
        )
    keep = config.get("keep_trainable", [])
    if not isinstance(keep, list) or not all(isinstance(k, str) for k in keep):
        raise CheckpointError(f"{where!r}: keep_trainable must be a list of module names; re-save the adapter.")
    options_value = config.get("options", {})
    if not isinstance(options_value, dict):
        raise CheckpointError(f"{where!r}: options must be a JSON object; re-save the adapter.")
    try:
        options = opts.build(options_class, options_value, where="options")
    except ConfigError as exc:
        raise CheckpointError(f"{where!r} is invalid: {exc}") from None
    return options, keep


def load_tunekit_adapter(
    folder: str | Path,
    method: str,
    options_class: type,
    apply: Callable[[nn.Module, Any, Sequence[str]], AppliedMethod],
    model: nn.Module,
) -> AppliedMethod:
    """The whole ``Method.load`` for methods using tunekit's own config: validate, apply, copy weights."""
    options, keep = read_tunekit_config(folder, method, options_class)
    tensors = adapter_files.read_tensors(folder)
    applied = apply(model, options, keep)
    applied.load_tensors(tensors, folder)
    return applied
