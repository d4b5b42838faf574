"""tunekit-ia3: the IA3 method as an installable tunekit plugin.

Installing the distribution adds the method ``ia3`` (entry point ``ia3`` in the ``tunekit`` group);
uninstalling it removes the method again.
"""

from __future__ import annotations

from tunekit.hookspecs import hookimpl
from tunekit_ia3.method import IA3
from tunekit_ia3.options import IA3Options

__all__ = ["IA3", "IA3Options", "register_methods"]


@hookimpl
def register_methods(register) -> None:  # noqa: ANN001 - the hook's callback type lives in tunekit.hookspecs
    """Register the ``ia3`` method."""
    register(IA3())
