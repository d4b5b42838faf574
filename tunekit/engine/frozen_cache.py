"""Caching the frozen lower layers (``training.cache_frozen``).

When nothing in the embeddings or in blocks ``0 .. k-1`` trains (feature extraction: every block
frozen; ``freeze``: only the top blocks train), the output of block ``k-1`` depends on the example
alone. It is computed once per training example before the first step, in eval mode (no dropout) and
without gradients, and kept in memory. During training the model then runs with its embedding module
replaced by a replay of those hidden states and its block list cut to blocks ``k ..``: the lower part
is never computed again. Evaluation always runs the whole, untouched model.

The only change in what is computed: the frozen lower layers see no dropout during training
(the same final metrics within noise). Caching is skipped, with a log line saying why, whenever it
could change more than that: a trainable parameter the architecture does not explain (a prefix, a
method's module outside the blocks), forward hooks on the frozen part, more than one embedding
module (GPT-2 adds its position embeddings and dropout outside them), batches that are not
right-padded with an attention mask, or a cache larger than ``TUNEKIT_CACHE_FROZEN_MB`` (default 4096).
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import nn

from tunekit.engine.optim import reference_parameter_names
from tunekit.errors import UsageError
from tunekit.names import is_under

log = logging.getLogger("tunekit.engine")


class _Replay(nn.Module):
    """Stands in for the embedding module: returns the cached hidden states of the current batch."""

    def __init__(self) -> None:
        super().__init__()
        self.current: torch.Tensor | None = None

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        if self.current is None:  # pragma: no cover - only reachable through misuse
            raise RuntimeError("frozen-layer replay called outside a training step")
        return self.current


class _Captured(Exception):
    """Raised by the capture hook to skip the rest of the forward pass."""

    def __init__(self, hidden: torch.Tensor) -> None:
        super().__init__()
        self.hidden = hidden


def _split(model: nn.Module, dotted: str) -> tuple[nn.Module, str]:
    parent, _, attr = dotted.rpartition(".")
    return (model.get_submodule(parent) if parent else model), attr


def first_trainable_block(model: nn.Module, head_modules: Sequence[str]) -> tuple[int, str] | tuple[None, str]:
    """``(k, "")``: the lowest block holding a trainable parameter (``len(blocks)`` when none does), or
    ``(None, reason)`` when caching cannot be used for this model."""
    from tunekit.methods import architecture
    try:
        block_names = [name for name, _ in architecture.blocks(model)]
        embeddings = architecture.embeddings(model)
    except Exception:
        return None, "the architecture's blocks are unknown"
    if len(embeddings) != 1:
        return None, "the model has several embedding modules"
    reference = reference_parameter_names(model)
    if reference is None:
        return None, "the plain architecture could not be rebuilt to tell new parameters from pretrained ones"
    k = len(block_names)
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        index = next((i for i, b in enumerate(block_names) if is_under(name, b)), None)
        if index is not None:
            k = min(k, index)
        elif is_under(name, embeddings[0]):
            return None, "the embeddings train"
        elif any(is_under(name, h) for h in head_modules):
            continue
        elif name.replace(".base_layer.", ".") not in reference:
            return None, f"the trainable parameter {name!r} lies outside the blocks"
    if k == 0:
        return None, "the first block trains"
    lower = [embeddings[0], *block_names[:k]]
    for name, module in model.named_modules():
        if any(is_under(name, p) for p in lower) and (module._forward_hooks or module._forward_pre_hooks):
            return None, f"module {name!r} has forward hooks"
    return k, ""


def _right_padded(mask: torch.Tensor) -> bool:
    lengths = mask.sum(dim=1, keepdim=True)
    positions = torch.arange(mask.shape[1], device=mask.device).unsqueeze(0)
    return bool(torch.equal(mask.bool(), positions < lengths))


class FrozenCache:
    """Hidden states entering block ``k`` for every training example, and the swap that replays them."""

    def __init__(self, model: nn.Module, k: int, states: list[torch.Tensor]) -> None:
        from tunekit.methods import architecture
        self.model = model
        self.k = k
        self.states = states
        blocks_path = architecture.blocks_path(model)
        self._block_parent, self._block_attr = _split(model, blocks_path)
        self._blocks: nn.ModuleList = getattr(self._block_parent, self._block_attr)
        self._top = nn.ModuleList(list(self._blocks)[k:])
        self._emb_parent, self._emb_attr = _split(model, architecture.embeddings(model)[0])
        self._embedding: nn.Module = getattr(self._emb_parent, self._emb_attr)
        self._replay = _Replay()

    @property
    def megabytes(self) -> float:
        return sum(s.numel() * s.element_size() for s in self.states) / 2**20

    @contextlib.contextmanager
    def replay(self, indices: Sequence[int], batch: dict[str, Any]) -> Iterator[None]:
        """Within this block the model computes from the cached states of ``indices`` (the batch's examples)."""
        ids = batch["input_ids"]
        width = ids.shape[1]
        first = self.states[indices[0]]
        current = torch.zeros(len(indices), width, first.shape[-1], dtype=first.dtype, device=ids.device)
        for row, i in enumerate(indices):
            state = self.states[i]
            if state.shape[0] > width:
                raise UsageError(
                    "training.cache_frozen met a batch shorter than its cached examples (the task pads or truncates "
                    "differently between calls); set training.cache_frozen=false."
                )
            current[row, : state.shape[0]] = state
        self._replay.current = current
        setattr(self._emb_parent, self._emb_attr, self._replay)
        setattr(self._block_parent, self._block_attr, self._top)
        try:
            yield
        finally:
            setattr(self._emb_parent, self._emb_attr, self._embedding)
            setattr(self._block_parent, self._block_attr, self._blocks)
            self._replay.current = None


def _lengths_within_budget(model: nn.Module, dataset: Sequence[Any]) -> list[int] | None:
    """The examples' lengths, or None (logged) when their cache would exceed TUNEKIT_CACHE_FROZEN_MB."""
    budget_mb = float(os.environ.get("TUNEKIT_CACHE_FROZEN_MB", "4096"))
    hidden = getattr(getattr(model, "config", None), "hidden_size", None) or 0
    lengths = []
    for i in range(len(dataset)):
        ids = dataset[i].get("input_ids") if isinstance(dataset[i], dict) else None
        lengths.append(len(ids) if ids is not None else 0)
    estimate = sum(lengths) * hidden * 4 / 2**20
    if estimate > budget_mb:
        log.info("not caching frozen layers: the cache would take about %.0f MB (limit TUNEKIT_CACHE_FROZEN_MB=%.0f)",
                 estimate, budget_mb)
        return None
    return lengths


def build_frozen_cache(model: nn.Module, dataset: Sequence[Any], collate: Callable[[list[Any]], dict[str, Any]],
                       head_modules: Sequence[str], batch_size: int, device: torch.device,
                       autocast: Callable[[], contextlib.AbstractContextManager]) -> FrozenCache | None:
    """Run the frozen lower part once over ``dataset`` and keep its output, or None (logged) when caching does not apply."""
    from tunekit.methods import architecture
    k, reason = first_trainable_block(model, head_modules)
    if k is None:
        log.debug("not caching frozen layers: %s", reason)
        return None
    lengths = _lengths_within_budget(model, dataset)
    if lengths is None:
        return None
    last_frozen = architecture.blocks(model)[k - 1][1]

    def capture(module: nn.Module, args: Any, output: Any) -> None:
        raise _Captured(output if isinstance(output, torch.Tensor) else output[0])

    states: list[torch.Tensor | None] = [None] * len(dataset)
    order = sorted(range(len(dataset)), key=lambda i: lengths[i])
    was_training = model.training
    model.eval()
    handle = last_frozen.register_forward_hook(capture)
    try:
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            batch = collate([dataset[i] for i in chunk])
            mask = batch.get("attention_mask") if isinstance(batch, dict) else None
            if not isinstance(mask, torch.Tensor) or mask.dim() != 2 or not _right_padded(mask):
                log.info("not caching frozen layers: batches are not right-padded with an attention mask")
                return None
            batch = {key: v.to(device) if isinstance(v, torch.Tensor) else v for key, v in batch.items()}
            inputs = {key: v for key, v in batch.items() if key != "labels"}
            try:
                with torch.no_grad(), autocast():
                    model(**inputs)
            except _Captured as got:
                out = got.hidden
            except Exception as exc:  # the batch holds keys the model does not take, ...
                log.info("not caching frozen layers: the model cannot run on a collated batch alone (%s)", exc)
                return None
            else:
                log.info("not caching frozen layers: the forward pass never reached block %d", k - 1)
                return None
            row_lengths = mask.sum(dim=1).tolist()
            for row, i in enumerate(chunk):
                states[i] = out[row, : int(row_lengths[row])].detach().clone()
    finally:
        handle.remove()
        model.train(was_training)
    cache = FrozenCache(model, k, [s for s in states if s is not None])
    if len(cache.states) != len(dataset):
        return None
    n_blocks = len(architecture.blocks(model))
    top = f"blocks {k}-{n_blocks - 1} and the head" if k < n_blocks else "only the layers above the blocks"
    log.info("cached the frozen embeddings and blocks 0-%d for %d examples (%.1f MB); training runs %s",
             k - 1, len(dataset), cache.megabytes, top)
    return cache
