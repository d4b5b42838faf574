"""tunekit's conformance kit for method plugins: tiny model factories and pytest-ready checks.

Depends only on tunekit's public API. See ``tunekit.testing.conformance`` for what is checked.
"""

from tunekit.testing.conformance import (
    check_frozen_after_step,
    check_init_identity,
    check_merge,
    check_method,
    check_save_load,
    check_trainable_count,
    outputs,
    perturb,
)
from tunekit.testing.models import TINY_MODELS, head_modules, sample_inputs, tiny_bert, tiny_gpt2, tiny_llama

__all__ = [
    "TINY_MODELS",
    "check_frozen_after_step",
    "check_init_identity",
    "check_merge",
    "check_method",
    "check_save_load",
    "check_trainable_count",
    "head_modules",
    "outputs",
    "perturb",
    "sample_inputs",
    "tiny_bert",
    "tiny_gpt2",
    "tiny_llama",
]
