"""The ``token-classification`` task: one tag per word (named entities, chunks, parts of speech).

Words are split into sub-tokens by a fast tokenizer; a word's tag goes on its first sub-token and
the others get -100 (not learned, not scored) unless ``task.label_all_tokens`` is set (then they
learn the word's tag, with B- turned into I-). Metrics are entity-level precision/recall/F1
(IOB1 and IOB2 tags both read right; see ``tunekit.tasks.metrics.entities``) and word accuracy.
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

TOKEN_COLUMNS = ("tokens", "words")
TAG_COLUMNS = ("tags", "ner_tags", "labels", "label", "pos_tags", "chunk_tags")
MODEL_KEYS = ("input_ids", "attention_mask", "token_type_ids")


@dataclass
class TokenClassificationOptions:
    max_length: int = option(256, "Longest sentence in tokens; words past it are cut off.")
    label_all_tokens: bool = option(False, "Learn every sub-token of a word (default: only the first one).")
    predict_batch_size: int = option(16, "Sentences per forward pass in `predict`.")

    def validate(self) -> None:
        check(self.max_length > 2, f"task.max_length must be above 2, not {self.max_length}.")
        check(self.predict_batch_size > 0, "task.predict_batch_size must be positive.")


def _inside(tag: str) -> str:
    return "I" + tag[1:] if tag.startswith("B-") or tag.startswith("B_") else tag


class TokenClassificationJob:
    """One token-classification run: tag names, sub-token alignment, loss, entity metrics."""

    metric_for_best = "eval_f1"
    greater_is_better = True
    eval_order_free = True  # metrics aggregate over all examples: evaluation may batch them by length

    def __init__(self, tokenizer: Any, options: TokenClassificationOptions, labels: list[str],
                 token_column: str | None, tag_column: str | None) -> None:
        pieces.require_fast(tokenizer, "token-classification")
        pieces.ensure_pad_token(tokenizer)
        self.tokenizer = tokenizer
        self.options = options
        self.labels = labels
        self.label2id = {name: i for i, name in enumerate(labels)}
        self.token_column = token_column
        self.tag_column = tag_column
        self.head_modules: list[str] = ["classifier", "score"]
        self.train_dataset: Any = None
        self.eval_dataset: Any = None
        self._seen: tuple[list[list[str]], list[list[str]]] = ([], [])  # the last evaluation, for eval_details

    def _tokenize(self, sentences: list[list[str]]) -> Any:
        return self.tokenizer(sentences, is_split_into_words=True, truncation=True, max_length=self.options.max_length)

    def encode(self, data: Any) -> list[dict[str, Any]]:
        token_col = rows.pick_column(data, self.token_column, TOKEN_COLUMNS, "tokens", "data.text_column")
        tag_col = rows.pick_column(data, self.tag_column, TAG_COLUMNS, "tags", "data.label_column")
        sentences = [list(map(str, s)) for s in data[token_col]]
        tags = _tag_names(data, tag_col)
        enc = self._tokenize(sentences)
        features = []
        for i, (words, word_tags) in enumerate(zip(sentences, tags, strict=True)):
            if len(words) != len(word_tags):
                raise DataError(f"sentence {i + 1} has {len(words)} tokens but {len(word_tags)} tags; give one tag per token.")
            for tag in word_tags:
                if tag not in self.label2id:
                    raise DataError(
                        f"sentence {i + 1} has the tag {tag!r}, which the training data never had "
                        f"(known: {', '.join(self.labels)}); fix it or add training examples with it."
                    )
            labels, starts = self._align(enc.word_ids(i), word_tags)
            feature = {k: enc[k][i] for k in MODEL_KEYS if k in enc}
            feature["labels"] = labels
            feature["word_starts"] = starts
            features.append(feature)
        return features

    def _align(self, word_ids: list[int | None], tags: list[str]) -> tuple[list[int], list[int]]:
        labels, starts = [], []
        previous = None
        for w in word_ids:
            if w is None:
                labels.append(-100)
                starts.append(0)
            elif w != previous:
                labels.append(self.label2id[tags[w]])
                starts.append(1)
            else:
                inner = self.label2id.get(_inside(tags[w]), self.label2id[tags[w]])
                labels.append(inner if self.options.label_all_tokens else -100)
                starts.append(0)
            previous = w
        return labels, starts

    def collate(self, features: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = {"input_ids": pieces.pad_stack([f["input_ids"] for f in features], self.tokenizer.pad_token_id),
                 "attention_mask": pieces.pad_stack([[1] * len(f["input_ids"]) for f in features], 0)}
        if "token_type_ids" in features[0]:
            batch["token_type_ids"] = pieces.pad_stack([f["token_type_ids"] for f in features], 0)
        if all("labels" in f for f in features):
            batch["labels"] = pieces.pad_stack([f["labels"] for f in features], -100)
        if all("word_starts" in f for f in features):
            batch["word_starts"] = pieces.pad_stack([f["word_starts"] for f in features], 0)
        return batch

    def build_model(self, source: ResolvedModel, load_kwargs: dict[str, Any]) -> nn.Module:
        from transformers import AutoModelForTokenClassification

        model, fresh = pieces.load_with_head(
            AutoModelForTokenClassification, source, load_kwargs, announce=self.train_dataset is not None,
            num_labels=len(self.labels),
            id2label=dict(enumerate(self.labels)), label2id=dict(self.label2id),
        )
        if getattr(model.config, "pad_token_id", None) is None:
            model.config.pad_token_id = self.tokenizer.pad_token_id
        if fresh:
            self.head_modules = fresh
        return model

    def _logits(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return model(**{k: v for k, v in batch.items() if k in MODEL_KEYS}).logits.float()

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = self._logits(model, batch)
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)), batch["labels"].reshape(-1), ignore_index=-100)

    def evaluate(self, model: nn.Module, batches: Iterable[dict[str, torch.Tensor]]) -> dict[str, float]:
        preds: list[list[str]] = []
        golds: list[list[str]] = []
        total, count = 0.0, 0
        with pieces.evaluating(model):
            device = pieces.model_device(model)
            for batch in batches:
                batch = pieces.to_device(batch, device)
                logits = self._logits(model, batch)
                labels = batch["labels"]
                total += float(F.cross_entropy(logits.reshape(-1, logits.size(-1)), labels.reshape(-1),
                                               ignore_index=-100, reduction="sum"))
                count += int((labels != -100).sum())
                best = logits.argmax(-1)
                starts = batch["word_starts"].bool()
                for row in range(labels.shape[0]):
                    mask = starts[row]
                    preds.append([self.labels[i] for i in best[row][mask].tolist()])
                    golds.append([self.labels[i] for i in labels[row][mask].tolist()])
        self._seen = (preds, golds)
        scores = metrics.entity_scores(preds, golds)
        out = {f"eval_{k}": v for k, v in scores.items()}
        out["eval_loss"] = total / max(count, 1)
        return out

    def eval_details(self) -> list[dict[str, Any]]:
        """The last evaluation for the report: entity precision, recall and F1 per entity type."""
        counts: dict[str, list[int]] = {}
        for pred, gold in zip(*self._seen, strict=True):
            found, wanted = metrics.entities(pred), metrics.entities(gold)
            for group, entities in ((0, found & wanted), (1, found), (2, wanted)):
                for kind, _, _ in entities:
                    counts.setdefault(kind, [0, 0, 0])[group] += 1
        ordered = {kind: (c[0], c[1], c[2]) for kind, c in sorted(counts.items())}
        return [sections.prf_table("Entity scores per type", ordered, name="entity type",
                                   note="an entity counts as right only when its type and both ends match")]

    def predict(self, model: nn.Module, inputs: Sequence[Any]) -> list[dict[str, Any]]:
        """Tags and entities for each sentence (a text split on white space, or a list of words)."""
        sentences = []
        for item in inputs:
            if isinstance(item, str):
                sentences.append(item.split())
            elif isinstance(item, (list, tuple)) and all(isinstance(w, str) for w in item):
                sentences.append(list(item))
            elif isinstance(item, dict) and (self.token_column or "tokens") in item:
                sentences.append([str(w) for w in item[self.token_column or "tokens"]])
            else:
                raise UsageError("token-classification inputs are texts or lists of words.")
        out: list[dict[str, Any]] = []
        for _, chunk, device in pieces.predict_chunks(model, sentences, self.options.predict_batch_size):
            enc = self._tokenize(list(chunk))
            feats = [{k: enc[k][i] for k in MODEL_KEYS if k in enc} for i in range(len(chunk))]
            best = self._logits(model, pieces.to_device(self.collate(feats), device)).argmax(-1).tolist()
            for i, words in enumerate(chunk):
                tags = ["O"] * len(words)
                seen = set()
                for pos, w in enumerate(enc.word_ids(i)):
                    if w is not None and w not in seen:
                        seen.add(w)
                        tags[w] = self.labels[best[i][pos]]
                found = sorted(metrics.entities(tags), key=lambda e: e[1])
                out.append({
                    "tokens": words, "tags": tags,
                    "entities": [{"type": t, "text": " ".join(words[s:e]), "start": s, "end": e} for t, s, e in found],
                })
        return out

    def save(self, folder: str | Path) -> None:
        pieces.write_state(folder, TokenClassification.name, {
            "labels": self.labels, "token_column": self.token_column, "tag_column": self.tag_column,
            "head_modules": self.head_modules,
        })


def _tag_names(data: Any, column: str) -> list[list[str]]:
    values = data[column]
    feature = getattr(data, "features", {}).get(column) if hasattr(data, "features") else None
    names = getattr(getattr(feature, "feature", None), "names", None)
    out = []
    for i, seq in enumerate(values):
        if not isinstance(seq, (list, tuple)):
            raise DataError(f"row {i + 1}: column {column!r} must hold a list of tags, one per token.")
        out.append([names[t] if names and isinstance(t, int) else str(t) for t in seq])
    return out


def _ordered_tags(tags: Iterable[str]) -> list[str]:
    found = set(tags)
    rest = sorted(found - {"O"}, key=lambda t: (t[2:] if len(t) > 2 and t[1] in "-_" else t, t))
    return (["O"] if "O" in found else []) + rest


class TokenClassification:
    """Token classification (NER, chunking, POS): entity precision/recall/F1 and word accuracy."""

    name = "token-classification"
    description = "One tag per word (named entities, chunks, POS) from CoNLL files; entity-level F1."
    options_class = TokenClassificationOptions

    def prepare(self, ctx: TaskContext) -> TokenClassificationJob:
        if ctx.train is None:
            raise DataError("the token-classification task needs training data; pass --data FILE.")
        data = ctx.data
        token_col = rows.pick_column(ctx.train, getattr(data, "text_column", None), TOKEN_COLUMNS, "tokens",
                                     "data.text_column")
        tag_col = rows.pick_column(ctx.train, getattr(data, "label_column", None), TAG_COLUMNS, "tags",
                                   "data.label_column")
        train, validation = rows.train_and_validation(ctx)
        labels = _ordered_tags(t for seq in _tag_names(train, tag_col) for t in seq)
        if len(labels) < 2:
            raise DataError(f"the training tags in column {tag_col!r} hold only {labels}; token classification needs two or more.")
        if ctx.options.label_all_tokens:
            labels = _ordered_tags(labels + [_inside(t) for t in labels])
        job = TokenClassificationJob(ctx.tokenizer, ctx.options, labels, token_col, tag_col)
        job.train_dataset = job.encode(train)
        job.eval_dataset = job.encode(validation)
        return job

    def restore(self, ctx: TaskContext, folder: str | Path) -> TokenClassificationJob:
        state = pieces.read_state(folder, self.name)
        job = TokenClassificationJob(ctx.tokenizer, ctx.options, list(state["labels"]), state.get("token_column"),
                                     state.get("tag_column"))
        job.head_modules = list(state.get("head_modules") or job.head_modules)
        return job


@hookimpl
def register_tasks(register: Any) -> None:
    register(TokenClassification())
