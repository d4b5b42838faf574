"""The ``question-answering`` task: extractive QA (SQuAD v1.1 and v2.0) with a ``qa_outputs`` span head.

Long contexts are split into overlapping windows (``task.max_length``, ``task.stride``); answers are
mapped to tokens through the fast tokenizer's offsets (``features``); window logits are turned back
into answer texts with the no-answer rule of SQuAD 2.0 (``answers``). Metrics: ``eval_exact_match`` and
``eval_f1`` (SQuAD normalisation, in percent), ``eval_loss``, and HasAns/NoAns breakdowns when the
evaluation data has both kinds of question.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from tunekit.builtins.tasks.question_answering.answers import best_answers
from tunekit.builtins.tasks.question_answering.features import Example, QAFeatures, examples_from_rows, make_features
from tunekit.errors import DataError, UsageError
from tunekit.hookspecs import hookimpl
from tunekit.models import ResolvedModel
from tunekit.options import check, option
from tunekit.tasks import metrics, pieces, rows
from tunekit.tasks.protocol import TaskContext

MODEL_KEYS = ("input_ids", "attention_mask", "token_type_ids")


@dataclass
class QAOptions:
    max_length: int = option(384, "Tokens per window (question + context part).")
    stride: int = option(128, "Tokens shared by two consecutive windows of a long context.")
    max_answer_length: int = option(30, "Longest answer in tokens.")
    n_best: int = option(20, "Start and end candidates considered per window.")
    allow_no_answer: bool | None = option(
        None, "Predict 'no answer' (SQuAD 2.0); default: on when the training data has unanswerable questions.")
    null_score_threshold: float = option(0.0, "No-answer wins when its score beats the best span by more than this.")
    predict_batch_size: int = option(16, "Windows per forward pass in `predict`.")

    def validate(self) -> None:
        check(self.max_length >= 32, f"task.max_length must be at least 32, not {self.max_length}.")
        check(0 <= self.stride < self.max_length // 2,
              f"task.stride must be in [0, max_length/2), not {self.stride} (max_length {self.max_length}).")
        check(self.max_answer_length > 0, "task.max_answer_length must be positive.")
        check(self.n_best > 0, "task.n_best must be positive.")
        check(self.predict_batch_size > 0, "task.predict_batch_size must be positive.")


class QAJob:
    """One extractive-QA run."""

    metric_for_best = "eval_f1"
    greater_is_better = True
    needs_context = True  # predict inputs are (question, context) pairs

    def __init__(self, tokenizer: Any, options: QAOptions, allow_no_answer: bool) -> None:
        pieces.require_fast(tokenizer, "question-answering")
        pieces.ensure_pad_token(tokenizer)
        self.tokenizer = tokenizer
        self.options = options
        self.allow_no_answer = allow_no_answer
        self.head_modules: list[str] = ["qa_outputs"]
        self.train_dataset: Any = None
        self.eval_dataset: Any = None

    def encode(self, data: Any) -> QAFeatures:
        """Windowed features (with answer positions) for raw rows; also what ``evaluate`` maps back."""
        return make_features(self.tokenizer, examples_from_rows(data), self.options.max_length, self.options.stride)

    def collate(self, features: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        pad = self.tokenizer.pad_token_id
        batch = {"input_ids": pieces.pad_stack([f["input_ids"] for f in features], pad),
                 "attention_mask": pieces.pad_stack([[1] * len(f["input_ids"]) for f in features], 0)}
        if "token_type_ids" in features[0]:
            batch["token_type_ids"] = pieces.pad_stack([f["token_type_ids"] for f in features], 0)
        for key in ("start_positions", "end_positions", "feature_index"):
            if all(key in f for f in features):
                batch[key] = torch.tensor([f[key] for f in features], dtype=torch.long)
        return batch

    def build_model(self, source: ResolvedModel, load_kwargs: dict[str, Any]) -> nn.Module:
        from transformers import AutoModelForQuestionAnswering

        model, fresh = pieces.load_with_head(AutoModelForQuestionAnswering, source, load_kwargs,
                                              announce=self.train_dataset is not None)
        if getattr(model.config, "pad_token_id", None) is None:
            model.config.pad_token_id = self.tokenizer.pad_token_id
        if fresh:
            self.head_modules = fresh
        return model

    def _logits(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        out = model(**{k: v for k, v in batch.items() if k in MODEL_KEYS})
        return out.start_logits.float(), out.end_logits.float()

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        start, end = self._logits(model, batch)
        return (F.cross_entropy(start, batch["start_positions"]) + F.cross_entropy(end, batch["end_positions"])) / 2

    def _all_logits(self, model: nn.Module, batches: Iterable[dict[str, torch.Tensor]]
                    ) -> tuple[dict[int, tuple[list[float], list[float]]], float, int]:
        logits: dict[int, tuple[list[float], list[float]]] = {}
        total, count = 0.0, 0
        with pieces.evaluating(model):
            device = pieces.model_device(model)
            for batch in batches:
                batch = pieces.to_device(batch, device)
                start, end = self._logits(model, batch)
                if "start_positions" in batch:
                    total += float((F.cross_entropy(start, batch["start_positions"], reduction="sum")
                                    + F.cross_entropy(end, batch["end_positions"], reduction="sum")) / 2)
                    count += start.shape[0]
                lengths = batch["attention_mask"].sum(-1).tolist()
                for row, index in enumerate(batch["feature_index"].tolist()):
                    n = int(lengths[row])
                    logits[index] = (start[row, :n].tolist(), end[row, :n].tolist())
        return logits, total, count

    def _answers(self, features: QAFeatures, logits: dict[int, tuple[list[float], list[float]]]) -> list[Any]:
        return best_answers(
            features, logits, n_best=self.options.n_best, max_answer_length=self.options.max_answer_length,
            allow_no_answer=self.allow_no_answer, null_threshold=self.options.null_score_threshold,
        )

    def evaluate(self, model: nn.Module, batches: Iterable[dict[str, torch.Tensor]]) -> dict[str, float]:
        features = self.eval_dataset
        if not isinstance(features, QAFeatures):
            raise UsageError("question-answering evaluation needs its eval_dataset built by the task (job.encode).")
        logits, total, count = self._all_logits(model, batches)
        answers = self._answers(features, logits)
        predictions = {ex.id: a.text for ex, a in zip(features.examples, answers, strict=True)}
        golds = {ex.id: ex.answers for ex in features.examples}
        scores = metrics.squad_scores(predictions, golds)
        out = {f"eval_{k}": v for k, v in scores.items()}
        out["eval_loss"] = total / max(count, 1)
        return out

    def predict(self, model: nn.Module, inputs: Sequence[Any]) -> list[dict[str, Any]]:
        """For each (question, context) pair or {"question", "context"} record: the answer text, score and start."""
        examples = [self._example(item, i) for i, item in enumerate(inputs)]
        features = make_features(self.tokenizer, examples, self.options.max_length, self.options.stride,
                                 with_positions=False)
        size = self.options.predict_batch_size
        batches = (self.collate(features.items[i:i + size]) for i in range(0, len(features), size))
        logits, _, _ = self._all_logits(model, batches)
        return [{"answer": a.text, "score": a.score, "start": a.start} for a in self._answers(features, logits)]

    def _example(self, item: Any, i: int) -> Example:
        if isinstance(item, dict) and "question" in item and "context" in item:
            return Example(str(item.get("id", i)), str(item["question"]), str(item["context"]), [], [])
        if isinstance(item, (tuple, list)) and len(item) == 2:
            return Example(str(i), str(item[0]), str(item[1]), [], [])
        raise UsageError("question-answering inputs are (question, context) pairs or records with question and context.")

    def save(self, folder: str | Path) -> None:
        pieces.write_state(folder, QuestionAnswering.name, {
            "allow_no_answer": self.allow_no_answer, "head_modules": self.head_modules,
        })


class QuestionAnswering:
    """Extractive question answering (SQuAD v1.1/v2.0): exact match and F1."""

    name = "question-answering"
    description = "Extractive QA over a context (SQuAD v1.1 and v2.0 with no-answer); exact match and F1."
    options_class = QAOptions

    def prepare(self, ctx: TaskContext) -> QAJob:
        if ctx.train is None:
            raise DataError("the question-answering task needs training data; pass --data FILE.")
        examples_from_rows(ctx.train.select(range(min(1, len(ctx.train)))))  # shape check before splitting
        train, validation = rows.train_and_validation(ctx)
        allow = ctx.options.allow_no_answer
        if allow is None:
            allow = any(not (a or {}).get("text") if isinstance(a, dict) else not a for a in train["answers"])
        job = QAJob(ctx.tokenizer, ctx.options, bool(allow))
        job.train_dataset = job.encode(train)
        job.eval_dataset = job.encode(validation)
        return job

    def restore(self, ctx: TaskContext, folder: str | Path) -> QAJob:
        state = pieces.read_state(folder, self.name)
        allow = ctx.options.allow_no_answer
        job = QAJob(ctx.tokenizer, ctx.options, bool(state.get("allow_no_answer") if allow is None else allow))
        job.head_modules = list(state.get("head_modules") or ["qa_outputs"])
        return job


@hookimpl
def register_tasks(register: Any) -> None:
    register(QuestionAnswering())
