"""What a parameter-efficient method is, and the public ``apply_method`` API.

A method is any object with these attributes (a ``typing.Protocol``; no base class to inherit):

- ``name`` (str), ``description`` (one line);
- ``options_class``: a dataclass of its options (fields made with ``tunekit.options.option`` so
  each carries a help string; a ``validate()`` method checks ranges);
- ``apply(model, options, keep_trainable) -> Applied``: freezes, injects or wraps modules of
  ``model`` in place. ``keep_trainable`` lists module names (the task's new head) that must stay
  trainable and be saved with the method's weights;
- ``expected_trainable(arch, options) -> int``: the closed-form count of the method's own trainable
  parameters (head excluded) from the config numbers in ``arch`` alone;
- ``load(model, folder) -> Applied``: re-applies the method from a folder that ``Applied.save`` wrote
  and loads its weights.

``Applied`` (what ``apply`` returns) knows what it changed and how to save, merge and unmerge.

Optional attributes of a method and of ``Applied`` are declared once, with their defaults, in
``METHOD_OPTIONAL`` and ``APPLIED_OPTIONAL`` below; the core reads them with
``tunekit.protocols.optional`` and docs/plugins.md lists the same tables (a test keeps them in sync).

Conventions: a method that wraps a pretrained module keeps the wrapped module as the attribute
``base_layer`` of its wrapper (as PEFT does), so ``<name>.base_layer`` is the pretrained weight and
other tools (merging, int8 handling, ``tunekit.methods.architecture``) can still find it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from tunekit import options as opts
from tunekit.errors import MethodError
from tunekit.protocols import OptionalAttr, optional

METHOD_OPTIONAL: dict[str, OptionalAttr] = {
    "default_lr": OptionalAttr(2e-4, "the learning rate used when `training.lr` is not set"),
    "trains_base_weights": OptionalAttr(False, "True when pretrained weights themselves train (`full`): the run "
                                        "refuses a quantized base, and `export` writes the trained model as it is"),
    "trains_in_place": OptionalAttr(False, "True when the method leaves no separate update to merge (it only "
                                    "unfreezes modules: `freeze`, `feature-extraction`, `full`): `tunekit export` "
                                    "writes the trained model as it is; implied by `trains_base_weights`"),
    "supports_merge": OptionalAttr(False, "`Applied.merge`/`unmerge` fold the method into the base weights, so "
                                   "`tunekit export` can write a merged model"),
    "identity_at_init": OptionalAttr(True, "right after `apply` the model computes exactly what the base model does "
                                     "(the conformance kit checks it)"),
    "peft_type": OptionalAttr(None, "the `peft_type` PEFT writes in `adapter_config.json` for this method (`LORA`, "
                              "`IA3`, ...): a PEFT folder of that type is read as this method's; absent means none"),
    "float_modules": OptionalAttr(None, "`float_modules(arch, options) -> list[str]`: regexes (matched from the start "
                                  "of a qualified module name, as `llm_int8_skip_modules` does) of pretrained modules "
                                  "that train and so must not be quantized; absent means none", callable=True),
}
"""Optional attributes of a ``Method``: name -> default and meaning (the one declaration of them)."""

APPLIED_OPTIONAL: dict[str, OptionalAttr] = {
    "new_parameters": OptionalAttr(None, "names of the parameters the method created: the engine trains them at "
                                   "`training.lr` and pretrained ones that train at `training.backbone_lr`; absent "
                                   "means the engine tells them apart by comparing with the base model"),
    "supports_merge": OptionalAttr(False, "True when `merge()` works; `tunekit export` refuses to merge otherwise"),
    "unload": OptionalAttr(None, "`unload()`: after `merge()`, put the plain pretrained modules back in place of the "
                           "method's wrappers (used when exporting a merged model); absent means nothing to undo",
                           callable=True),
    "method": OptionalAttr("?", "the method's name, used in error messages"),
}
"""Optional attributes of an ``Applied``: name -> default and meaning."""


@runtime_checkable
class Applied(Protocol):
    """A method applied to one model."""

    injected: list[str]
    """Names of the modules the method injected, wrapped or unfroze (head included)."""

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """The tensors to save: the method's own weights and the kept-trainable head."""

    def save(self, folder: str | Path) -> None:
        """Write ``adapter_config.json`` + ``adapter_model.safetensors`` (or a whole model) to ``folder``."""

    def merge(self) -> None:
        """Fold the method's weights into the base weights (raise MethodError if unsupported)."""

    def unmerge(self) -> None:
        """Undo ``merge`` (raise MethodError if unsupported)."""


@runtime_checkable
class Method(Protocol):
    name: str
    description: str
    options_class: type

    def apply(self, model: nn.Module, options: Any, keep_trainable: Sequence[str] = ()) -> Applied: ...

    def expected_trainable(self, arch: Any, options: Any) -> int: ...

    def load(self, model: nn.Module, folder: str | Path) -> Applied: ...


@dataclass
class MethodReport:
    """What ``apply_method`` did: parameter counts and the modules touched."""

    method: str
    trainable_params: int
    total_params: int
    injected: list[str] = field(default_factory=list)
    applied: Applied | None = None

    @property
    def trainable_percent(self) -> float:
        return 100.0 * self.trainable_params / max(self.total_params, 1)

    def line(self) -> str:
        """The peers' familiar one-line summary."""
        return (
            f"trainable params: {self.trainable_params:,} || all params: {self.total_params:,} "
            f"|| trainable%: {self.trainable_percent:.4f}"
        )


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) counts of real parameters.

    Packed quantized storage is counted by its logical size: bitsandbytes 8-bit weights hold one
    element per parameter; 4-bit ``Params4bit`` pack two per byte, so their ``quant_state.shape``
    gives the true number.
    """
    trainable = total = 0
    for p in model.parameters():
        shape = getattr(getattr(p, "quant_state", None), "shape", None)
        n = int(torch.Size(shape).numel()) if shape is not None else p.numel()
        total += n
        if p.requires_grad:
            trainable += n
    return trainable, total


def make_options(method: Method, values: dict[str, Any] | None = None) -> Any:
    """Build ``method.options_class`` from a mapping; unknown keys and bad values raise ConfigError."""
    return opts.build(method.options_class, values or {}, where="method")


def apply_method(
    model: nn.Module,
    name: str,
    keep_trainable: Sequence[str] = (),
    **options: Any,
) -> MethodReport:
    """Apply the registered method ``name`` to ``model`` in place and report what changed.

    >>> report = tunekit.apply_method(model, "lora", r=8, target_modules=["query", "value"])
    >>> print(report.line())
    """
    from tunekit.plugins import registries

    method = registries().methods.get(name)
    parsed = make_options(method, options)
    applied = method.apply(model, parsed, keep_trainable)
    trainable, total = count_parameters(model)
    if trainable == 0:
        raise MethodError(f"method {name!r} left no trainable parameter in the model; check its options.")
    return MethodReport(name, trainable, total, list(applied.injected), applied)


def method_flag(method: Any, name: str) -> bool:
    """An optional boolean attribute of a method, with its default from ``METHOD_OPTIONAL``."""
    if name == "trains_in_place":
        return trains_in_place(method)
    return bool(optional(method, name, METHOD_OPTIONAL))


def trains_in_place(method: Any) -> bool:
    """True when the trained model is the result as it stands (nothing separate to merge before export)."""
    return bool(optional(method, "trains_in_place", METHOD_OPTIONAL) or
                optional(method, "trains_base_weights", METHOD_OPTIONAL))


def float_modules(method: Any, arch: Any, options: Any) -> list[str]:
    """Module-name regexes the method needs in full precision (empty when it has no ``float_modules``)."""
    fn = optional(method, "float_modules", METHOD_OPTIONAL)
    return list(fn(arch, options)) if callable(fn) else []
