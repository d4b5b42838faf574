"""tunekit's side of every comparison: drive ``tunekit.run(dict_config)`` and time its phases with a listener."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any


class PhaseClock:
    """A tunekit listener that notes when training starts, when each optimiser-step log and evaluation lands."""

    def __init__(self) -> None:
        self.method_applied: float | None = None
        self.train_begin: float | None = None
        self.last_log: float | None = None
        self.evaluations: list[float] = []
        self.last_step = 0
        self.total_steps = 0

    def on_method_applied(self, report: Any) -> None:
        """The runner's event just before it hands the model to the engine (before any frozen-layer cache)."""
        self.method_applied = time.perf_counter()

    def on_train_begin(self, total_steps: int, start_step: int) -> None:
        self.train_begin = time.perf_counter()
        self.total_steps = total_steps

    def on_log(self, step: int, metrics: dict[str, float]) -> None:
        self.last_log = time.perf_counter()
        self.last_step = step

    def on_evaluate(self, step: int, metrics: dict[str, float]) -> None:
        self.evaluations.append(time.perf_counter())


def warm_up() -> None:
    """Import tunekit (runner, engine) and load its plugins before the clock starts.

    The peers' side imports transformers' Trainer and PEFT / adapters before its clock starts too; modules
    either side imports lazily while running (the model's modeling file, datasets) count on both sides.
    """
    import tunekit
    import tunekit.engine  # noqa: F401 (the analogue of importing the Trainer)
    import tunekit.runs.runner  # noqa: F401

    logging.getLogger("tunekit").setLevel(logging.WARNING)
    tunekit.registries()


def run(config: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """One ``tunekit.run``; returns run/train timings, final metrics and parameter counts."""
    import tunekit

    warm_up()
    config = {**config, "output": {"dir": str(workdir / "run"), **config.get("output", {})}}
    clock = PhaseClock()
    start = time.perf_counter()
    result = tunekit.run(config, listeners=[clock])
    run_seconds = time.perf_counter() - start
    summary = result.summary
    out: dict[str, Any] = {
        "run_seconds": round(run_seconds, 3),
        "trainable_params": summary.get("trainable_params"),
        "steps": clock.last_step,
        "engine_train_seconds": summary.get("train_seconds"),
        "engine_tokens_per_second": summary.get("tokens_per_second"),
        "metrics": {k: v for k, v in result.metrics.items() if isinstance(v, (int, float))},
        "output_dir": str(result.output_dir),
    }
    if clock.train_begin is not None and clock.last_log is not None:
        # From the hand-over to the engine (so the engine's set-up and any frozen-layer cache count) to the last
        # optimiser step's log line: the training epochs, without the final evaluation.
        began = clock.method_applied if clock.method_applied is not None else clock.train_begin
        out["train_seconds"] = round(clock.last_log - began, 3)
        out["engine_setup_seconds"] = round(clock.train_begin - began, 3)
        out["prepare_seconds"] = round(began - start, 3)
        if clock.evaluations and clock.evaluations[-1] > clock.last_log:
            out["eval_seconds"] = round(clock.evaluations[-1] - clock.last_log, 3)
    if "eval_accuracy" in result.metrics:
        out["accuracy"] = round(float(result.metrics["eval_accuracy"]), 4)
    if "eval_loss" in result.metrics:
        out["tunekit_eval_loss"] = round(float(result.metrics["eval_loss"]), 4)
    return out
