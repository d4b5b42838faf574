"""The training loop, written out plainly on top of accelerate (no framework trainer to subclass).

One call to :func:`train` runs: setup (seed -> batches -> AdamW + schedule, see ``setup``) -> [resume] -> for
each optimiser step: ``grad_accum`` micro-batches (forward under optional bf16 autocast, backward), clip, step ->
log / evaluate / keep the best / checkpoint / early stop -> final evaluation -> TrainResult (see ``finish``).
Everything a checkpoint saves and restores is one :class:`~tunekit.engine.state.TrainState`.

The engine knows no method or task by name: it receives a prepared model, a ``TaskJob`` (datasets,
collate, loss, evaluate) and the method's ``Applied`` handle (to save the best weights).

Data-parallel runs (``torchrun`` / ``accelerate launch``) go through ``accelerator.prepare``; every
process computes the same global batches and takes its slice (see ``batching``), evaluation runs on
the main process and its metrics are broadcast, and only the main process writes files.
"""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
from torch import nn

from tunekit.config import TrainingConfig
from tunekit.engine import checkpoint as ckpt
from tunekit.engine import evaluate as ev
from tunekit.engine import setup as su
from tunekit.engine import state as st
from tunekit.engine.evaluate import to_device
from tunekit.engine.events import Listeners
from tunekit.engine.finish import TrainResult, make_result, peak_rss_mb, restore_best
from tunekit.engine.metrics_log import MetricsLog
from tunekit.engine.state import TrainState
from tunekit.errors import ConfigError, TrainingInterrupted
from tunekit.protocols import optional
from tunekit.tasks.protocol import JOB_OPTIONAL

__all__ = ["TrainResult", "TrainState", "count_tokens", "peak_rss_mb", "to_device", "train"]

log = logging.getLogger("tunekit.engine")


def batch_rows(batch: dict[str, Any]) -> int:
    """Examples in a batch: the first dimension of its first tensor (the default ``loss_weight``)."""
    return next((len(v) for v in batch.values() if isinstance(v, torch.Tensor) and v.dim() > 0), 1)


def count_tokens(batch: dict[str, Any]) -> int:
    """Real (non-padding) tokens in a batch: the attention mask's sum, else the size of ``input_ids``."""
    mask = batch.get("attention_mask")
    if isinstance(mask, torch.Tensor):
        return int(mask.sum())
    ids = batch.get("input_ids")
    if isinstance(ids, torch.Tensor):
        return int(ids.numel())
    return 0


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


@dataclass
class _Window:
    """What the steps since the last log line add up to."""

    loss: float = 0.0
    steps: int = 0
    tokens: int = 0
    seconds: float = 0.0


class _Trainer:
    """One training run; :func:`train` is its only public entry point."""

    def __init__(self, model: nn.Module, job: Any, training: TrainingConfig, out_dir: Path, applied: Any,
                 listeners: Sequence[Any], fingerprint: str, overwrite: bool) -> None:
        self.raw = model
        self.job = job
        self.cfg = training
        self.out = Path(out_dir)
        self.applied = applied
        self.fingerprint = fingerprint
        self.acc = su.make_accelerator()
        self.events = Listeners(listeners, enabled=self.acc.is_main_process)
        self.metrics = MetricsLog(self.out, enabled=self.acc.is_main_process)
        self.resume_from = su.resume_folder(self.acc, self.out, training, overwrite)
        self.metric_name: str | None = training.metric_for_best or getattr(job, "metric_for_best", None)
        self.greater = ev.metric_sense(self.metric_name, job) if self.metric_name else True
        self.state = TrainState()
        self.stopped_early = False
        self.interrupted = False

    @property
    def world(self) -> int:
        return self.acc.num_processes

    @property
    def device(self) -> torch.device:
        return self.acc.device

    # -- run ---------------------------------------------------------------------------------------

    def run(self) -> TrainResult:
        self.setup = su.build(self.raw, self.job, self.cfg, self.applied, self.acc, self._autocast)
        if self.resume_from is not None:
            s = self.setup
            self.state = st.restore(self.resume_from, self.raw, s.optimizer, s.scheduler, self._identity(),
                                    self.acc.process_index)
            self.metrics.truncate_after(self.state.global_step)
        else:
            self.metrics.reset()
        self.acc.wait_for_everyone()

        total_steps = self.setup.total_steps
        self.events.emit("on_train_begin", total_steps, self.state.global_step)
        self.started = time.perf_counter()
        try:
            with _StopRequest() as stop:
                last_loss = self._loop(total_steps, stop)
        except KeyboardInterrupt:
            last = ckpt.find_last_checkpoint(self.out)
            where = f"from {str(last)!r}" if last else "from the beginning"
            raise TrainingInterrupted(
                f"training was stopped at step {self.state.global_step} before a checkpoint could be written; "
                f"rerun the same command with --resume to continue {where}."
            ) from None
        if self.interrupted:
            folder = self._save_checkpoint()
            raise TrainingInterrupted(
                f"training was interrupted at step {self.state.global_step} of {total_steps} and saved to "
                f"{str(folder)!r}; rerun the same command with --resume to continue."
            )
        return self._finish(last_loss)

    def _finish(self, last_loss: float | None) -> TrainResult:
        state = self.state
        if ev.has_eval(self.job) and state.last_eval_step != state.global_step and not self.stopped_early:
            self._evaluate()
        final_metrics, restored = restore_best(self.raw, self.out, self.cfg, state, self.metric_name)
        self.acc.wait_for_everyone()
        train_seconds = state.elapsed_seconds + (time.perf_counter() - self.started)
        result = make_result(state, self.out, self.setup.steps_per_epoch, last_loss, final_metrics, self.metric_name,
                             train_seconds, stopped_early=self.stopped_early, restored=restored,
                             resumed_from=self.resume_from)
        if self.acc.is_main_process:
            self.metrics.plot()
        self.events.emit("on_train_end", result)
        # Drop the cache, DDP wrapper and optimiser (accelerator.free_memory would also run a slow gc.collect()).
        self.setup = None  # type: ignore[assignment]
        return result

    # -- the loop ----------------------------------------------------------------------------------

    def _loop(self, total_steps: int, stop: _StopRequest) -> float | None:
        state, window = self.state, _Window()
        last_loss: float | None = None
        self.raw.train()
        while state.global_step < total_steps:
            batches = self.setup.plan.epoch_batches(state.epoch)
            while state.batch_index < len(batches) and state.global_step < total_steps:
                grad_norm, epoch_done = self._step(batches, window)
                if state.global_step % self.cfg.logging_steps == 0 or state.global_step == total_steps:
                    last_loss = self._log(window, grad_norm)
                self._after_step(epoch_done)
                if self._stop_now(stop):
                    self.interrupted = True
                if self.stopped_early or self.interrupted:
                    if window.steps:  # account for tokens of steps after the last log line
                        state.tokens += self._reduce_log(0.0, window.tokens)[1]
                    return last_loss
                if epoch_done:
                    break
        if window.steps:
            loss_mean, tokens = self._reduce_log(window.loss / window.steps, window.tokens)
            state.tokens += tokens
            last_loss = loss_mean
        return last_loss

    def _step(self, batches: list[Any], window: _Window) -> tuple[float | None, bool]:
        """One optimiser step over the next ``grad_accum`` micro-batches; returns (grad norm, epoch done)."""
        state, s = self.state, self.setup
        t0 = time.perf_counter()
        group = batches[state.batch_index:state.batch_index + self.cfg.grad_accum]
        step_loss = self._accumulate(group, window)
        grad_norm = None
        # Without clipping, a tracker still gets the norm: clip_grad_norm_ with an infinite bound measures it and
        # scales the gradients by exactly 1.
        bound = self.cfg.max_grad_norm if self.cfg.max_grad_norm is not None else math.inf if self.cfg.report_to else None
        if bound is not None:
            grad_norm = float(self.acc.clip_grad_norm_(s.trainable, bound))
        s.optimizer.step()
        s.scheduler.step()
        s.optimizer.zero_grad(set_to_none=True)
        state.global_step += 1
        state.batch_index += len(group)
        epoch_done = state.batch_index >= len(batches)
        if epoch_done:
            state.epoch += 1
            state.batch_index = 0
        dt = time.perf_counter() - t0
        window.seconds += dt
        state.compute_seconds += dt
        window.loss += step_loss
        window.steps += 1
        return grad_norm, epoch_done

    def _accumulate(self, group: list[Any], window: _Window) -> float:
        """Forward and backward over the micro-batches of one step; returns their weighted mean loss."""
        s, data = self.setup, self.job.train_dataset
        batches = [to_device(self.job.collate([data[i] for i in indices]), self.device) for indices in group]
        shares = self._shares(batches)
        step_loss = 0.0
        for k, (indices, batch) in enumerate(zip(group, batches, strict=True)):
            window.tokens += count_tokens(batch)
            no_sync = self.world > 1 and k != len(group) - 1
            replay = s.cache.replay(indices, batch) if s.cache else contextlib.nullcontext()
            with self.acc.no_sync(s.wrapped) if no_sync else contextlib.nullcontext():
                with replay, self._autocast():
                    loss = self.job.loss(s.model_for_loss, batch)
                (loss * shares[k]).backward()
            step_loss += float(loss.detach()) * shares[k]
        return step_loss

    def _shares(self, batches: list[dict[str, Any]]) -> list[float]:
        """Each micro-batch's weight in the step's loss: its ``loss_weight`` (tokens or examples) over the step's.

        A task's ``loss`` is a mean over its batch; weighting the means by what they average over makes the
        accumulated gradient that of one big batch even when micro-batches differ in size. Under DDP the total is
        summed over processes and scaled by the world size, because DDP then averages the gradients.
        """
        weigh = optional(self.job, "loss_weight", JOB_OPTIONAL) or batch_rows
        counts = [float(weigh(batch)) for batch in batches]
        total = sum(counts)
        if self.world > 1:
            summed = self.acc.reduce(torch.tensor([total], device=self.device, dtype=torch.float64), reduction="sum")
            total = float(summed[0]) / self.world
        if total <= 0:  # nothing to learn from in any micro-batch: plain mean (the losses are zero anyway)
            return [1.0 / len(batches)] * len(batches)
        return [count / total for count in counts]

    def _log(self, window: _Window, grad_norm: float | None) -> float:
        """Write the log line of the steps in ``window`` and empty it; returns their mean loss."""
        step = self.state.global_step
        loss_mean, tokens = self._reduce_log(window.loss / window.steps, window.tokens)
        self.state.tokens += tokens
        record = {
            "step": step,
            "epoch": round(step / self.setup.steps_per_epoch, 4),
            "loss": round(loss_mean, 6),
            "lr": self._lr(),
            "tokens_per_second": round(tokens / window.seconds, 2) if window.seconds else 0.0,
        }
        if grad_norm is not None:
            record["grad_norm"] = round(grad_norm, 6)
        self.metrics.write(record)
        self.events.emit("on_log", step, record)
        window.loss, window.steps, window.tokens, window.seconds = 0.0, 0, 0, 0.0
        return loss_mean

    def _after_step(self, epoch_done: bool) -> None:
        cfg, step = self.cfg, self.state.global_step
        if ev.has_eval(self.job) and ((cfg.eval_steps and step % cfg.eval_steps == 0)
                                      or (epoch_done and cfg.eval_each_epoch)):
            self._evaluate()
        if cfg.save_steps and step % cfg.save_steps == 0:
            self._save_checkpoint()

    def _stop_now(self, stop: _StopRequest) -> bool:
        """Whether any process was asked to stop (all processes must agree before a checkpoint)."""
        if self.world == 1:
            return stop.requested
        flag = torch.tensor([1.0 if stop.requested else 0.0], device=self.device)
        return bool(self.acc.reduce(flag, reduction="sum").item() > 0)

    def _autocast(self) -> contextlib.AbstractContextManager:
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16,
                              enabled=self.cfg.precision == "bf16")

    def _lr(self) -> float:
        """The learning rate of the group with the highest base rate (the new parameters')."""
        groups = self.setup.optimizer.param_groups
        base = self.setup.scheduler.base_lrs
        i = max(range(len(groups)), key=lambda j: base[j])
        return float(groups[i]["lr"])

    def _reduce_log(self, loss: float, tokens: int) -> tuple[float, int]:
        if self.world == 1:
            return loss, tokens
        values = torch.tensor([loss, float(tokens)], device=self.device, dtype=torch.float64)
        summed = self.acc.reduce(values, reduction="sum")
        return float(summed[0]) / self.world, int(summed[1])

    # -- evaluation and checkpoints ----------------------------------------------------------------

    def _evaluate(self) -> None:
        """Evaluate, log the metrics, keep the best weights and decide on early stopping."""
        state = self.state
        metrics = ev.evaluate(self.raw, self.job, self.acc, self.cfg.batch_size, self._autocast)
        state.last_metrics = metrics
        state.last_eval_step = state.global_step
        self.metrics.write({"step": state.global_step,
                            "epoch": round(state.global_step / self.setup.steps_per_epoch, 4), **metrics})
        self.events.emit("on_evaluate", state.global_step, dict(metrics))
        if not self.metric_name:
            return
        improved, stop = ev.judge(state, self.metric_name, self.greater, self.cfg.early_stopping_patience)
        if improved:
            if self.acc.is_main_process:
                ev.save_best(self.out, self.raw, self.applied, state)
            self.acc.wait_for_everyone()
        if stop:
            self.stopped_early = True

    def _identity(self) -> dict[str, Any]:
        return st.run_identity(self.cfg.seed, self.fingerprint, self.world, self.setup.plan.global_batch,
                               self.cfg.grad_accum)

    def _save_checkpoint(self) -> Path:
        elapsed = self.state.elapsed_seconds + (time.perf_counter() - self.started)
        s = self.setup
        return st.save(self.acc, self.out, self.raw, s.optimizer, s.scheduler,
                       self.state.to_json(self._identity(), elapsed), self.cfg.save_total_limit)


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
