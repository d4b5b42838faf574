"""The ``question-answering`` task: extractive QA (SQuAD v1.1 and v2.0) with a ``qa_outputs`` span head.

Long contexts are split into overlapping windows (``task.max_length``, ``task.stride``); answers are
mapped to tokens through the fast tokenizer's offsets (``features``); window logits are turned back
into answer texts with the no-answer rule of SQuAD 2.0 (``answers``). Whether a prediction may be "no
answer" follows the evaluation data (unless ``task.allow_no_answer`` says): SQuAD v1.1-style data, with no
unanswerable question, is answered and scored with spans only. Metrics: ``eval_exact_match`` and ``eval_f1``
(SQuAD normalisation, in percent), ``eval_loss``; on data with unanswerable questions also the official
SQuAD 2.0 figures (``squad_v2``): HasAns/NoAns scores and counts and the best no-answer threshold, which the
run keeps for ``predict``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tunekit.builtins.tasks.question_answering.answers import Answer, best_answers
from tunekit.builtins.tasks.question_answering.features import Example, QAFeatures, examples_from_rows, make_features
from tunekit.builtins.tasks.question_answering.squad_v2 import squad_v2_report
from tunekit.errors import DataError, UsageError
from tunekit.hookspecs import hookimpl
from tunekit.models import ResolvedModel
from tunekit.options import check, option
from tunekit.report import sections
from tunekit.tasks import metrics, pieces, rows
from tunekit.tasks.protocol import TaskContext

log = logging.getLogger("tunekit.tasks.question_answering")

MODEL_KEYS = ("input_ids", "attention_mask", "token_type_ids")


def has_unanswerable(examples: Sequence[Example]) -> bool:
    """True when some question has no gold answer (SQuAD 2.0 "impossible")."""
    return any(not ex.answers for ex in examples)


@dataclass
class QAOptions:
    max_length: int = option(384, "Tokens per window (question + context part).")
    stride: int = option(128, "Tokens shared by two consecutive windows of a long context.")
    max_answer_length: int = option(30, "Longest answer in tokens.")
    n_best: int = option(20, "Start and end candidates considered per window.")
    allow_no_answer: bool | None = option(
        None, "Allow 'no answer' predictions (SQuAD 2.0); default: on when the evaluation data has unanswerable "
              "questions, off (spans only) when it has none.")
    null_score_threshold: float | None = option(
        None, "'No answer' wins when its score beats the best span's by more than this; default: the threshold "
              "with the best F1 on the validation set, found in training (0.0 while training).")
    train_unanswerable: bool | None = option(
        None, "Train on unanswerable questions (their target is the first token); default: only when 'no answer' "
              "is allowed, so spans-only evaluation trains on answerable questions only.")
    zero_init_head: bool = option(
        True, "Start a fresh span head at zero (every position equally likely) instead of transformers' random "
              "draw, whose noise hides what a short run learns.")
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

    def __init__(self, tokenizer: Any, options: QAOptions, allow_no_answer: bool,
                 tuned_threshold: float | None = None) -> None:
        pieces.require_fast(tokenizer, "question-answering")
        pieces.ensure_pad_token(tokenizer)
        self.tokenizer = tokenizer
        self.options = options
        self.allow_no_answer = allow_no_answer  # for `predict`: decided on the validation data
        self.tuned_threshold = tuned_threshold  # the run's no-answer threshold (restored runs)
        self.found_threshold: float | None = None  # best_f1_thresh of the best evaluation so far
        self.head_modules: list[str] = ["qa_outputs"]
        self.train_dataset: Any = None
        self.eval_dataset: Any = None
        self._best_f1: float | None = None
        self._told_spans_only = False
        self._seen: tuple[list[Example], list[Answer], dict[str, float]] = ([], [], {})  # for eval_details

    @property
    def null_threshold(self) -> float:
        """The no-answer threshold in use: ``task.null_score_threshold``, else the run's tuned one, else 0.0."""
        if self.options.null_score_threshold is not None:
            return float(self.options.null_score_threshold)
        return self.tuned_threshold if self.tuned_threshold is not None else 0.0

    def allow_for(self, examples: Sequence[Example]) -> bool:
        """Whether answers to ``examples`` may be "no answer": ``task.allow_no_answer``, else what the data has."""
        if self.options.allow_no_answer is not None:
            return bool(self.options.allow_no_answer)
        if has_unanswerable(examples):
            return True
        if not self._told_spans_only:
            log.info("the evaluation data has no unanswerable questions (SQuAD v1.1 style), so it is answered and "
                     "scored with spans only; set task.allow_no_answer=true to allow 'no answer' anyway")
            self._told_spans_only = True
        return False

    def encode(self, data: Any) -> QAFeatures:
        """Windowed features (with answer positions) for raw rows; also what ``evaluate`` maps back."""
        return self.featurize(examples_from_rows(data))

    def featurize(self, examples: list[Example]) -> QAFeatures:
        """Windowed features (with answer positions) for examples."""
        return make_features(self.tokenizer, examples, self.options.max_length, self.options.stride)

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
            if self.train_dataset is not None and self.options.zero_init_head:
                _zero_init(model, fresh)
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

    def _answers(self, features: QAFeatures, logits: dict[int, tuple[list[float], list[float]]],
                 allow_no_answer: bool) -> list[Answer]:
        return best_answers(
            features, logits, n_best=self.options.n_best, max_answer_length=self.options.max_answer_length,
            allow_no_answer=allow_no_answer, null_threshold=self.null_threshold,
        )

    def evaluate(self, model: nn.Module, batches: Iterable[dict[str, torch.Tensor]]) -> dict[str, float]:
        features = self.eval_dataset
        if not isinstance(features, QAFeatures):
            raise UsageError("question-answering evaluation needs its eval_dataset built by the task (job.encode).")
        logits, total, count = self._all_logits(model, batches)
        answers = self._answers(features, logits, self.allow_for(features.examples))
        golds = [ex.answers for ex in features.examples]
        if has_unanswerable(features.examples):
            scores = squad_v2_report(answers, golds)
            self._keep_threshold(scores["f1"], scores["best_f1_thresh"])
        else:
            keys = [str(i) for i in range(len(golds))]
            scores = metrics.squad_scores({k: a.text for k, a in zip(keys, answers, strict=True)},
                                          dict(zip(keys, golds, strict=True)))
        out = {f"eval_{k}": v for k, v in scores.items()}
        out["eval_loss"] = total / max(count, 1)
        self._seen = (list(features.examples), answers, dict(scores))
        return out

    def eval_details(self, samples: int = 15) -> list[dict[str, Any]]:
        """The last evaluation for the report: exact match and F1, and the first answers against the gold ones."""
        examples, answers, scores = self._seen
        figures = [[k, v] for k, v in scores.items()]
        rows, marks = [], []
        for example, answer in list(zip(examples, answers, strict=True))[:samples]:
            gold = [a for a in example.answers if a] or [""]
            f1 = max(metrics.squad_f1(answer.text, g) for g in gold)
            rows.append([example.question, " | ".join(gold) or "(no answer)", answer.text or "(no answer)",
                         max(metrics.squad_exact(answer.text, g) for g in gold), f1])
            marks.append("good" if f1 == 1.0 else "bad" if f1 == 0.0 else "")
        return [sections.table("SQuAD figures (exact match and F1 in percent)", ["figure", "value"], figures),
                sections.examples("Sample answers", ["question", "gold answers", "predicted", "exact", "F1"], rows,
                                  marks, note=f"the first {len(rows)} of {len(examples)} evaluation questions")]

    def _keep_threshold(self, f1: float, threshold: float) -> None:
        """Keep the threshold of the evaluation the run keeps (best ``eval_f1``, as the engine picks by default).

        The runner saves the job again after training, so the run folder's state then holds it for ``predict``.
        """
        if self._best_f1 is not None and f1 <= self._best_f1:
            return
        self._best_f1, self.found_threshold = f1, threshold

    def predict(self, model: nn.Module, inputs: Sequence[Any]) -> list[dict[str, Any]]:
        """For each (question, context) pair or {"question", "context"} record: the answer, its score and start.

        Where the question is left unanswered, ``answer`` is empty and ``span`` and ``null_margin`` (how far
        "no answer" beat that span) say why.
        """
        examples = [self._example(item, i) for i, item in enumerate(inputs)]
        features = make_features(self.tokenizer, examples, self.options.max_length, self.options.stride,
                                 with_positions=False)
        size = self.options.predict_batch_size
        batches = (self.collate(features.items[i:i + size]) for i in range(0, len(features), size))
        logits, _, _ = self._all_logits(model, batches)
        return [_prediction(a) for a in self._answers(features, logits, self.allow_no_answer)]

    def _example(self, item: Any, i: int) -> Example:
        if isinstance(item, dict) and "question" in item and "context" in item:
            return Example(str(item.get("id", i)), str(item["question"]), str(item["context"]), [], [])
        if isinstance(item, (tuple, list)) and len(item) == 2:
            return Example(str(i), str(item[0]), str(item[1]), [], [])
        raise UsageError("question-answering inputs are (question, context) pairs or records with question and context.")

    def save(self, folder: str | Path) -> None:
        threshold = self.found_threshold if self.found_threshold is not None else self.tuned_threshold
        pieces.write_state(folder, QuestionAnswering.name, {
            "allow_no_answer": self.allow_no_answer, "head_modules": self.head_modules,
            "null_score_threshold": threshold,
        })


def _zero_init(model: nn.Module, names: Sequence[str]) -> None:
    """Start the fresh span head at zero: every position equally likely, so what the head learns shows at once.

    transformers draws it from N(0, initializer_range); on a 384-wide encoder that puts random logits of about
    0.4 on every token, as large as what a short run at 5e-5 learns (Adam moves each weight about lr per step),
    so the spans of a short run stay close to a random head's. A zero start is safe for this single linear
    layer (its rows get different gradients from the different targets; AdamW's steps do not depend on the
    weights' scale, so the encoder below still learns from the second step on).
    """
    with torch.no_grad():
        for name in names:
            module = model.get_submodule(name)
            if name.rsplit(".", 1)[-1] == "qa_outputs" and isinstance(module, nn.Linear):  # nothing else fresh
                for param in module.parameters():
                    param.zero_()


def _training_examples(examples: list[Example], options: QAOptions, allow_no_answer: bool) -> list[Example]:
    """The training questions: without the unanswerable ones when no prediction may be "no answer".

    Each unanswerable question teaches the span head to put its weight on the first token, which a
    spans-only evaluation never picks; on SQuAD 2.0 (about half unanswerable) that leaves the span scores
    of a short run close to an untrained head's. ``task.train_unanswerable`` overrides the choice.
    """
    keep = options.train_unanswerable
    if keep is None:
        keep = allow_no_answer
    if keep or not has_unanswerable(examples):
        return examples
    answerable = [ex for ex in examples if ex.answers]
    if not answerable:
        raise DataError("every training question is unanswerable and the evaluation is scored with spans only, so "
                        "there is nothing to train on; give answerable questions or set task.train_unanswerable=true.")
    log.info("spans-only evaluation: training on the %d answerable questions and leaving out the %d unanswerable "
             "ones; set task.train_unanswerable=true to train on them too", len(answerable),
             len(examples) - len(answerable))
    return answerable


def _rounded(value: float) -> float | None:
    return round(value, 4) if np.isfinite(value) else None


def _prediction(answer: Answer) -> dict[str, Any]:
    out: dict[str, Any] = {"answer": answer.text, "score": _rounded(answer.score), "start": answer.start}
    if answer.abstain:
        out["span"] = answer.span
        out["null_margin"] = _rounded(answer.margin)
    return out


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
        job = QAJob(ctx.tokenizer, ctx.options, allow_no_answer=False)
        job.eval_dataset = job.encode(validation)
        job.allow_no_answer = job.allow_for(job.eval_dataset.examples)
        job.train_dataset = job.featurize(_training_examples(examples_from_rows(train), ctx.options, job.allow_no_answer))
        return job

    def restore(self, ctx: TaskContext, folder: str | Path) -> QAJob:
        state = pieces.read_state(folder, self.name)
        allow = ctx.options.allow_no_answer
        threshold = state.get("null_score_threshold")
        job = QAJob(ctx.tokenizer, ctx.options, bool(state.get("allow_no_answer") if allow is None else allow),
                    float(threshold) if threshold is not None else None)
        job.head_modules = list(state.get("head_modules") or ["qa_outputs"])
        return job


@hookimpl
def register_tasks(register: Any) -> None:
    register(QuestionAnswering())
