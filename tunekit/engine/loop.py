"""The training loop, written out plainly on top of accelerate (no framework trainer to subclass).

One call to :func:`train` runs: seed -> batches -> AdamW + schedule -> [resume] -> for each optimiser
step: ``grad_accum`` micro-batches (forward under optional bf16 autocast, backward), clip, step ->
log / evaluate / keep the best / checkpoint / early stop -> final evaluation -> TrainResult.

The engine knows no method or task by name: it receives a prepared model, a ``TaskJob`` (datasets,
collate, loss, evaluate) and the method's ``Applied`` handle (to save the best weights).

Data-parallel runs (``torchrun`` / ``accelerate launch``) go through ``accelerator.prepare``; every
process computes the same global batches and takes its slice (see ``batching``), evaluation runs on
the main process and its metrics are broadcast, and only the main process writes files.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import resource
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import torch
from accelerate import Accelerator, DistributedDataParallelKwargs
from accelerate.utils import broadcast_object_list, gather_object
from torch import nn

from tunekit.config import TrainingConfig
from tunekit.engine import checkpoint as ckpt
from tunekit.engine.batching import BatchPlan, example_length, lengths_of
from tunekit.engine.events import Listeners
from tunekit.engine.frozen_cache import build_frozen_cache
from tunekit.engine.metrics_log import MetricsLog
from tunekit.engine.optim import build_optimizer, build_scheduler, plan_parameters
from tunekit.engine.seeding import seed_everything
from tunekit.errors import CheckpointError, ConfigError, DataError, TrainingInterrupted, UsageError

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


def count_tokens(batch: dict[str, Any]) -> int:
    """Real (non-padding) tokens in a batch: the attention mask's sum, else the size of ``input_ids``."""
    mask = batch.get("attention_mask")
    if isinstance(mask, torch.Tensor):
        return int(mask.sum())
    ids = batch.get("input_ids")
    if isinstance(ids, torch.Tensor):
        return int(ids.numel())
    return 0


def to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


class _ModelView:
    """What the task's ``loss`` receives under DDP: calls go through the DDP wrapper (so gradients are
    synchronised), attribute reads (``model.config`` ...) reach the real model."""

    def __init__(self, wrapped: nn.Module, inner: nn.Module) -> None:
        object.__setattr__(self, "_wrapped", wrapped)
        object.__setattr__(self, "_inner", inner)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._wrapped(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _StopRequest:
    """Turns the first Ctrl-C (SIGINT) or SIGTERM into a request to stop at the next step boundary.

    SIGTERM is what torchrun sends the workers when it is interrupted, and what batch schedulers send
    before they kill a job; both then get a checkpoint. A second signal stops at once.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:  # a second signal: stop now, without a checkpoint
            raise KeyboardInterrupt
        self.requested = True
        log.warning("%s received: writing a checkpoint after the current step (Ctrl-C again to quit now)",
                    signal.Signals(signum).name)

    def __exit__(self, *exc: Any) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)


def _has_gpu() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return torch.cuda.is_available() or bool(mps is not None and mps.is_available())


def _metric_sense(name: str, job: Any) -> bool:
    """True when larger values of metric ``name`` are better."""
    if name == getattr(job, "metric_for_best", None):
        return bool(getattr(job, "greater_is_better", True))
    return "loss" not in name and "perplexity" not in name


class _Trainer:
    """The state of one training run; :func:`train` is its only public entry point."""

    def __init__(self, model: nn.Module, job: Any, training: TrainingConfig, out_dir: Path, applied: Any,
                 listeners: Sequence[Any], fingerprint: str, overwrite: bool) -> None:
        self.raw = model
        self.job = job
        self.cfg = training
        self.out = Path(out_dir)
        self.applied = applied
        self.fingerprint = fingerprint
        self.acc = Accelerator(
            # Without a GPU, accelerate only sets up multi-process CPU training (gloo) when told cpu=True.
            cpu=not _has_gpu(),
            mixed_precision="no",  # bf16 is applied with torch.autocast below, from training.precision
            kwargs_handlers=[DistributedDataParallelKwargs(
                find_unused_parameters=os.environ.get("TUNEKIT_DDP_FIND_UNUSED", "") not in ("", "0"))],
        )
        self.rank = self.acc.process_index
        self.world = self.acc.num_processes
        self.main = self.acc.is_main_process
        self.events = Listeners(listeners, enabled=self.main)
        self.metrics = MetricsLog(self.out, training.report_to, enabled=self.main)
        self.resume_from = self._resume_folder(overwrite)

    # -- setup -------------------------------------------------------------------------------------

    def _resume_folder(self, overwrite: bool) -> Path | None:
        last = ckpt.find_last_checkpoint(self.out)
        if self.cfg.resume:
            if last is None:
                log.info("no checkpoint in %s: starting from the beginning", self.out)
            return last
        if last is not None and not overwrite:
            ckpt.check_output_dir(self.out, resume=False)  # raises CheckpointError with the fix
        if overwrite and self.main:
            ckpt.check_output_dir(self.out, resume=False, overwrite=True)
        self.acc.wait_for_everyone()
        return None

    def _dataset(self) -> Any:
        data = getattr(self.job, "train_dataset", None)
        if data is None or len(data) == 0:
            raise DataError("the training set is empty; give data.train a file with at least one row.")
        return data

    # -- main --------------------------------------------------------------------------------------

    def run(self) -> TrainResult:
        cfg = self.cfg
        if cfg.lr is None:
            raise ConfigError("training.lr is not set; give a learning rate (tunekit.run fills in the method's suggested one).")
        seed_everything(cfg.seed)
        train_data = self._dataset()
        lengths = lengths_of(train_data) if cfg.group_by_length else None
        if lengths is not None and len(set(lengths)) == 1:
            lengths = None  # nothing to group
        plan = BatchPlan(len(train_data), cfg.batch_size, cfg.seed, world_size=self.world, rank=self.rank,
                         lengths=lengths)
        self.plan = plan
        steps_per_epoch = math.ceil(plan.batches_per_epoch / cfg.grad_accum)
        total_steps = cfg.max_steps or max(1, math.ceil(cfg.epochs * steps_per_epoch))
        self.steps_per_epoch = steps_per_epoch

        injected = list(getattr(self.applied, "injected", []) or [])
        new_parameters = getattr(self.applied, "new_parameters", None)
        param_plan = plan_parameters(self.raw, cfg, list(getattr(self.job, "head_modules", []) or []), injected,
                                     new_parameters)
        if not param_plan:
            raise UsageError("the model has no trainable parameter; apply a method that leaves something to train.")
        if all(p.lr <= 0 for p in param_plan):
            raise ConfigError("no trainable parameter has a positive learning rate; raise training.lr or training.backbone_lr.")
        optimizer = build_optimizer(self.raw, param_plan)
        scheduler = build_scheduler(optimizer, cfg, total_steps)
        self.trainable = [p for p in self.raw.parameters() if p.requires_grad]
        self.optimizer, self.scheduler = optimizer, scheduler
        self.device = self.acc.device

        self.raw.to(self.device)
        wrapped = self.acc.prepare_model(self.raw)
        self.model_for_loss: Any = self.raw if wrapped is self.raw else _ModelView(wrapped, self.raw)
        self.wrapped = wrapped

        self.cache = None
        if cfg.cache_frozen:
            self.cache = build_frozen_cache(self.raw, train_data, self.job.collate,
                                            list(getattr(self.job, "head_modules", []) or []), cfg.batch_size,
                                            self.device, self._autocast)

        self.metric_name = cfg.metric_for_best or getattr(self.job, "metric_for_best", None)
        self.greater = _metric_sense(self.metric_name, self.job) if self.metric_name else True
        self.best_value: float | None = None
        self.best_step: int | None = None
        self.best_metrics: dict[str, float] = {}
        self.last_metrics: dict[str, float] = {}
        self.last_eval_step: int | None = None
        self.bad_evals = 0
        self.global_step = 0
        self.epoch = 0
        self.batch_index = 0
        self.tokens = 0
        self.compute_seconds = 0.0
        self.elapsed_before = 0.0
        self.stopped_early = False
        self.interrupted = False

        if self.resume_from is not None:
            self._restore(self.resume_from)
            self.metrics.truncate_after(self.global_step)
        else:
            self.metrics.reset()
        self.acc.wait_for_everyone()

        self.events.emit("on_train_begin", total_steps, self.global_step)
        started = time.perf_counter()
        self.started = started
        last_loss = None
        interrupted = False
        try:
            with _StopRequest() as stop:
                last_loss = self._loop(total_steps, stop)
                interrupted = self.interrupted
        except KeyboardInterrupt:
            last = ckpt.find_last_checkpoint(self.out)
            where = f"from {str(last)!r}" if last else "from the beginning"
            raise TrainingInterrupted(
                f"training was stopped at step {self.global_step} before a checkpoint could be written; "
                f"rerun the same command with --resume to continue {where}."
            ) from None
        if interrupted:
            folder = self._save_checkpoint()
            self.metrics.close()
            raise TrainingInterrupted(
                f"training was interrupted at step {self.global_step} of {total_steps} and saved to {str(folder)!r}; "
                "rerun the same command with --resume to continue."
            )

        has_eval = self._has_eval()
        if has_eval and self.last_eval_step != self.global_step and not self.stopped_early:
            self._evaluate()
            self._after_eval()
        final_metrics = dict(self.last_metrics)
        restored = False
        best_folder = self.out / ckpt.BEST if self.best_step is not None else None
        if (getattr(cfg, "load_best_at_end", True) and self.best_step is not None and self.best_step != self.last_eval_step
                and best_folder is not None):
            ckpt.load_weights(self.raw, best_folder / ckpt.WEIGHTS)
            final_metrics = dict(self.best_metrics)
            restored = True
            log.info("restored the best weights (step %d, %s=%.4g)", self.best_step, self.metric_name, self.best_value)
        self.acc.wait_for_everyone()

        train_seconds = self.elapsed_before + (time.perf_counter() - started)
        result = TrainResult(
            steps=self.global_step,
            epochs=round(self.global_step / steps_per_epoch, 4),
            train_loss=last_loss,
            final_metrics=final_metrics,
            best_metrics=dict(self.best_metrics),
            best_checkpoint=best_folder,
            best_step=self.best_step,
            metric_for_best=self.metric_name,
            train_seconds=round(train_seconds, 3),
            tokens_per_second=round(self.tokens / self.compute_seconds, 2) if self.compute_seconds else 0.0,
            peak_memory_mb=round(peak_rss_mb(), 1),
            stopped_early=self.stopped_early,
            restored_best=restored,
            resumed_from=self.resume_from,
        )
        self.metrics.close()
        if self.main:
            self.metrics.plot()
        self.events.emit("on_train_end", result)
        self.cache = None
        # Drop the DDP wrapper and optimiser (accelerator.free_memory would also run a slow gc.collect()).
        self.wrapped = self.model_for_loss = self.optimizer = self.scheduler = None
        return result

    def _stop_now(self, stop: _StopRequest) -> bool:
        """Whether any process was asked to stop (all processes must agree before a checkpoint)."""
        if self.world == 1:
            return stop.requested
        flag = torch.tensor([1.0 if stop.requested else 0.0], device=self.device)
        return bool(self.acc.reduce(flag, reduction="sum").item() > 0)

    def _autocast(self) -> contextlib.AbstractContextManager:
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16,
                              enabled=self.cfg.precision == "bf16")

    def _loop(self, total_steps: int, stop: _StopRequest) -> float | None:
        cfg = self.cfg
        data = self.job.train_dataset
        window_loss = 0.0
        window_steps = 0
        window_tokens = 0
        window_seconds = 0.0
        last_loss: float | None = None
        self.raw.train()
        while self.global_step < total_steps:
            batches = self.plan.epoch_batches(self.epoch)
            while self.batch_index < len(batches) and self.global_step < total_steps:
                t0 = time.perf_counter()
                group = batches[self.batch_index:self.batch_index + cfg.grad_accum]
                step_loss = 0.0
                for k, indices in enumerate(group):
                    batch = to_device(self.job.collate([data[i] for i in indices]), self.device)
                    window_tokens += count_tokens(batch)
                    sync = k == len(group) - 1
                    no_sync = self.world > 1 and not sync
                    replay = self.cache.replay(indices, batch) if self.cache else contextlib.nullcontext()
                    with self.acc.no_sync(self.wrapped) if no_sync else contextlib.nullcontext():
                        with replay, self._autocast():
                            loss = self.job.loss(self.model_for_loss, batch)
                        (loss / len(group)).backward()
                    step_loss += float(loss.detach()) / len(group)
                grad_norm = None
                if cfg.max_grad_norm is not None:
                    grad_norm = float(self.acc.clip_grad_norm_(self.trainable, cfg.max_grad_norm))
                self.optimizer.step()
                self.scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
                self.global_step += 1
                self.batch_index += len(group)
                epoch_done = self.batch_index >= len(batches)
                if epoch_done:
                    self.epoch += 1
                    self.batch_index = 0
                dt = time.perf_counter() - t0
                window_seconds += dt
                self.compute_seconds += dt
                window_loss += step_loss
                window_steps += 1

                if self.global_step % cfg.logging_steps == 0 or self.global_step == total_steps:
                    loss_mean, tokens = self._reduce_log(window_loss / window_steps, window_tokens)
                    self.tokens += tokens
                    last_loss = loss_mean
                    record = {
                        "step": self.global_step,
                        "epoch": round(self.global_step / self.steps_per_epoch, 4),
                        "loss": round(loss_mean, 6),
                        "lr": self._lr(),
                        "tokens_per_second": round(tokens / window_seconds, 2) if window_seconds else 0.0,
                    }
                    if grad_norm is not None:
                        record["grad_norm"] = round(grad_norm, 6)
                    self.metrics.write(record)
                    self.events.emit("on_log", self.global_step, record)
                    window_loss, window_steps, window_tokens, window_seconds = 0.0, 0, 0, 0.0

                if self._has_eval() and ((cfg.eval_steps and self.global_step % cfg.eval_steps == 0)
                                         or (epoch_done and cfg.eval_each_epoch)):
                    self._evaluate()
                    self._after_eval()
                if cfg.save_steps and self.global_step % cfg.save_steps == 0:
                    self._save_checkpoint()
                if self._stop_now(stop):
                    self.interrupted = True
                if self.stopped_early or self.interrupted:
                    if window_steps:  # account for tokens of steps after the last log line
                        self.tokens += self._reduce_log(0.0, window_tokens)[1]
                    return last_loss
                if epoch_done:
                    break
        if window_steps:
            loss_mean, tokens = self._reduce_log(window_loss / window_steps, window_tokens)
            self.tokens += tokens
            last_loss = loss_mean
        return last_loss

    def _lr(self) -> float:
        """The learning rate of the group with the highest base rate (the new parameters')."""
        groups = self.optimizer.param_groups
        base = self.scheduler.base_lrs
        i = max(range(len(groups)), key=lambda j: base[j])
        return float(groups[i]["lr"])

    def _reduce_log(self, loss: float, tokens: int) -> tuple[float, int]:
        if self.world == 1:
            return loss, tokens
        values = torch.tensor([loss, float(tokens)], device=self.device, dtype=torch.float64)
        summed = self.acc.reduce(values, reduction="sum")
        return float(summed[0]) / self.world, int(summed[1])

    # -- evaluation --------------------------------------------------------------------------------

    def _has_eval(self) -> bool:
        data = getattr(self.job, "eval_dataset", None)
        return data is not None and len(data) > 0

    def _eval_batches(self) -> Iterator[dict[str, Any]]:
        """Evaluation batches; sorted by length (less padding) when the job's metrics ignore the order."""
        data = self.job.eval_dataset
        size = self.cfg.batch_size
        order = list(range(len(data)))
        if getattr(self.job, "eval_order_free", False):
            order.sort(key=lambda i: example_length(data[i]))
        for start in range(0, len(order), size):
            yield to_device(self.job.collate([data[i] for i in order[start:start + size]]), self.device)

    def _evaluate(self) -> dict[str, float]:
        metrics: dict[str, float] | None = None
        if self.main:
            self.raw.eval()
            try:
                with torch.no_grad(), self._autocast():
                    metrics = {k: float(v) for k, v in self.job.evaluate(self.raw, self._eval_batches()).items()}
            finally:
                self.raw.train()
        if self.world > 1:
            box = [metrics]
            broadcast_object_list(box, from_process=0)
            metrics = box[0]
        assert metrics is not None
        self.last_metrics = metrics
        self.last_eval_step = self.global_step
        record = {"step": self.global_step, "epoch": round(self.global_step / self.steps_per_epoch, 4), **metrics}
        self.metrics.write(record)
        self.events.emit("on_evaluate", self.global_step, dict(metrics))
        return metrics

    def _after_eval(self) -> None:
        """Keep the best weights and count evaluations without improvement (early stopping)."""
        name = self.metric_name
        if not name:
            return
        if name not in self.last_metrics:
            raise ConfigError(
                f"metric_for_best {name!r} is not among the evaluation metrics "
                f"({', '.join(sorted(self.last_metrics))}); set training.metric_for_best to one of them."
            )
        value = self.last_metrics[name]
        better = self.best_value is None or (value > self.best_value if self.greater else value < self.best_value)
        if better:
            self.best_value = value
            self.best_step = self.global_step
            self.best_metrics = dict(self.last_metrics)
            self.bad_evals = 0
            if self.main:
                self._save_best()
            self.acc.wait_for_everyone()
        else:
            self.bad_evals += 1
            patience = self.cfg.early_stopping_patience
            if patience is not None and self.bad_evals >= patience:
                log.info("early stopping at step %d: %s did not improve for %d evaluations",
                         self.global_step, name, self.bad_evals)
                self.stopped_early = True

    def _save_best(self) -> None:
        with ckpt.atomic_folder(self.out / ckpt.BEST) as tmp:
            ckpt.save_weights(self.raw, tmp / ckpt.WEIGHTS)
            save = getattr(self.applied, "save", None)
            if callable(save):
                save(tmp / "adapter")
            (tmp / "metrics.json").write_text(json.dumps({"step": self.global_step, **self.best_metrics}, indent=2))

    # -- checkpoints -------------------------------------------------------------------------------

    def _state(self) -> dict[str, Any]:
        return {
            "global_step": self.global_step,
            "epoch": self.epoch,
            "batch_index": self.batch_index,
            "seed": self.cfg.seed,
            "fingerprint": self.fingerprint,
            "world_size": self.world,
            "global_batch": self.plan.global_batch,
            "grad_accum": self.cfg.grad_accum,
            "best_value": self.best_value,
            "best_step": self.best_step,
            "best_metrics": self.best_metrics,
            "last_metrics": self.last_metrics,
            "last_eval_step": self.last_eval_step,
            "bad_evals": self.bad_evals,
            "tokens": self.tokens,
            "compute_seconds": self.compute_seconds,
            "elapsed_seconds": self.elapsed_before + (time.perf_counter() - self.started),
        }

    def _save_checkpoint(self) -> Path:
        rngs = [ckpt.rng_state()]
        if self.world > 1:
            rngs = gather_object(rngs)
        folder = ckpt.step_dir(self.out, self.global_step)
        if self.main:
            ckpt.write_checkpoint(folder, self.raw, self.optimizer, self.scheduler, rngs, self._state())
            ckpt.prune(self.out, self.cfg.save_total_limit)
            log.info("checkpoint written: %s", folder)
        self.acc.wait_for_everyone()
        return folder

    def _restore(self, folder: Path) -> None:
        state = ckpt.read_state(folder)
        if self.fingerprint and state.get("fingerprint") and state["fingerprint"] != self.fingerprint:
            raise CheckpointError(
                f"checkpoint {str(folder)!r} was made by a different configuration; resume with the settings it was "
                "made with, or start over with --set output.overwrite=true."
            )
        if state.get("world_size", 1) != self.world or state.get("global_batch") != self.plan.global_batch:
            raise CheckpointError(
                f"checkpoint {str(folder)!r} was written by {state.get('world_size')} process(es) with a global batch of "
                f"{state.get('global_batch')}; resume with the same number of processes and batch size."
            )
        state = ckpt.load_checkpoint(folder, self.raw, self.optimizer, self.scheduler, rank=self.rank)
        self.global_step = int(state["global_step"])
        self.epoch = int(state["epoch"])
        self.batch_index = int(state["batch_index"])
        self.best_value = state.get("best_value")
        self.best_step = state.get("best_step")
        self.best_metrics = dict(state.get("best_metrics") or {})
        self.last_metrics = dict(state.get("last_metrics") or {})
        self.last_eval_step = state.get("last_eval_step")
        self.bad_evals = int(state.get("bad_evals") or 0)
        self.tokens = int(state.get("tokens") or 0)
        self.compute_seconds = float(state.get("compute_seconds") or 0.0)
        self.elapsed_before = float(state.get("elapsed_seconds") or 0.0)
        log.info("resumed from %s (step %d, epoch %d, batch %d)", folder, self.global_step, self.epoch,
                 self.batch_index)


def train(model: nn.Module, job: Any, training: TrainingConfig, out_dir: str | Path, *, applied: Any = None,
          listeners: Iterable[Any] = (), config_fingerprint: str = "", overwrite: bool = False) -> TrainResult:
    """Train ``model`` (method already applied) on ``job`` as ``training`` says; checkpoints go to ``out_dir``.

    ``applied`` is the method's handle (its ``save`` writes the best weights; its optional
    ``new_parameters`` names the parameters trained at ``training.lr``). ``listeners`` receive progress
    events (``tunekit.engine.events``). ``config_fingerprint`` is stored in checkpoints; resuming a folder
    whose fingerprint differs raises CheckpointError. With ``overwrite`` old checkpoints are deleted
    instead of refusing to reuse the folder. Ctrl-C writes a checkpoint and raises TrainingInterrupted.
    """
    listeners = list(listeners)
    if training.lr is None:
        raise ConfigError("training.lr is not set; give a learning rate (the runner fills in the method's default).")
    trainer = _Trainer(model, job, training, Path(out_dir), applied, listeners, config_fingerprint, overwrite)
    try:
        return trainer.run()
    except BaseException as exc:
        trainer.events.emit("on_train_abort", exc)
        raise
