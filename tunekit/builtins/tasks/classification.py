"""The ``sequence-classification`` task: one label per text (or text pair), encoder or decoder models.

Labels may be strings or integers; their names are kept (in the model config's ``id2label`` and in
``task.json``) so predictions print them. Integer-like labels are ordered numerically, so a file
with labels 0/1 keeps 0 -> "0" and 1 -> "1". Decoder models (GPT-2, Llama) get pad = EOS when they
have no pad token, and ``config.pad_token_id`` is set so transformers pools the last real token.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from tunekit.errors import DataError, UsageError
from tunekit.hookspecs import hookimpl
from tunekit.models import ResolvedModel
from tunekit.options import check, option
from tunekit.report import sections
from tunekit.tasks import metrics, pieces, rows
from tunekit.tasks.protocol import TaskContext

TEXT_COLUMNS = ("sentence", "text", "sentence1", "question1", "premise", "review", "content", "document", "input")
PAIR_COLUMNS = {"sentence1": "sentence2", "question1": "question2", "premise": "hypothesis"}
LABEL_COLUMNS = ("label", "labels", "class", "category", "target")
HEAD_GUESS = ["classifier", "score"]  # refined to the real fresh modules once the model is loaded


@dataclass
class ClassificationOptions:
    max_length: int = option(256, "Longest input in tokens; longer texts are truncated.")
    predict_batch_size: int = option(32, "Texts per forward pass in `predict`.")
    train_pooler: bool = option(
        True, "Train an encoder's pooler (the dense layer over the first token) together with the classifier. "
        "Sentence-embedding checkpoints such as all-MiniLM ship a pooler never trained for classification, and a "
        "frozen one leaves adapters and feature extraction near chance.")

    def validate(self) -> None:
        check(self.max_length > 1, f"task.max_length must be above 1, not {self.max_length}.")
        check(self.predict_batch_size > 0, "task.predict_batch_size must be positive.")


def _label_key(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    return text or None


def _ordered(names: Iterable[str]) -> list[str]:
    names = set(names)
    try:
        return sorted(names, key=lambda n: (int(n), n))
    except ValueError:
        return sorted(names)


def _poolers(model: nn.Module) -> list[str]:
    """The pooler modules (``bert.pooler``, ``roberta.pooler``, ...) of an encoder that has one and uses it."""
    return [name for name, module in model.named_modules()
            if name.rsplit(".", 1)[-1] == "pooler" and any(True for _ in module.parameters())]


class ClassificationJob:
    """One sequence-classification run: label names, columns, tokenized splits, loss and metrics."""

    metric_for_best = "eval_accuracy"
    greater_is_better = True
    eval_order_free = True  # metrics aggregate over all examples: evaluation may batch them by length

    def __init__(self, tokenizer: Any, options: ClassificationOptions, labels: list[str],
                 text_column: str | None, pair_column: str | None, label_column: str | None) -> None:
        self.tokenizer = tokenizer
        self.options = options
        self.labels = labels
        self.label2id = {name: i for i, name in enumerate(labels)}
        self.text_column = text_column
        self.pair_column = pair_column
        self.label_column = label_column
        # Before loading, a guess by name (enough for a quantizer's skip list); exact after build_model.
        self.head_modules: list[str] = list(HEAD_GUESS) + (["pooler"] if options.train_pooler else [])
        self.train_dataset: Any = None
        self.eval_dataset: Any = None
        self._seen: tuple[list[int], list[int], list[tuple[float, list[int], int, int]]] = ([], [], [])
        pieces.ensure_pad_token(tokenizer)

    # --- data -------------------------------------------------------------------------------

    def encode(self, data: Any, with_labels: bool = True) -> list[dict[str, Any]]:
        """Tokenize raw rows (a ``datasets.Dataset``) into features; labels must be known names."""
        text_col = rows.pick_column(data, self.text_column, TEXT_COLUMNS, "text", "data.text_column")
        texts = _texts(data, text_col)
        pair_col = rows.pick_column(data, self.pair_column, (), "text pair", "data.text_pair_column", required=False)
        pairs = _texts(data, pair_col) if pair_col else None
        enc = self.tokenizer(texts, pairs, truncation=True, max_length=self.options.max_length)
        keys = [k for k in enc.keys() if k in ("input_ids", "attention_mask", "token_type_ids")]
        features = [{k: enc[k][i] for k in keys} for i in range(len(texts))]
        if with_labels:
            label_col = rows.pick_column(data, self.label_column, LABEL_COLUMNS, "label", "data.label_column")
            for i, value in enumerate(data[label_col]):
                key = _label_key(value)
                if key is None:
                    raise DataError(f"row {i + 1} has an empty label in column {label_col!r}; fill it in or drop the row.")
                if key not in self.label2id:
                    raise DataError(
                        f"row {i + 1} has the label {key!r}, which the training data never had "
                        f"(known: {', '.join(self.labels)}); fix the label or add training examples of it."
                    )
                features[i]["labels"] = self.label2id[key]
        return features

    def collate(self, features: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        pad = self.tokenizer.pad_token_id
        batch = {"input_ids": pieces.pad_stack([f["input_ids"] for f in features], pad)}
        batch["attention_mask"] = pieces.pad_stack([[1] * len(f["input_ids"]) for f in features], 0)
        if "token_type_ids" in features[0]:
            batch["token_type_ids"] = pieces.pad_stack(
                [f.get("token_type_ids") or [0] * len(f["input_ids"]) for f in features], 0)
        if all("labels" in f for f in features):
            batch["labels"] = torch.tensor([f["labels"] for f in features], dtype=torch.long)
        return batch

    # --- model ------------------------------------------------------------------------------

    def build_model(self, source: ResolvedModel, load_kwargs: dict[str, Any]) -> nn.Module:
        from transformers import AutoModelForSequenceClassification

        model, fresh = pieces.load_with_head(
            AutoModelForSequenceClassification, source, load_kwargs, announce=self.train_dataset is not None,
            num_labels=len(self.labels),
            id2label=dict(enumerate(self.labels)),
            label2id=dict(self.label2id),
        )
        model.config.pad_token_id = self.tokenizer.pad_token_id
        model.config.problem_type = "single_label_classification"
        if fresh:
            self.head_modules = fresh
        if self.options.train_pooler:
            self.head_modules = _poolers(model) + [h for h in self.head_modules if h != "pooler"]
        return model

    def _logits(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        return model(**inputs).logits

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return F.cross_entropy(self._logits(model, batch).float(), batch["labels"])

    def evaluate(self, model: nn.Module, batches: Iterable[dict[str, torch.Tensor]]) -> dict[str, float]:
        preds: list[int] = []
        refs: list[int] = []
        wrong: list[tuple[float, list[int], int, int]] = []  # the most confident mistakes, for eval_details
        total_loss = 0.0
        with pieces.evaluating(model):
            device = pieces.model_device(model)
            for batch in batches:
                batch = pieces.to_device(batch, device)
                logits = self._logits(model, batch).float()
                total_loss += F.cross_entropy(logits, batch["labels"], reduction="sum").item()
                preds.extend(logits.argmax(-1).tolist())
                refs.extend(batch["labels"].tolist())
                _keep_mistakes(wrong, logits.softmax(-1), batch)
        self._seen = (preds, refs, wrong)
        n = max(len(refs), 1)
        return {
            "eval_loss": total_loss / n,
            "eval_accuracy": metrics.accuracy(preds, refs),
            "eval_f1": metrics.f1_macro(preds, refs),
            "eval_matthews_correlation": metrics.matthews_correlation(preds, refs),
        }

    def eval_details(self) -> list[dict[str, Any]]:
        """The last evaluation for the report: confusion matrix, per-class scores, the most confident mistakes."""
        preds, refs, wrong = self._seen
        values = sections.confusion_counts(self.labels, preds, refs)
        rows = [[self.tokenizer.decode(ids, skip_special_tokens=True), self.labels[ref], self.labels[pred], conf]
                for conf, ids, ref, pred in sorted(wrong, key=lambda w: -w[0])]
        return [sections.matrix("Confusion matrix", self.labels, values),
                sections.prf_table("Per-class scores", sections.class_counts(self.labels, values)),
                sections.examples("Most confident mistakes", ["text", "true", "predicted", "confidence"], rows,
                                  note=None if rows else "no evaluation example was misclassified")]

    def predict(self, model: nn.Module, inputs: Sequence[Any]) -> list[dict[str, Any]]:
        """For each text (or (text, pair) tuple, or row dict): ``{"label": name, "score": probability}``."""
        texts, pairs = [], []
        for item in inputs:
            text, pair = self._split_input(item)
            texts.append(text)
            pairs.append(pair)
        if any(p is not None for p in pairs) and any(p is None for p in pairs):
            raise UsageError("give every input as a text pair or none of them; the inputs mix single texts and pairs.")
        out: list[dict[str, Any]] = []
        size = self.options.predict_batch_size
        for start, chunk, device in pieces.predict_chunks(model, texts, size):
            chunk_pairs = pairs[start:start + size] if pairs and pairs[0] is not None else None
            enc = self.tokenizer(list(chunk), chunk_pairs, truncation=True, max_length=self.options.max_length)
            feats = [{k: enc[k][i] for k in enc.keys() if k in ("input_ids", "token_type_ids")}
                     for i in range(len(chunk))]
            batch = pieces.to_device(self.collate(feats), device)
            probs = self._logits(model, batch).float().softmax(-1)
            for row in probs:
                best = int(row.argmax())
                out.append({"label": self.labels[best], "score": float(row[best])})
        return out

    def _split_input(self, item: Any) -> tuple[str, str | None]:
        if isinstance(item, str):
            return item, None
        if isinstance(item, (tuple, list)) and len(item) == 2:
            return str(item[0]), str(item[1])
        if isinstance(item, dict):
            col = self.text_column or next((c for c in TEXT_COLUMNS if c in item), None)
            if col is None or col not in item:
                raise UsageError(f"an input record has no text field (fields: {', '.join(map(str, item))}); set data.text_column.")
            pair = item.get(self.pair_column) if self.pair_column else None
            return str(item[col]), (str(pair) if pair is not None else None)
        raise UsageError(f"cannot classify an input of type {type(item).__name__}; give text strings.")

    def save(self, folder: str | Path) -> None:
        pieces.write_state(folder, SequenceClassification.name, {
            "labels": self.labels,
            "text_column": self.text_column,
            "text_pair_column": self.pair_column,
            "label_column": self.label_column,
            "head_modules": self.head_modules,
        })


def _keep_mistakes(wrong: list[tuple[float, list[int], int, int]], probs: torch.Tensor, batch: dict[str, Any],
                   keep: int = 10) -> None:
    """Add the batch's misclassified examples to ``wrong``, keeping the ``keep`` most confident ones."""
    confidence, predicted = probs.max(-1)
    for row in (predicted != batch["labels"]).nonzero().flatten().tolist():
        ids = batch["input_ids"][row][batch["attention_mask"][row].bool()].tolist()
        wrong.append((float(confidence[row]), ids, int(batch["labels"][row]), int(predicted[row])))
    wrong.sort(key=lambda w: -w[0])
    del wrong[keep:]


def _texts(data: Any, column: str) -> list[str]:
    values = data[column]
    out = []
    for i, v in enumerate(values):
        if v is None:
            raise DataError(f"row {i + 1} has no text in column {column!r}; fill it in or drop the row.")
        out.append(v if isinstance(v, str) else str(v))
    return out


class SequenceClassification:
    """Sequence classification: one label per text or text pair; accuracy, macro-F1, Matthews correlation."""

    name = "sequence-classification"
    description = "One label per text or text pair (sentiment, acceptability, topics, NLI); encoders and decoders."
    options_class = ClassificationOptions

    def prepare(self, ctx: TaskContext) -> ClassificationJob:
        data = ctx.data
        train_rows = ctx.train
        if train_rows is None:
            raise DataError("the sequence-classification task needs training data; pass --data FILE.")
        text_col = rows.pick_column(train_rows, getattr(data, "text_column", None), TEXT_COLUMNS, "text", "data.text_column")
        label_col = rows.pick_column(train_rows, getattr(data, "label_column", None), LABEL_COLUMNS, "label",
                                     "data.label_column")
        pair_wanted = getattr(data, "text_pair_column", None)
        if pair_wanted is not None:
            pair_col = rows.pick_column(train_rows, pair_wanted, (), "text pair", "data.text_pair_column")
        else:
            pair_col = PAIR_COLUMNS.get(str(text_col).lower())
            pair_col = pair_col if pair_col in rows.columns(train_rows) else None
        if ctx.validation is not None:
            for col in (text_col, label_col, pair_col):
                if col is not None and col not in rows.columns(ctx.validation):
                    raise DataError(
                        f"the validation data has no column {col!r} (columns: {', '.join(rows.columns(ctx.validation))}); "
                        "give it the same columns as the training data."
                    )
        keys = [_label_key(v) for v in train_rows[label_col]]
        for i, key in enumerate(keys):
            if key is None:
                raise DataError(f"training row {i + 1} has an empty label in column {label_col!r}; fill it in or drop the row.")
        train, validation = rows.train_and_validation(ctx, keys=lambda r: [_label_key(v) for v in r[label_col]])
        labels = _ordered(_label_key(v) for v in train[label_col])
        if len(labels) < 2:
            raise DataError(
                f"the training labels in column {label_col!r} hold only one class ({labels[0]!r}); "
                "classification needs at least two, check data.label_column."
            )
        job = ClassificationJob(ctx.tokenizer, ctx.options, labels, text_col, pair_col, label_col)
        job.train_dataset = job.encode(train)
        job.eval_dataset = job.encode(validation)
        return job

    def restore(self, ctx: TaskContext, folder: str | Path) -> ClassificationJob:
        state = pieces.read_state(folder, self.name)
        job = ClassificationJob(ctx.tokenizer, ctx.options, list(state["labels"]), state.get("text_column"),
                                state.get("text_pair_column"), state.get("label_column"))
        job.head_modules = list(state.get("head_modules") or HEAD_GUESS)
        return job


@hookimpl
def register_tasks(register: Any) -> None:
    register(SequenceClassification())
