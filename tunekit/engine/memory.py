"""Gradient (activation) checkpointing: ``training.gradient_checkpointing``.

With checkpointing on, each transformer block keeps only its input during the forward pass and runs
again during backward to rebuild the activations its gradients need: memory for activations drops
from every block's intermediates to one block's, for about a third more compute.

``None`` (the default) decides per run: on when ``batch_size x`` the longest training example reaches
:data:`AUTO_TOKENS` tokens and the model supports it, off otherwise; ``True``/``False`` force it.

The checkpointing itself is transformers' (``activation_checkpointing_enable``, called
``gradient_checkpointing_enable`` before 5.x), always *non-reentrant*: that variant needs no input
that requires grad, so a frozen base works without making the embeddings' output require grad, and
it saves and restores the RNG state around the recompute, so dropout draws the same masks and the
losses equal those without checkpointing bit for bit.

While training with checkpointing the model is called with ``use_cache=False`` (a forward pre-hook
that acts only in training mode with gradients enabled), so ``model.config.use_cache`` is never
changed and generation after training keeps its key/value cache. Key/value caches a method passes
in during training (prefix tuning's prefixes) are kept and replayed exactly; see
:func:`_cache_safe_checkpoint`.

With ``training.cache_frozen`` the frozen lower blocks are computed once without gradients and only
the blocks that train run during the steps, so only those are checkpointed and recomputed.

Checkpointing is the mode a run chooses when memory binds, so it also makes freed CPU activations leave
the process at once (:mod:`tunekit.engine.host_memory`): that halves the peak RSS of a long-sequence run
and costs page faults, which a run without checkpointing does not pay.
"""

from __future__ import annotations

import functools
import inspect
import logging
from typing import Any, Sequence

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from tunekit.config import TrainingConfig
from tunekit.engine.batching import lengths_of
from tunekit.engine.host_memory import return_freed_memory
from tunekit.errors import ConfigError
from tunekit.methods.architecture import CACHE_ARGUMENTS

log = logging.getLogger("tunekit.engine")

AUTO_TOKENS = 4096
"""``batch_size x`` longest example (tokens) from which ``gradient_checkpointing: null`` turns it on."""

_HOOK = "_tunekit_no_cache_hook"


def supports_checkpointing(model: nn.Module) -> bool:
    """Whether ``model`` is a transformers model whose blocks can be checkpointed."""
    return bool(getattr(model, "supports_gradient_checkpointing", False))


def decide(cfg: TrainingConfig, model: nn.Module, dataset: Sequence[Any]) -> tuple[bool, str]:
    """(on, why): whether this run checkpoints, and the reason, as ``training.gradient_checkpointing`` says."""
    supported = supports_checkpointing(model)
    name = type(model).__name__
    if cfg.gradient_checkpointing is False:
        return False, "training.gradient_checkpointing is false"
    if cfg.gradient_checkpointing:
        if not supported:
            raise ConfigError(
                f"training.gradient_checkpointing is true but {name} does not support gradient checkpointing; "
                "set training.gradient_checkpointing to false or null.")
        return True, "training.gradient_checkpointing is true"
    tokens = cfg.batch_size * max(lengths_of(dataset), default=0)
    if tokens < AUTO_TOKENS:
        return False, f"batch_size x longest example = {tokens} tokens < {AUTO_TOKENS} (auto)"
    if not supported:
        return False, f"{tokens} tokens per batch but {name} does not support it (auto)"
    return True, f"batch_size x longest example = {tokens} tokens >= {AUTO_TOKENS} (auto)"


def _cache_in(call: Any) -> Any:
    keywords = getattr(call, "keywords", {}) or {}
    return next((keywords[k] for k in CACHE_ARGUMENTS if keywords.get(k) is not None), None)


def _layer_caches(cache: Any) -> list[Any]:
    """The caches holding a ``layers`` list inside ``cache`` (an encoder-decoder cache holds two)."""
    parts = [getattr(cache, name, None) for name in ("self_attention_cache", "cross_attention_cache")]
    found = [c for c in parts if c is not None] or [cache]
    return [c for c in found if isinstance(getattr(c, "layers", None), list)]


def _snapshot(cache: Any, caches: list[Any]) -> tuple[list[tuple[list[Any], list[dict[str, Any]]]], dict[Any, Any]]:
    """Each cache's layer list and every layer's state, and an encoder-decoder cache's ``is_updated`` flags."""
    return [(list(c.layers), [dict(vars(layer)) for layer in c.layers]) for c in caches], \
        dict(getattr(cache, "is_updated", None) or {})


def _restore(cache: Any, caches: list[Any], snapshot: Any) -> None:
    lists, updated = snapshot
    for c, (layers, states) in zip(caches, lists, strict=True):
        c.layers[:] = layers  # layers a cache added lazily since the snapshot go too
        for layer, state in zip(layers, states, strict=True):
            layer.__dict__.update(state)
    if isinstance(getattr(cache, "is_updated", None), dict):
        cache.is_updated.clear()
        cache.is_updated.update(updated)


def _cache_safe_checkpoint(function: Any, *args: Any, **kwargs: Any) -> Any:
    """``torch.utils.checkpoint`` for one block call, that also replays a key/value cache exactly.

    A block given a cache appends its keys and values to it. transformers therefore drops the cache of a
    checkpointed block, which would silently drop the prefixes of prefix tuning. Written here because
    transformers offers no hook for it: the cache's layers (both caches of an encoder-decoder cache, and its
    cross-attention ``is_updated`` flags) are remembered before the forward and put back before the backward's
    recompute, so the block appends to the same prefix again and computes the same activations; afterwards
    the cache holds what the forward left.
    """
    cache = _cache_in(function)
    caches = _layer_caches(cache) if cache is not None else []
    if not caches:
        return checkpoint(function, *args, **kwargs)
    before = _snapshot(cache, caches)
    calls = 0

    def replay(*inner: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:  # the forward itself: nothing to restore
            return function(*inner)
        after = _snapshot(cache, caches)
        _restore(cache, caches, before)
        try:
            return function(*inner)
        finally:
            _restore(cache, caches, after)

    return checkpoint(replay, *args, **kwargs)


def _no_cache_while_training(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Forward pre-hook: training calls with gradients run with ``use_cache=False`` (nothing reads that cache)."""
    if module.training and torch.is_grad_enabled():
        kwargs["use_cache"] = False
    return args, kwargs


def enable(model: nn.Module) -> None:
    """Turn on non-reentrant checkpointing of ``model``'s blocks, keeping a cache handed to them."""
    if hasattr(model, "_set_gradient_checkpointing"):
        # transformers' own switch, given a checkpoint function that keeps caches; `activation_checkpointing_enable`
        # would also hook the embeddings to require grad (needed only by reentrant checkpointing) and so stop
        # training.cache_frozen from caching.
        model._set_gradient_checkpointing(
            enable=True, gradient_checkpointing_func=functools.partial(_cache_safe_checkpoint, use_reentrant=False))
    else:  # pragma: no cover - models of other libraries
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    for module in model.modules():
        if getattr(module, "gradient_checkpointing", False) and hasattr(type(module), "_can_checkpoint_with_cache"):
            module._can_checkpoint_with_cache = True  # the cache is restored around the recompute (see above)
    if "use_cache" in inspect.signature(model.forward).parameters and not hasattr(model, _HOOK):
        setattr(model, _HOOK, model.register_forward_pre_hook(_no_cache_while_training, with_kwargs=True))


def disable(model: nn.Module) -> None:
    """Undo :func:`enable` (a model trained before with checkpointing, now run without)."""
    if hasattr(model, "_set_gradient_checkpointing"):
        model._set_gradient_checkpointing(enable=False)
    handle = getattr(model, _HOOK, None)
    if handle is not None:
        handle.remove()
        delattr(model, _HOOK)


def is_checkpointing(model: nn.Module) -> bool:
    """Whether any block of ``model`` is checkpointed."""
    return any(getattr(m, "gradient_checkpointing", False) is True for m in model.modules())


def setup_checkpointing(model: nn.Module, cfg: TrainingConfig, dataset: Sequence[Any]) -> bool:
    """Decide, log at INFO, and enable checkpointing on ``model`` when chosen; returns whether it is on.

    When on, freed CPU memory is also returned to the system from then on (process-wide, see host_memory).
    """
    on, why = decide(cfg, model, dataset)
    log.info("gradient checkpointing %s: %s", "on" if on else "off", why)
    if on:
        enable(model)
        return_freed_memory()
    elif is_checkpointing(model):
        disable(model)
    return on
