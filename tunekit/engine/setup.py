"""Everything a run builds before its first step: the accelerator, the resume decision, the batch plan, the
optimiser and schedule, the (DDP-wrapped) model and the optional frozen-part cache.

The order of :func:`build` is part of the reproducibility contract (the seed is set first, then everything that
may draw random numbers is built in a fixed order); keep it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import accelerate
import torch
from accelerate import Accelerator, DistributedDataParallelKwargs
from accelerate.utils import DistributedType
from torch import nn

from tunekit.config import TrainingConfig
from tunekit.engine import checkpoint as ckpt
from tunekit.engine.batching import BatchPlan, lengths_of
from tunekit.engine.frozen_cache import build_frozen_cache
from tunekit.engine.memory import setup_checkpointing
from tunekit.engine.optim import build_optimizer, build_scheduler, plan_parameters
from tunekit.engine.precision import hint_precision
from tunekit.engine.seeding import seed_everything
from tunekit.errors import ConfigError, DataError, UsageError

log = logging.getLogger("tunekit.engine")


def _has_gpu() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return torch.cuda.is_available() or bool(mps is not None and mps.is_available())


def make_accelerator() -> Accelerator:
    acc = Accelerator(
        # Without a GPU, accelerate only sets up multi-process CPU training (gloo) when told cpu=True.
        cpu=not _has_gpu(),
        mixed_precision="no",  # bf16 is applied with torch.autocast in the loop, from training.precision
        kwargs_handlers=[DistributedDataParallelKwargs(
            find_unused_parameters=os.environ.get("TUNEKIT_DDP_FIND_UNUSED", "") not in ("", "0"))],
    )
    check_fsdp(acc)
    return acc


def check_fsdp(acc: Accelerator) -> None:
    """Refuse an FSDP launch (``accelerate launch --use_fsdp``) that would not shard: accelerate sets FSDP up for
    GPU processes only and falls back to DDP without a word on CPU; and its FSDP2 wants the optimiser prepared
    together with the model, while tunekit builds the optimiser first (docs/distributed.md)."""
    if os.environ.get("ACCELERATE_USE_FSDP", "").lower() not in ("1", "true") or acc.num_processes < 2:
        return
    if acc.distributed_type != DistributedType.FSDP:
        raise UsageError(
            f"FSDP was asked for, but accelerate {accelerate.__version__} sets it up only on GPUs and these "
            f"{acc.num_processes} processes run on {acc.device.type}; launch without --use_fsdp to train "
            "data-parallel (DDP) on CPU.")
    if getattr(acc.state.fsdp_plugin, "fsdp_version", 1) != 1:
        raise UsageError("tunekit trains under FSDP version 1 only (accelerate's FSDP2 needs the optimiser "
                         "prepared with the model); set fsdp_version: 1 and use_orig_params: true.")


def resume_folder(acc: Accelerator, out: Path, cfg: TrainingConfig, overwrite: bool) -> Path | None:
    """The checkpoint to resume from, or None; refuses (or with ``overwrite`` clears) a folder holding old ones."""
    start = ckpt.checkpoint_to_resume(out, cfg.resume, overwrite)  # raises CheckpointError with the fix
    if cfg.resume:
        if start is None:
            log.info("no checkpoint in %s: starting from the beginning", out)
        return start
    if overwrite and acc.is_main_process:
        ckpt.clear_training_files(out)
    acc.wait_for_everyone()
    return None


class ModelView:
    """What the task's ``loss`` receives under DDP: calls go through the DDP wrapper (so gradients are
    synchronised), attribute reads (``model.config`` ...) reach the real model."""

    def __init__(self, wrapped: nn.Module, inner: nn.Module) -> None:
        object.__setattr__(self, "_wrapped", wrapped)
        object.__setattr__(self, "_inner", inner)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._wrapped(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@dataclass
class Setup:
    """What :func:`build` made: the batch plan and step counts, the optimiser, and the model as the loss sees it."""

    plan: BatchPlan
    steps_per_epoch: int
    total_steps: int
    optimizer: Any
    scheduler: Any
    trainable: list[nn.Parameter]
    wrapped: Any
    """The model as accelerate prepared it (the DDP wrapper when there are several processes)."""
    model_for_loss: Any
    cache: Any = None


def _training_set(job: Any) -> Any:
    data = getattr(job, "train_dataset", None)
    if data is None or len(data) == 0:
        raise DataError("the training set is empty; give data.train a file with at least one row.")
    return data


def _batch_plan(cfg: TrainingConfig, data: Any, acc: Accelerator) -> BatchPlan:
    lengths = lengths_of(data) if cfg.group_by_length else None
    if lengths is not None and len(set(lengths)) == 1:
        lengths = None  # nothing to group
    return BatchPlan(len(data), cfg.batch_size, cfg.seed, world_size=acc.num_processes, rank=acc.process_index,
                     lengths=lengths)


def _optimisation(model: nn.Module, job: Any, cfg: TrainingConfig, applied: Any, total_steps: int) -> tuple[Any, Any]:
    injected = list(getattr(applied, "injected", []) or [])
    new_parameters = getattr(applied, "new_parameters", None)
    param_plan = plan_parameters(model, cfg, list(getattr(job, "head_modules", []) or []), injected, new_parameters)
    if not param_plan:
        raise UsageError("the model has no trainable parameter; apply a method that leaves something to train.")
    if all(p.lr <= 0 for p in param_plan):
        raise ConfigError("no trainable parameter has a positive learning rate; raise training.lr or training.backbone_lr.")
    optimizer = build_optimizer(model, param_plan)
    return optimizer, build_scheduler(optimizer, cfg, total_steps)


def build(model: nn.Module, job: Any, cfg: TrainingConfig, applied: Any, acc: Accelerator,
          autocast: Callable[[], contextlib.AbstractContextManager]) -> Setup:
    """Seed, plan the batches, build the optimiser and schedule, turn gradient checkpointing on or off, move and
    wrap the model, cache the frozen part."""
    if cfg.lr is None:
        raise ConfigError("training.lr is not set; give a learning rate (tunekit.run fills in the method's suggested one).")
    seed_everything(cfg.seed)
    data = _training_set(job)
    plan = _batch_plan(cfg, data, acc)
    steps_per_epoch = math.ceil(plan.batches_per_epoch / cfg.grad_accum)
    total_steps = cfg.max_steps or max(1, math.ceil(cfg.epochs * steps_per_epoch))
    optimizer, scheduler = _optimisation(model, job, cfg, applied, total_steps)
    trainable = [p for p in model.parameters() if p.requires_grad]
    setup_checkpointing(model, cfg, data)
    hint_precision(cfg.precision, acc.device)

    model.to(acc.device)
    wrapped = acc.prepare_model(model)
    model_for_loss = model if wrapped is model else ModelView(wrapped, model)
    cache = None
    if cfg.cache_frozen:
        cache = build_frozen_cache(model, data, job.collate, list(getattr(job, "head_modules", []) or []),
                                   cfg.batch_size, acc.device, autocast)
    return Setup(plan=plan, steps_per_epoch=steps_per_epoch, total_steps=total_steps, optimizer=optimizer,
                 scheduler=scheduler, trainable=trainable, wrapped=wrapped, model_for_loss=model_for_loss, cache=cache)
