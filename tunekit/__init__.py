"""tunekit: fine-tune pretrained language models with an open registry of parameter-efficient methods.

The public Python API::

    import tunekit
    result = tunekit.run("config.yaml")                  # or a dict, or a tunekit.RunConfig
    loaded = tunekit.load_run(result.output_dir)         # model + tokenizer + task, ready to predict
    report = tunekit.apply_method(model, "lora", r=8)    # change any transformers model in place
    tunekit.registries().methods.names()                 # what plugins registered
"""

from __future__ import annotations

from typing import Any

from tunekit import _moved
from tunekit.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    MethodError,
    PluginError,
    TunekitError,
    UnknownNameError,
    UsageError,
)

__all__ = [
    "CheckpointError", "ConfigError", "DataError", "MethodError", "PluginError", "TunekitError",
    "UnknownNameError", "UsageError",
    "RunConfig", "load_config", "run", "load_run", "RunResult", "LoadedRun",
    "apply_method", "MethodReport", "count_parameters", "registries",
]

_moved.install()  # the 0.1 import paths (tunekit.method, tunekit.arch, ...) keep working until 1.0

_LAZY = {
    "RunConfig": ("tunekit.config", "RunConfig"),
    "load_config": ("tunekit.config", "load"),
    "run": ("tunekit.runs.runner", "run"),
    "load_run": ("tunekit.runs.loading", "load_run"),
    "RunResult": ("tunekit.runs.runner", "RunResult"),
    "LoadedRun": ("tunekit.runs.loading", "LoadedRun"),
    "apply_method": ("tunekit.methods.protocol", "apply_method"),
    "MethodReport": ("tunekit.methods.protocol", "MethodReport"),
    "count_parameters": ("tunekit.methods.protocol", "count_parameters"),
    "registries": ("tunekit.plugins", "registries"),
}


def __getattr__(name: str) -> Any:
    """Import the heavier parts (torch, transformers) only when they are first used."""
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'tunekit' has no attribute {name!r}")
