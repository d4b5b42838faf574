"""tunekit-prompt-tuning: trainable soft-prompt embeddings as an installable tunekit plugin.

Installing the distribution adds the method ``prompt-tuning`` (entry point ``prompt-tuning`` in the
``tunekit`` group); uninstalling it removes the method again.
"""

from __future__ import annotations

from tunekit.hookspecs import hookimpl
from tunekit_prompt_tuning.method import PromptTuning
from tunekit_prompt_tuning.options import PromptTuningOptions

__all__ = ["PromptTuning", "PromptTuningOptions", "register_methods"]


@hookimpl
def register_methods(register) -> None:  # noqa: ANN001 - the callback type lives in tunekit.hookspecs
    """Register the ``prompt-tuning`` method."""
    register(PromptTuning())
