"""Deterministic kernels without the NaN fill of uninitialised memory (tunekit.engine.seeding)."""

from __future__ import annotations

import torch
import torch.utils.deterministic

from tunekit.engine.seeding import seed_everything


def test_seeding_keeps_deterministic_kernels_but_skips_the_nan_fill() -> None:
    seed_everything(3)
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.utils.deterministic.fill_uninitialized_memory is False
    seed_everything(3)
    first = torch.rand(4)
    seed_everything(3)
    assert torch.equal(first, torch.rand(4))
