"""Quantized loading for a run: pick the quantizer, parse its options, and keep the trained modules float.

The runner asks :func:`check_quantize` before any data or weights are read (a method that trains the base
weights, an unknown quantizer or quantizer option fail at once), then :func:`build_model` to load the model
with the quantizer's ``from_pretrained`` keyword arguments. The modules a run trains stay in float: the task's ``head_modules``
and the method's ``float_modules``. Names no built-in quantizer.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

from tunekit import options as opts
from tunekit.config import RunConfig
from tunekit.errors import ConfigError, UsageError
from tunekit.methods.protocol import method_flag
from tunekit.models import QUANTIZER_OPTIONAL, ResolvedModel
from tunekit.plugins import registries
from tunekit.protocols import optional


@dataclasses.dataclass
class Quantization:
    """The run's quantizer and its parsed options (None for a quantizer without an ``options_class``)."""

    quantizer: Any
    options: Any = None

    def load_kwargs(self, skip_modules: Sequence[str]) -> dict[str, Any]:
        """The quantizer's ``from_pretrained`` keyword arguments (options passed only to a quantizer that has them)."""
        if self.options is None:
            return self.quantizer.load_kwargs(list(skip_modules))  # the 0.1 protocol: one argument
        return self.quantizer.load_kwargs(list(skip_modules), self.options)


def quantizer_options(quantizer: Any, values: dict[str, Any] | None) -> Any:
    """Build the quantizer's ``options_class`` from ``model.quantize_options`` (ConfigError for a bad key or value)."""
    cls = optional(quantizer, "options_class", QUANTIZER_OPTIONAL)
    if cls is None:
        if values:
            raise ConfigError(
                f"quantizer {quantizer.name!r} takes no options, but model.quantize_options sets "
                f"{', '.join(map(str, values))}; remove model.quantize_options."
            )
        return None
    return opts.build(cls, values or {}, where="model.quantize_options")


def check_quantize(cfg: RunConfig, method: Any) -> Quantization | None:
    """The run's quantizer with its options (None without --quantize); refuses a method that trains the base weights."""
    if not cfg.model.quantize:
        return None
    quantizer = registries().quantizers.get(cfg.model.quantize)
    if method_flag(method, "trains_base_weights"):
        raise UsageError(
            f"method {cfg.method_name!r} trains the base weights, which cannot be trained in "
            f"{cfg.model.quantize}; drop --quantize or pick a method that freezes the base (lora, houlsby, ...)."
        )
    return Quantization(quantizer, quantizer_options(quantizer, cfg.model.quantize_options))


def float_modules(cfg: RunConfig, method: Any, method_options: Any, source: ResolvedModel) -> list[str]:
    """Pretrained modules the method trains (e.g. freeze's top blocks): kept out of quantization."""
    if not callable(getattr(method, "float_modules", None)):
        return []
    from transformers import AutoConfig

    from tunekit.methods.architecture import arch_info
    from tunekit.methods.protocol import float_modules as method_float_modules

    config_kwargs = {k: v for k, v in source.load_kwargs.items() if k in ("revision", "trust_remote_code", "gguf_file")}
    config = AutoConfig.from_pretrained(source.path, **config_kwargs)
    return method_float_modules(method, arch_info(config), method_options)


def build_model(cfg: RunConfig, job: Any, method: Any, method_options: Any, source: ResolvedModel) -> Any:
    """The task's model (``job.build_model``), loaded quantized when the run asks for it.

    The task's head and the modules the method trains are passed to the quantizer to stay in float; the
    quantizer's ``after_load(model)``, if it has one, then adjusts the loaded model.
    """
    quantization = check_quantize(cfg, method)
    if quantization is None:
        return job.build_model(source, dict(source.load_kwargs))
    skip = [*job.head_modules, *float_modules(cfg, method, method_options, source)]
    model = job.build_model(source, {**source.load_kwargs, **quantization.load_kwargs(skip)})
    after_load = optional(quantization.quantizer, "after_load", QUANTIZER_OPTIONAL)
    if callable(after_load):
        after_load(model)
    return model
