"""The training progress display: a rich progress bar on a terminal, plain log lines otherwise.

It is an engine listener (``tunekit.engine.events``): step, loss, learning rate, tokens/s and ETA
after every logging step, and the metrics of every evaluation.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


def _fmt_eta(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def _fmt_metrics(metrics: dict[str, Any]) -> str:
    return "  ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(metrics.items())
                     if k not in ("step", "epoch"))


class PlainProgress:
    """One line per logging step and per evaluation (for logs, pipes and CI)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self.total = 0
        self.start_step = 0
        self.started = 0.0

    def _line(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def on_train_begin(self, total_steps: int, start_step: int) -> None:
        self.total, self.start_step, self.started = total_steps, start_step, time.monotonic()
        where = f" (resuming at step {start_step})" if start_step else ""
        self._line(f"training: {total_steps} steps{where}")

    def eta(self, step: int) -> float:
        done = step - self.start_step
        if done <= 0:
            return 0.0
        return (time.monotonic() - self.started) / done * (self.total - step)

    def on_log(self, step: int, metrics: dict[str, Any]) -> None:
        pct = 100.0 * step / max(self.total, 1)
        self._line(
            f"step {step}/{self.total} ({pct:.0f}%)  loss {metrics.get('loss', float('nan')):.4f}  "
            f"lr {metrics.get('lr', 0.0):.2e}  tok/s {metrics.get('tokens_per_second', 0.0):,.0f}  "
            f"eta {_fmt_eta(self.eta(step))}"
        )

    def on_evaluate(self, step: int, metrics: dict[str, Any]) -> None:
        self._line(f"eval @ step {step}: {_fmt_metrics(metrics)}")

    def on_train_end(self, result: Any) -> None:
        early = ", stopped early" if getattr(result, "stopped_early", False) else ""
        self._line(f"training finished: {result.steps} steps in {result.train_seconds:.1f} s{early}")


class RichProgress(PlainProgress):
    """A live progress bar with loss, lr and tokens/s; evaluations print above it."""

    def __init__(self, console: Console | None = None) -> None:
        super().__init__()
        self.console = console or Console()
        self.progress = Progress(
            TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}  lr {task.fields[lr]}  tok/s {task.fields[tps]}"),
            TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
            console=self.console, transient=False,
        )
        self.task: Any = None

    def _line(self, text: str) -> None:
        self.console.print(text, highlight=False)

    def on_train_begin(self, total_steps: int, start_step: int) -> None:
        self.total, self.start_step, self.started = total_steps, start_step, time.monotonic()
        self.progress.start()
        self.task = self.progress.add_task("train", total=total_steps, completed=start_step,
                                           loss="-", lr="-", tps="-")

    def on_log(self, step: int, metrics: dict[str, Any]) -> None:
        if self.task is None:
            return
        self.progress.update(self.task, completed=step, loss=f"{metrics.get('loss', float('nan')):.4f}",
                             lr=f"{metrics.get('lr', 0.0):.2e}", tps=f"{metrics.get('tokens_per_second', 0.0):,.0f}")

    def on_evaluate(self, step: int, metrics: dict[str, Any]) -> None:
        self.progress.console.print(f"eval @ step {step}: {_fmt_metrics(metrics)}", highlight=False)

    def on_train_end(self, result: Any) -> None:
        if self.task is not None:
            self.progress.update(self.task, completed=result.steps)
        self.progress.stop()
        super().on_train_end(result)

    def on_train_abort(self, error: BaseException) -> None:
        self.progress.stop()


def progress_listener(console: Console | None = None) -> PlainProgress:
    """A rich progress bar when stdout is a terminal, plain lines otherwise."""
    if console is None:
        from tunekit.cli import console as cli_console

        console = cli_console
    if console.is_terminal:
        return RichProgress(console)
    return PlainProgress(console.file)
