"""The hooks a tunekit plugin can implement.

Each hook hands the plugin a ``register`` callback; the plugin calls it once per thing it provides.
Built-in plugins use exactly these hooks too. See docs/plugins.md for examples.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("tunekit")
hookimpl = pluggy.HookimplMarker("tunekit")

Register = Callable[[Any], None]


@hookspec
def register_methods(register: Register) -> None:
    """Register parameter-efficient methods: ``register(method)`` for objects following ``tunekit.methods.protocol.Method``."""


@hookspec
def register_tasks(register: Register) -> None:
    """Register tasks (head, preprocessing, loss, metrics): objects following ``tunekit.tasks.protocol.Task``."""


@hookspec
def register_dataset_formats(register: Register) -> None:
    """Register dataset readers: objects following ``tunekit.data.DatasetFormat``."""


@hookspec
def register_model_sources(register: Register) -> None:
    """Register model sources (aliases or resolvers): objects following ``tunekit.models.ModelSource``."""


@hookspec
def register_quantizers(register: Register) -> None:
    """Register quantized-loading back ends: objects following ``tunekit.models.Quantizer``."""


@hookspec
def register_commands(cli: Any) -> None:
    """Add click commands to the ``tunekit`` command group (``cli`` is the click group)."""
