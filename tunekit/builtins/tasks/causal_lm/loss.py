"""Cross-entropy over the learned tokens without holding the logits of the whole batch.

The vocabulary projection dominates a causal LM's training memory (batch x length x vocab floats, and
again for their gradient). The lean path runs the model as usual (so every method's wrapped modules and
forward hooks take part) with its output-embedding module swapped for a pass-through, so the model
returns hidden states; it keeps only the hidden states whose next token is learned, and projects them
through the real head a chunk at a time, each chunk under activation checkpointing so its logits are
freed at once and recomputed in backward. transformers has no "loss without logits" entry point for
every causal LM, and liger-style fused kernels are not installed, hence this small piece of our own.

Models whose logits are post-processed after the head (soft-capping, scaling: see ``POSTPROCESSED``),
or that have no output-embedding module, take the plain path: full logits from the first learned
position on (``logits_to_keep``), then float32 cross-entropy.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from tunekit.errors import UsageError
from tunekit.methods.architecture import CACHE_ARGUMENTS

log = logging.getLogger("tunekit.tasks.causal_lm")

CHUNK_TOKENS = 256
"""Learned tokens projected per chunk. A constant rather than an option: 256 tokens x a 49k-152k vocabulary is
50-155 MB of float32 logits (held about three times: logits, log-softmax, gradient), small next to the
activations, while [256, hidden] x [hidden, vocab] is still a large matrix product, so chunking costs no
measurable speed; measured on SmolLM2 LoRA (batch 4 x 256, 1020 learned tokens) the step's peak RSS fell from
2911 to 2444 MB. No user needs to tune it."""

SOFTCAPS = ("final_logit_softcapping", "logit_softcapping")
SCALES = ("logit_scale", "logits_scaling", "output_multiplier_scale")
"""Config fields of models whose forward changes the logits after the head (Gemma 2/3, Cohere, Granite, ...)."""


def shifted_targets(labels: torch.Tensor) -> torch.Tensor:
    """The label each position predicts (the next token's), -100 at the last position."""
    target = torch.full_like(labels, -100)
    target[:, :-1] = labels[:, 1:]
    return target


def learned_count(labels: torch.Tensor) -> int:
    """How many target tokens the loss averages over (after the next-token shift)."""
    return int((labels[:, 1:] != -100).sum())


def token_losses(model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed float32 cross-entropy over the learned tokens of ``batch``, and how many there were."""
    target = shifted_targets(batch["labels"])
    inputs = {"input_ids": batch["input_ids"]}
    for key in ("attention_mask", "position_ids"):
        if batch.get(key) is not None:
            inputs[key] = batch[key]
    packed = "position_ids" in inputs and "attention_mask" not in inputs
    if packed:
        inputs["use_cache"] = False  # a cache would switch off transformers' packed-sequence (block-causal) mask
    head = _lean_head(model)
    with _refusing_cache(model) if packed else contextlib.nullcontext():
        if head is None:
            return _plain(model, inputs, target)
        with _pass_through(model, head):
            hidden = model(**inputs).logits
    keep = target != -100
    count = keep.sum()
    if hidden.shape[-1] == _vocab_size(model):  # the forward projected without calling the module: use its logits
        log.debug("the model's forward computed logits itself; using them")
        return _cross_entropy(hidden[keep], target[keep]), count
    return _chunked(head, hidden[keep], target[keep]), count


def _cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.float(), target, reduction="sum")


def _chunk_loss(head: nn.Module, hidden: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return _cross_entropy(head(hidden), target)


def _chunked(head: nn.Module, hidden: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    total = hidden.new_zeros((), dtype=torch.float32)
    grad = torch.is_grad_enabled() and (hidden.requires_grad or any(p.requires_grad for p in head.parameters()))
    for start in range(0, hidden.shape[0], CHUNK_TOKENS):
        h, t = hidden[start:start + CHUNK_TOKENS], target[start:start + CHUNK_TOKENS]
        if grad:
            total = total + checkpoint(_chunk_loss, head, h, t, use_reentrant=False)
        else:
            total = total + _chunk_loss(head, h, t)
    return total


def _plain(model: nn.Module, inputs: dict[str, Any], target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Full logits from the first learned position on (``logits_to_keep`` when the model takes it)."""
    length = target.shape[1]
    learned = (target != -100).any(0).nonzero()
    first = int(learned[0]) if len(learned) else length - 1
    kwargs: dict[str, Any] = {}
    if first > 0 and _accepts(model, "logits_to_keep"):
        kwargs["logits_to_keep"] = length - first
    logits = model(**inputs, **kwargs).logits
    target = target[:, length - logits.shape[1]:]
    total = _cross_entropy(logits.reshape(-1, logits.size(-1)), target.reshape(-1))
    return total, (target != -100).sum()


def _lean_head(model: nn.Module) -> nn.Module | None:
    """The output-embedding module to project chunks with, or None (logged) when the plain path must be used."""
    get = getattr(model, "get_output_embeddings", None)
    head = get() if callable(get) else None
    if not isinstance(head, nn.Module):
        log.debug("loss on full logits: the model has no output-embedding module")
        return None
    for config in _configs(model):
        for name in SOFTCAPS + SCALES:
            value = getattr(config, name, None)
            if value is not None and value != (0 if name in SOFTCAPS else 1):
                log.debug("loss on full logits: the model post-processes its logits (config %s=%s)", name, value)
                return None
    return head


def _configs(model: nn.Module) -> list[Any]:
    config = getattr(model, "config", None)
    if config is None:
        return []
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    return [config] if text is config else [config, text]


def _vocab_size(model: nn.Module) -> int | None:
    embeddings = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    return getattr(embeddings, "num_embeddings", None)


@contextlib.contextmanager
def _pass_through(model: nn.Module, head: nn.Module) -> Iterator[None]:
    """Put ``nn.Identity`` where ``head`` sits in ``model`` for the duration (its parameters stay where they are)."""
    name = next((n for n, m in model.named_modules() if m is head and n), None)
    if name is None:
        raise RuntimeError("the output-embedding module is not a submodule of the model")
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name)
    setattr(parent, attr, nn.Identity())
    try:
        yield
    finally:
        setattr(parent, attr, head)


@contextlib.contextmanager
def _refusing_cache(model: nn.Module) -> Iterator[None]:
    """Refuse a forward call that receives a key/value cache (a method's prefixes): packed examples would see
    each other, because transformers builds the per-example mask only when no cache is given."""

    def check(module: nn.Module, args: Any, kwargs: dict[str, Any]) -> None:
        if any(kwargs.get(name) is not None for name in CACHE_ARGUMENTS):
            raise UsageError("task.packing cannot be used with a method that gives the model a key/value cache "
                             "(prefixes), because packed examples would attend to each other; set task.packing=false.")

    handle = model.register_forward_pre_hook(check, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()


def _accepts(model: nn.Module, name: str) -> bool:
    try:
        return name in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False
