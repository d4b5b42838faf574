"""Where metrics go: ``metrics.jsonl`` (one JSON object per logging step and per evaluation) and a
loss-curve PNG (``loss.png``, when matplotlib is installed). Experiment trackers (TensorBoard, W&B,
MLflow, ...) are fed from the engine's events by ``tunekit.runs.trackers``."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

log = logging.getLogger("tunekit.engine")

METRICS_FILE = "metrics.jsonl"
LOSS_PLOT = "loss.png"


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


class MetricsLog:
    """Appends metric records to ``<out_dir>/metrics.jsonl``."""

    def __init__(self, out_dir: Path, enabled: bool = True) -> None:
        self.path = Path(out_dir) / METRICS_FILE
        self.out_dir = Path(out_dir)
        self.enabled = enabled

    def truncate_after(self, step: int) -> None:
        """Drop records of steps after ``step`` (written by a run that was then resumed from ``step``)."""
        if not self.enabled or not self.path.is_file():
            return
        kept = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a line cut short by a kill
            if int(record.get("step", 0)) <= step:
                kept.append(line)
        self.path.write_text("".join(k + "\n" for k in kept), encoding="utf-8")

    def reset(self) -> None:
        if self.enabled and self.path.exists():
            self.path.unlink()

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({k: _clean(v) for k, v in record.items()}) + "\n")

    def records(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        out = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def plot(self) -> Path | None:
        """Write ``loss.png`` (training loss, and evaluation loss when present); None without matplotlib."""
        if not self.enabled:
            return None
        return plot_loss(self.records(), self.out_dir / LOSS_PLOT)


def plot_loss(records: list[dict[str, Any]], path: Path) -> Path | None:
    """Plot ``loss`` and ``eval_loss`` against the step into ``path``."""
    try:
        # A bare Figure (no pyplot) renders with Agg and leaves the user's backend alone.
        from matplotlib.figure import Figure
    except ImportError:
        log.info("matplotlib is not installed; no loss curve written (pip install matplotlib)")
        return None
    train = [(r["step"], r["loss"]) for r in records if isinstance(r.get("loss"), (int, float))]
    evals = [(r["step"], r["eval_loss"]) for r in records if isinstance(r.get("eval_loss"), (int, float))]
    if not train and not evals:
        return None
    fig = Figure(figsize=(6, 4), dpi=100)
    ax = fig.subplots()
    if train:
        ax.plot([s for s, _ in train], [v for _, v in train], label="train loss")
    if evals:
        ax.plot([s for s, _ in evals], [v for _, v in evals], marker="o", label="eval loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    return path
