"""The conformance kit on tiny BERT, GPT-2 (Conv1D) and Llama (GQA) models, for every registered method.

The cases come from ``registries().methods.names()`` (built-ins and installed plugins), so a new method
runs the kit with its default options unless ``OPTIONS`` names others.
"""

from __future__ import annotations

import pytest

from tunekit.plugins import registries
from tunekit.testing import (
    TINY_MODELS,
    check_frozen_after_step,
    check_init_identity,
    check_merge,
    check_save_load,
    check_trainable_count,
)

# Options per method; a registered method not named here runs with its defaults, so none can skip the kit.
OPTIONS = {
    "freeze": {"trainable_layers": 1},
    "houlsby": {"reduction_factor": 8},
    "pfeiffer": {"reduction_factor": 4, "non_linearity": "gelu"},
    "lora": {"r": 4},
    "prefix-tuning": {"num_virtual_tokens": 3},
}
# Option variants: one encoder and one GQA decoder are enough.
VARIANTS = {
    "lora-all-linear": {"r": 2, "target_modules": "all-linear", "alpha": 8},
    "prefix-tuning-mlp": {"num_virtual_tokens": 2, "projection": 16},
}
METHODS = {name: OPTIONS.get(name, {}) for name in registries().methods.names()} | VARIANTS

CASES = [
    (label, model)
    for label in METHODS
    for model in TINY_MODELS
    # without a head, feature extraction has nothing to train
    if not (label == "feature-extraction" and model.endswith("-lm"))
    and not (label in VARIANTS and model not in ("bert-cls", "llama-lm"))
]


def _name(label: str) -> str:
    return label.split("-all-")[0].removesuffix("-mlp") if label in VARIANTS else label


def test_every_registered_method_is_in_the_kit() -> None:
    assert set(registries().methods.names()) <= {_name(label) for label, _ in CASES}


@pytest.mark.parametrize(("label", "model"), CASES)
def test_conformance(label: str, model: str, tmp_path) -> None:
    method, options, factory = _name(label), METHODS[label], TINY_MODELS[model]
    check_init_identity(method, options, factory)
    check_trainable_count(method, options, factory)
    check_frozen_after_step(method, options, factory)
    check_save_load(method, options, factory, tmp_path)
    check_merge(method, options, factory)


@pytest.mark.parametrize("head", ["qa", "tokens"])
@pytest.mark.parametrize("label", ["feature-extraction", "houlsby", "lora", "prefix-tuning"])
def test_other_task_heads_stay_trainable_and_are_saved(label: str, head: str, tmp_path) -> None:
    from tunekit.testing import tiny_bert

    def factory():
        return tiny_bert(head)

    check_trainable_count(_name(label), METHODS[label], factory)
    check_save_load(_name(label), METHODS[label], factory, tmp_path)
