"""Conformance checks for a method plugin, usable from pytest (each check raises AssertionError).

Given a method name (or object), its options and a deterministic tiny-model factory, check that:

- at initialisation the model computes exactly what the base model does (when the method promises it);
- the trainable parameter count equals ``expected_trainable(arch, options)`` plus the kept head;
- after optimiser steps every frozen parameter is bit-identical and every trainable one changed;
- save -> load into a fresh base gives identical outputs, with the head in the saved tensors;
- merge and unmerge agree with the unmerged outputs (methods that support merging).

Uses tunekit's public API only, like any third-party plugin::

    from tunekit.testing import check_method, TINY_MODELS
    def test_my_method(tmp_path):
        check_method("my-method", {"rank": 4}, TINY_MODELS["bert-cls"], tmp_path)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

from tunekit.methods.architecture import arch_info
from tunekit.methods.protocol import count_parameters, make_options, method_flag
from tunekit.testing.models import head_modules, sample_inputs

Factory = Callable[[], nn.Module]


def _method(method: Any) -> Any:
    if isinstance(method, str):
        from tunekit.plugins import registries

        return registries().methods.get(method)
    return method


def outputs(model: nn.Module, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """The model's main output (logits) for ``inputs``, in eval mode, without gradients."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = model(**inputs)
    model.train(was_training)
    logits = getattr(out, "logits", None)
    return (logits if logits is not None else out[0]).float()


def _prepare(method: Any, options: Mapping[str, Any], factory: Factory, keep: Sequence[str] | None):
    method = _method(method)
    model = factory()
    keep = head_modules(model) if keep is None else list(keep)
    parsed = make_options(method, dict(options))
    return method, model, parsed, keep


def perturb(model: nn.Module, scale: float = 0.05, seed: int = 1) -> None:
    """Add seeded noise to every trainable parameter (so that zero-initialised parts matter)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g).to(p.dtype) * scale)


def check_init_identity(method: Any, options: Mapping[str, Any], factory: Factory,
                        keep_trainable: Sequence[str] | None = None, atol: float = 1e-6) -> None:
    """Outputs right after ``apply`` equal the base model's (skipped if the method does not promise it)."""
    method, model, parsed, keep = _prepare(method, options, factory, keep_trainable)
    if not method_flag(method, "identity_at_init"):
        return
    inputs = sample_inputs(model)
    expected = outputs(model, inputs)
    method.apply(model, parsed, keep)
    got = outputs(model, inputs)
    torch.testing.assert_close(got, expected, atol=atol, rtol=0,
                               msg=lambda m: f"{method.name}: outputs at initialisation differ from the base model. {m}")


def check_trainable_count(method: Any, options: Mapping[str, Any], factory: Factory,
                          keep_trainable: Sequence[str] | None = None) -> int:
    """Trainable parameters == expected_trainable(arch, options) + the kept head; returns the method's count."""
    method, model, parsed, keep = _prepare(method, options, factory, keep_trainable)
    arch = arch_info(model)
    head = sum(p.numel() for name in keep for p in model.get_submodule(name).parameters())
    method.apply(model, parsed, keep)
    trainable, _ = count_parameters(model)
    expected = method.expected_trainable(arch, parsed)
    assert trainable - head == expected, (
        f"{method.name}: {trainable - head} trainable parameters besides the head, but expected_trainable says {expected}"
    )
    return expected


def _loss(model: nn.Module, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
    out = model(**inputs)
    logits = getattr(out, "logits", None)
    logits = logits if logits is not None else out[0]
    return logits.float().pow(2).mean()


def check_frozen_after_step(method: Any, options: Mapping[str, Any], factory: Factory,
                            keep_trainable: Sequence[str] | None = None, steps: int = 2) -> None:
    """After ``steps`` AdamW steps, frozen parameters are bit-identical and every trainable one changed."""
    method, model, parsed, keep = _prepare(method, options, factory, keep_trainable)
    method.apply(model, parsed, keep)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable, f"{method.name}: nothing is trainable"
    optimizer = torch.optim.AdamW(trainable, lr=1e-2, weight_decay=0.0)
    inputs = sample_inputs(model)
    model.eval()  # no dropout: the check is about which weights move, not about noise
    for _ in range(steps):
        optimizer.zero_grad()
        _loss(model, inputs).backward()
        optimizer.step()
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert not torch.equal(p.detach(), before[name]), f"{method.name}: trainable {name} did not change"
        else:
            assert torch.equal(p.detach(), before[name]), f"{method.name}: frozen {name} changed"


def check_save_load(method: Any, options: Mapping[str, Any], factory: Factory, folder: str | Path,
                    keep_trainable: Sequence[str] | None = None, atol: float = 1e-6) -> None:
    """save() then load() into a fresh base reproduces the outputs; the head is in the saved tensors."""
    method, model, parsed, keep = _prepare(method, options, factory, keep_trainable)
    applied = method.apply(model, parsed, keep)
    perturb(model)
    inputs = sample_inputs(model)
    expected = outputs(model, inputs)
    saved = applied.trainable_state_dict()
    assert saved, f"{method.name}: trainable_state_dict() is empty"
    for name in keep:
        for pname, _ in model.get_submodule(name).named_parameters():
            suffix = f"{name}.{pname}"
            assert any(k.endswith(suffix) for k in saved), f"{method.name}: the head parameter {suffix} is not saved"
    applied.save(folder)
    fresh = factory()
    method.load(fresh, folder)
    got = outputs(fresh, inputs)
    torch.testing.assert_close(got, expected, atol=atol, rtol=0,
                               msg=lambda m: f"{method.name}: outputs after save/load differ. {m}")


def check_merge(method: Any, options: Mapping[str, Any], factory: Factory,
                keep_trainable: Sequence[str] | None = None, atol: float = 1e-5) -> None:
    """merge() keeps the outputs; unmerge() restores outputs and base weights (if the method merges)."""
    method, model, parsed, keep = _prepare(method, options, factory, keep_trainable)
    if not method_flag(method, "supports_merge"):
        return
    applied = method.apply(model, parsed, keep)
    perturb(model)
    inputs = sample_inputs(model)
    expected = outputs(model, inputs)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    applied.merge()
    torch.testing.assert_close(outputs(model, inputs), expected, atol=atol, rtol=0,
                               msg=lambda m: f"{method.name}: merged outputs differ. {m}")
    changed = [n for n, p in model.named_parameters() if n in frozen and not torch.equal(p, frozen[n])]
    assert changed, f"{method.name}: merge() changed no base weight"
    applied.unmerge()
    torch.testing.assert_close(outputs(model, inputs), expected, atol=atol, rtol=0,
                               msg=lambda m: f"{method.name}: outputs after unmerge differ. {m}")
    for name, p in model.named_parameters():
        if name in frozen:
            torch.testing.assert_close(p.detach(), frozen[name], atol=atol, rtol=0,
                                       msg=lambda m, n=name: f"{method.name}: {n} not restored by unmerge. {m}")


def check_method(method: Any, options: Mapping[str, Any], factory: Factory, folder: str | Path,
                 keep_trainable: Sequence[str] | None = None) -> None:
    """Run every check above for one method, options and model factory."""
    check_init_identity(method, options, factory, keep_trainable)
    check_trainable_count(method, options, factory, keep_trainable)
    check_frozen_after_step(method, options, factory, keep_trainable)
    check_save_load(method, options, factory, folder, keep_trainable)
    check_merge(method, options, factory, keep_trainable)
