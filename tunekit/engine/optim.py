"""The optimiser and learning-rate schedule: AdamW parameter groups with differential learning rates.

Which trainable parameters are *new* (trained from scratch at ``training.lr``) and which are
*pretrained* (trained at ``training.backbone_lr``, optionally decayed layer by layer):

1. if the method's ``Applied`` handle has a ``new_parameters`` attribute (names of the parameters it
   created), those names are new; the method knows best;
2. anything under a task head module (``job.head_modules``) is new;
3. otherwise a parameter is pretrained when the model's own architecture has it: the model class is
   instantiated from its config on the ``meta`` device (no memory, no weights) and its parameter names
   are compared, ignoring the ``base_layer`` segment that wrapping methods insert. Names the plain
   architecture lacks (LoRA matrices, bottleneck adapters, prefixes) are new;
4. when the architecture cannot be rebuilt that way, anything under a module the method injected
   (``applied.injected``) is new, except the injected module's own ``weight``/``bias`` and its wrapped
   ``base_layer``; every other trainable parameter is pretrained.

The rule is only consulted when the two rates differ (``backbone_lr`` or ``layer_decay`` set).

Layer-wise decay (``layer_decay = d``): with ``L`` transformer blocks, a pretrained parameter in block
``i`` trains at ``backbone_lr * d ** (L - 1 - i)``, the embeddings at ``backbone_lr * d ** L`` (the
lowest), and pretrained parameters above the blocks (final norm, pooler) at ``backbone_lr``. Blocks and
embeddings come from ``tunekit.methods.architecture`` for the families it knows, else from the usual names
(``layer.3.``, ``layers.3.``, ``h.3.``; ``*embed*``, ``wte``, ``wpe``).

Weight decay is not applied to biases and normalisation weights (1-D tensors).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import torch
from torch import nn
from transformers import get_scheduler

from tunekit.config import TrainingConfig
from tunekit.names import is_under

# Transformer block containers across the usual architectures: BERT `encoder.layer.3.`, Llama
# `model.layers.3.`, GPT-2 `transformer.h.3.`, T5/others `block.3.` / `blocks.3.`.
_BLOCK = re.compile(r"(?:^|\.)(?:layer|layers|h|block|blocks)\.(\d+)(?:\.|$)")
_EMBEDDING = re.compile(r"(?:^|\.)(?:[a-z_]*embed[a-z_]*|wte|wpe)(?:\.|$)")
_PRETRAINED_IN_WRAPPER = ("weight", "bias")


@dataclass(frozen=True)
class ParamInfo:
    """How one trainable parameter is optimised."""

    name: str
    new: bool
    block: int | None  # transformer block index, None outside the blocks
    embedding: bool
    lr: float
    weight_decay: float


def block_of(name: str) -> int | None:
    """The transformer block index in a parameter name (``encoder.layer.3.attention...`` -> 3), or None."""
    match = _BLOCK.search(name)
    return int(match.group(1)) if match else None


def count_blocks(names: Iterable[str]) -> int:
    """Number of transformer blocks: one more than the largest block index among ``names``."""
    indices = [b for b in (block_of(n) for n in names) if b is not None]
    return max(indices) + 1 if indices else 0


def is_new_parameter(name: str, head_modules: Sequence[str], injected: Sequence[str],
                     new_parameters: Iterable[str] | None = None) -> bool:
    """Whether a trainable parameter was created for this run (see the module docstring for the rule)."""
    if new_parameters is not None and name in set(new_parameters):
        return True
    if any(is_under(name, h) for h in head_modules):
        return True
    for module in injected:
        if not is_under(name, module) or name == module:
            continue
        rest = name[len(module) + 1:]
        if rest in _PRETRAINED_IN_WRAPPER or rest.startswith("base_layer."):
            continue
        return True
    return False


def reference_parameter_names(model: nn.Module) -> set[str] | None:
    """Parameter names of the model's plain architecture (built on the meta device), or None if it cannot be built."""
    config = getattr(model, "config", None)
    if config is None:
        return None
    try:
        with torch.device("meta"):
            reference = type(model)(config)
    except Exception:  # not a plain config-constructible class (a wrapper model, remote code, ...)
        return None
    return {n for n, _ in reference.named_parameters()}


def _structure(model: nn.Module) -> tuple[list[str], list[str]] | None:
    """(block prefixes bottom first, embedding module prefixes) from ``tunekit.methods.architecture``, None for unknown families."""
    from tunekit.methods import architecture
    try:
        return [name for name, _ in architecture.blocks(model)], architecture.embeddings(model)
    except Exception:  # a family arch does not describe: fall back to the usual names
        return None


def plan_parameters(model: nn.Module, training: TrainingConfig, head_modules: Sequence[str] = (),
                    injected: Sequence[str] = (), new_parameters: Iterable[str] | None = None) -> list[ParamInfo]:
    """The learning rate and weight decay of every trainable parameter of ``model``."""
    all_names = [n for n, _ in model.named_parameters()]
    structure = _structure(model)
    if structure is not None:
        block_prefixes, embedding_prefixes = structure

        def block(name: str) -> int | None:
            return next((i for i, b in enumerate(block_prefixes) if is_under(name, b)), None)

        def is_embedding(name: str) -> bool:
            return any(is_under(name, e) for e in embedding_prefixes)

        n_blocks = len(block_prefixes)
    else:
        block, n_blocks = block_of, count_blocks(all_names)

        def is_embedding(name: str) -> bool:
            return bool(_EMBEDDING.search(name))

    backbone_lr = training.lr if training.backbone_lr is None else training.backbone_lr
    decay = training.layer_decay
    differential = backbone_lr != training.lr or decay is not None
    new_names = set(new_parameters) if new_parameters is not None else None
    reference = reference_parameter_names(model) if differential and new_names is None else None
    plan = []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if not differential:
            new = True
        elif new_names is not None:
            new = name in new_names or any(is_under(name, h) for h in head_modules)
        elif reference is None:
            new = is_new_parameter(name, head_modules, injected)
        else:
            new = any(is_under(name, h) for h in head_modules) or name.replace(".base_layer.", ".") not in reference
        index = block(name)
        embedding = index is None and is_embedding(name)
        if new:
            lr = training.lr
        elif decay is None or n_blocks == 0:
            lr = backbone_lr
        elif index is not None:
            lr = backbone_lr * decay ** (n_blocks - 1 - index)
        elif embedding:
            lr = backbone_lr * decay ** n_blocks
        else:
            lr = backbone_lr
        wd = 0.0 if param.ndim <= 1 else training.weight_decay
        plan.append(ParamInfo(name, new, index, embedding, lr, wd))
    return plan


def param_groups(model: nn.Module, plan: Sequence[ParamInfo]) -> list[dict[str, Any]]:
    """AdamW parameter groups, one per distinct (lr, weight decay), in a deterministic order."""
    params = dict(model.named_parameters())
    groups: dict[tuple[float, float], dict[str, Any]] = {}
    for info in plan:
        key = (info.lr, info.weight_decay)
        group = groups.setdefault(key, {"params": [], "lr": info.lr, "weight_decay": info.weight_decay,
                                        "names": []})
        group["params"].append(params[info.name])
        group["names"].append(info.name)
    return [g for g in groups.values() if g["lr"] > 0]


def build_optimizer(model: nn.Module, plan: Sequence[ParamInfo]) -> torch.optim.AdamW:
    """AdamW over the planned groups (parameters whose learning rate is 0 are left out)."""
    groups = param_groups(model, plan)
    for g in groups:
        g.pop("names")
    # foreach=False keeps the update order identical between runs of different group layouts.
    return torch.optim.AdamW(groups, lr=max(g["lr"] for g in groups), foreach=False)


def build_scheduler(optimizer: torch.optim.Optimizer, training: TrainingConfig,
                    total_steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    """Linear, cosine or constant schedule after ``warmup_ratio * total_steps`` warm-up steps."""
    warmup = int(round(training.warmup_ratio * total_steps))
    name = {"linear": "linear", "cosine": "cosine", "constant": "constant_with_warmup"}[training.scheduler]
    return get_scheduler(name, optimizer, num_warmup_steps=warmup, num_training_steps=total_steps)
