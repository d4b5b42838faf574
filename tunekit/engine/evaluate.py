"""Evaluation during training: batching the held-out set, running the task's ``evaluate`` on the main process,
keeping the best weights and counting evaluations without improvement (early stopping)."""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from accelerate import Accelerator
from accelerate.utils import broadcast_object_list
from torch import nn

from tunekit.engine import checkpoint as ckpt
from tunekit.engine.batching import example_length
from tunekit.engine.state import TrainState
from tunekit.errors import ConfigError
from tunekit.tasks.pieces import to_device

log = logging.getLogger("tunekit.engine")


def metric_sense(name: str, job: Any) -> bool:
    """True when larger values of metric ``name`` are better."""
    if name == getattr(job, "metric_for_best", None):
        return bool(getattr(job, "greater_is_better", True))
    return "loss" not in name and "perplexity" not in name


def has_eval(job: Any) -> bool:
    data = getattr(job, "eval_dataset", None)
    return data is not None and len(data) > 0


def eval_batches(job: Any, batch_size: int, device: Any) -> Iterator[dict[str, Any]]:
    """Evaluation batches; sorted by length (less padding) when the job's metrics ignore the order."""
    data = job.eval_dataset
    order = list(range(len(data)))
    if getattr(job, "eval_order_free", False):
        order.sort(key=lambda i: example_length(data[i]))
    for start in range(0, len(order), batch_size):
        yield to_device(job.collate([data[i] for i in order[start:start + batch_size]]), device)


def evaluate(model: nn.Module, job: Any, acc: Accelerator, batch_size: int,
             autocast: Callable[[], contextlib.AbstractContextManager]) -> dict[str, float]:
    """The job's metrics on the evaluation set, computed by the main process and shared with the others."""
    metrics: dict[str, float] | None = None
    if acc.is_main_process:
        model.eval()
        try:
            with torch.no_grad(), autocast():
                batches = eval_batches(job, batch_size, acc.device)
                metrics = {k: float(v) for k, v in job.evaluate(model, batches).items()}
        finally:
            model.train()
    if acc.num_processes > 1:
        box = [metrics]
        broadcast_object_list(box, from_process=0)
        metrics = box[0]
    assert metrics is not None
    return metrics


def judge(state: TrainState, name: str, greater: bool, patience: int | None) -> tuple[bool, bool]:
    """Update the best-so-far in ``state`` from its last metrics; return (improved, stop early)."""
    if name not in state.last_metrics:
        raise ConfigError(
            f"metric_for_best {name!r} is not among the evaluation metrics "
            f"({', '.join(sorted(state.last_metrics))}); set training.metric_for_best to one of them."
        )
    value = state.last_metrics[name]
    best = state.best_value
    if best is None or (value > best if greater else value < best):
        state.best_value = value
        state.best_step = state.global_step
        state.best_metrics = dict(state.last_metrics)
        state.bad_evals = 0
        return True, False
    state.bad_evals += 1
    if patience is not None and state.bad_evals >= patience:
        log.info("early stopping at step %d: %s did not improve for %d evaluations",
                 state.global_step, name, state.bad_evals)
        return False, True
    return False, False


def save_best(out: Path, model: nn.Module, applied: Any, state: TrainState) -> None:
    with ckpt.atomic_folder(out / ckpt.BEST) as tmp:
        ckpt.save_weights(model, tmp / ckpt.WEIGHTS)
        save = getattr(applied, "save", None)
        if callable(save):
            save(tmp / "adapter")
        (tmp / "metrics.json").write_text(json.dumps({"step": state.global_step, **state.best_metrics}, indent=2))
