"""What a task's final evaluation saw, kept in the run folder as ``eval_details.json`` for the report.

:class:`DetailsRecorder` is a run listener: after each evaluation it asks the job for ``eval_details()`` (an
optional job method, ``JOB_OPTIONAL``), keeps the sections of the evaluation the run keeps (the best one when the
engine restores the best weights, else the last one) and writes them when training ends.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from tunekit import files
from tunekit.protocols import optional
from tunekit.tasks.protocol import JOB_OPTIONAL

log = logging.getLogger("tunekit.report")

EVAL_DETAILS_FILE = "eval_details.json"


write_atomic = files.write_text  # the name the report module imports


class DetailsRecorder:
    """Keeps the evaluation details of the evaluation whose weights the run ends with; writes them at the end."""

    def __init__(self, job: Any, out: Path, metric_name: str | None) -> None:
        from tunekit.engine.evaluate import metric_sense

        self.job = job
        self.out = Path(out)
        self.metric_name = metric_name or getattr(job, "metric_for_best", None)
        self.greater = metric_sense(self.metric_name, job) if self.metric_name else True
        self.last: list[dict[str, Any]] | None = None
        self.best: list[dict[str, Any]] | None = None
        self._best_value: float | None = None

    def on_evaluate(self, step: int, metrics: dict[str, float]) -> None:
        details = optional(self.job, "eval_details", JOB_OPTIONAL)
        if details is None:
            return
        try:
            sections = list(details())
        except Exception as exc:  # a plugin's report helper must never stop training
            log.warning("the task's eval_details failed (%s: %s); the report shows no task details",
                        type(exc).__name__, exc)
            return
        self.last = sections
        value = metrics.get(self.metric_name) if self.metric_name else None
        if value is not None and (self._best_value is None
                                  or (value > self._best_value if self.greater else value < self._best_value)):
            self._best_value, self.best = value, sections

    def on_train_end(self, result: Any) -> None:
        sections = self.best if getattr(result, "restored_best", False) and self.best is not None else self.last
        if sections is None:
            return
        try:
            write_atomic(self.out / EVAL_DETAILS_FILE, json.dumps(sections, indent=1, default=str) + "\n")
        except (OSError, TypeError, ValueError) as exc:
            log.warning("could not write %s: %s", EVAL_DETAILS_FILE, exc)
