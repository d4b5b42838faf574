"""After the last step: bring back the best weights when asked, and sum the run up as a :class:`TrainResult`."""

from __future__ import annotations

import logging
import resource
import sys
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from tunekit.config import TrainingConfig
from tunekit.engine import checkpoint as ckpt
from tunekit.engine.state import TrainState

log = logging.getLogger("tunekit.engine")


@dataclass
class TrainResult:
    """What one call to :func:`train` did."""

    steps: int
    epochs: float
    train_loss: float | None
    final_metrics: dict[str, float] = field(default_factory=dict)
    """Metrics of the weights the model holds on return (the best ones when they were restored)."""
    best_metrics: dict[str, float] = field(default_factory=dict)
    best_checkpoint: Path | None = None
    best_step: int | None = None
    metric_for_best: str | None = None
    train_seconds: float = 0.0
    tokens_per_second: float = 0.0
    peak_memory_mb: float = 0.0
    stopped_early: bool = False
    restored_best: bool = False
    resumed_from: Path | None = None


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def restore_best(model: nn.Module, out: Path, cfg: TrainingConfig, state: TrainState,
                 metric_name: str | None) -> tuple[dict[str, float], bool]:
    """Load the best weights unless the model already holds them; return the model's metrics and whether it did."""
    final_metrics = dict(state.last_metrics)
    if (getattr(cfg, "load_best_at_end", True) and state.best_step is not None
            and state.best_step != state.last_eval_step):
        ckpt.load_weights(model, out / ckpt.BEST / ckpt.WEIGHTS)
        log.info("restored the best weights (step %d, %s=%.4g)", state.best_step, metric_name, state.best_value)
        return dict(state.best_metrics), True
    return final_metrics, False


def make_result(state: TrainState, out: Path, steps_per_epoch: int, last_loss: float | None,
                final_metrics: dict[str, float], metric_name: str | None, train_seconds: float, *,
                stopped_early: bool, restored: bool, resumed_from: Path | None) -> TrainResult:
    return TrainResult(
        steps=state.global_step,
        epochs=round(state.global_step / steps_per_epoch, 4),
        train_loss=last_loss,
        final_metrics=final_metrics,
        best_metrics=dict(state.best_metrics),
        best_checkpoint=out / ckpt.BEST if state.best_step is not None else None,
        best_step=state.best_step,
        metric_for_best=metric_name,
        train_seconds=round(train_seconds, 3),
        tokens_per_second=round(state.tokens / state.compute_seconds, 2) if state.compute_seconds else 0.0,
        peak_memory_mb=round(peak_rss_mb(), 1),
        stopped_early=stopped_early,
        restored_best=restored,
        resumed_from=resumed_from,
    )
