"""What a task is: the head, preprocessing, batching, loss, metrics and prediction for one kind of problem.

A task is any object with (a ``typing.Protocol``; no base class to inherit):

- ``name`` (str), ``description`` (one line), ``options_class`` (a dataclass; ``tunekit.options``);
- ``prepare(ctx: TaskContext) -> TaskJob``: reads the rows the dataset readers produced, learns what it
  needs from the training split (label names, ...) and returns a ``TaskJob`` for one run;
- ``restore(ctx: TaskContext, folder) -> TaskJob``: the same job rebuilt from a finished run folder
  (what ``TaskJob.save`` wrote), with no training data, for ``eval``, ``predict``, ``generate``.

The engine only ever sees a ``TaskJob``. A task knows tokenizers, heads, batches and metrics; it never
knows which method is applied. The optional attributes of a job the core reads are declared, with
their defaults, in ``JOB_OPTIONAL`` (docs/plugins.md lists the same table).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from tunekit.models import ResolvedModel
from tunekit.protocols import OptionalAttr

JOB_OPTIONAL: dict[str, OptionalAttr] = {
    "eval_order_free": OptionalAttr(False, "True when the metrics do not depend on the order of the examples: the "
                                    "engine then batches evaluation by length (less padding). Leave it unset when "
                                    "`evaluate` maps results back by position, as question answering does"),
    "options": OptionalAttr(None, "the task's parsed options; `predict`/`generate` flags such as `--max-new-tokens` "
                            "set the field of the same name and are refused when there is none"),
    "generate": OptionalAttr(None, "`generate(model, items, streamer=None) -> list[str]`: answers for prompts; "
                             "`tunekit generate`, `tunekit chat` and held-out scoring need it (causal-lm has it); "
                             "absent means those commands refuse the run", callable=True),
    "loss_weight": OptionalAttr(None, "`loss_weight(batch) -> int`: how many items `loss(model, batch)` averages "
                                "over (causal-lm: the learned tokens); gradient accumulation weights each "
                                "micro-batch's loss by it. Absent means the batch's number of examples",
                                callable=True),
    "needs_context": OptionalAttr(False, "True when `predict` inputs are (text, context) pairs, as in question "
                                  "answering: `tunekit predict` then refuses texts given without `--context`"),
    "eval_details": OptionalAttr(None, "`eval_details() -> list[dict]`: what the most recent `evaluate` saw, as "
                                 "generic report sections (table, matrix, examples; `tunekit.report.sections` builds "
                                 "them); the runner writes those of the kept evaluation to eval_details.json and "
                                 "report.html shows them. Absent means the report shows metrics and curves only",
                                 callable=True),
    "labels": OptionalAttr(None, "the label names, in the order of the head's output rows (classification and "
                           "token classification); `--init-from` maps a parent run's head rows by these names. None "
                           "means the task has no label set"),
    "prompt_ids": OptionalAttr(None, "`prompt_ids(item) -> list[int]`: the token ids `generate` feeds the model for one "
                               "prompt; `tunekit serve` counts them as a request's prompt tokens. Absent means the "
                               "server reports 0 prompt tokens", callable=True),
}
"""Optional attributes of a ``TaskJob``: name -> default and meaning (the one declaration of them)."""


@dataclass
class TaskContext:
    """What a task gets from the run: the tokenizer, the parsed options, the data section and the rows."""

    tokenizer: Any
    options: Any
    data: Any  # tunekit.config.DataConfig: column names, header, val_split, ...
    train: Any = None  # datasets.Dataset of raw rows from the dataset reader, or None
    validation: Any = None  # datasets.Dataset or None
    seed: int = 0


@runtime_checkable
class TaskJob(Protocol):
    head_modules: list[str]
    """Module names this task trains: the head created fresh for it, plus any pretrained module the task trains
    with the head (sequence classification lists an encoder's ``pooler`` when ``task.train_pooler`` is on).

    They stay trainable whatever the method, are saved with the method's weights, and are kept out of
    quantization (``--quantize int8`` loads them in float; a leaf name such as ``pooler`` covers the module and
    everything beneath it). Before ``build_model`` this may be a guess by leaf name (what a quantizer must skip);
    after it, the exact full names.
    """

    metric_for_best: str
    """The metric key (e.g. ``eval_accuracy``) used to keep the best checkpoint; ``greater_is_better`` says its sense."""

    greater_is_better: bool

    train_dataset: Any  # a sized sequence of feature dicts (tokenized), or None after restore
    eval_dataset: Any

    def build_model(self, source: ResolvedModel, load_kwargs: dict[str, Any]) -> nn.Module:
        """Load the pretrained model with this task's head (``load_kwargs`` come from a quantizer, may be empty)."""

    def encode(self, rows: Any) -> Any:
        """Tokenize raw rows (a ``datasets.Dataset`` from a reader) into features like ``eval_dataset``.

        ``tunekit eval`` sets ``job.eval_dataset = job.encode(rows)`` on a restored job, then evaluates.
        """

    def collate(self, features: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """Batch features with dynamic padding."""

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The training loss for one batch."""

    def evaluate(self, model: nn.Module, batches: Iterable[dict[str, torch.Tensor]]) -> dict[str, float]:
        """Metrics over ``eval_dataset`` (batched by the engine), keys prefixed ``eval_`` (``eval_loss`` too)."""

    def predict(self, model: nn.Module, inputs: Sequence[Any]) -> list[Any]:
        """Human-readable predictions for raw inputs (texts, question/context pairs, ...)."""

    def save(self, folder: str | Path) -> None:
        """Write what ``restore`` needs (label names, ...) as JSON into ``folder``.

        The runner calls it before training and again after it, so state the job learns while evaluating
        (question answering's tuned no-answer threshold) reaches the run folder.
        """


@runtime_checkable
class Task(Protocol):
    name: str
    description: str
    options_class: type

    def prepare(self, ctx: TaskContext) -> TaskJob: ...

    def restore(self, ctx: TaskContext, folder: str | Path) -> TaskJob: ...
