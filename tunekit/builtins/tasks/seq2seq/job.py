"""One seq2seq run: source/target tokenization, teacher-forced loss, generation, generation metrics."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from tunekit.builtins.tasks.seq2seq import columns
from tunekit.errors import ConfigError, DataError, UsageError
from tunekit.models import ResolvedModel
from tunekit.tasks import pieces, text_metrics

log = logging.getLogger("tunekit.tasks.seq2seq")

TASK_NAME = "seq2seq"


class Seq2SeqJob:
    """Encoder-decoder training: source -> encoder, target -> labels (pad -> -100), scored by generating."""

    eval_order_free = True  # each batch carries its own reference texts: evaluation may batch by length

    def __init__(self, tokenizer: Any, options: Any, source_column: str, target_column: str) -> None:
        self.tokenizer = tokenizer
        self.options = options
        self.source_column = source_column
        self.target_column = target_column
        self.metric_for_best = f"eval_{options.metric}"
        self.greater_is_better = options.metric != "loss"
        self.head_modules: list[str] = []
        self.train_dataset: Any = None
        self.eval_dataset: Any = None
        pieces.ensure_pad_token(tokenizer)

    # --- data -------------------------------------------------------------------------------

    def source_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of source texts: the prefix put first, cut to ``max_source_length`` (the tokenizer's end
        marker kept)."""
        prefixed = [self.options.source_prefix + text for text in texts]
        return self.tokenizer(prefixed, truncation=True, max_length=self.options.max_source_length)["input_ids"]

    def target_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Label ids of target texts, each ending with the end-of-sequence token so the tuned model learns to stop.

        ``text_target`` lets tokenizers with a separate target side (Marian's target vocabulary) use it; the end
        marker is appended where a tokenizer adds none by itself.
        """
        enc = self.tokenizer(text_target=list(texts), truncation=True, max_length=self.options.max_target_length)
        eos = self.tokenizer.eos_token_id
        out = []
        for ids in enc["input_ids"]:
            ids = list(ids)
            if eos is not None and (not ids or ids[-1] != eos):
                ids = ids[: self.options.max_target_length - 1] + [eos]
            out.append(ids)
        return out

    def encode(self, data: Any) -> list[dict[str, Any]]:
        """Tokenize raw rows into features: ``input_ids``, ``labels`` and the reference text for scoring."""
        sources = columns.texts(data, self.source_column, "source", "task.source_column")
        targets = columns.texts(data, self.target_column, "target", "task.target_column")
        if not sources:
            raise DataError("the data has no rows; give a file with at least one source/target pair.")
        features = [{"input_ids": s, "labels": t, "reference": ref}
                    for s, t, ref in zip(self.source_ids(sources), self.target_ids(targets), targets, strict=True)]
        log.info("seq2seq: %d examples (%s -> %s)", len(features), self.source_column, self.target_column)
        return features

    def collate(self, features: Sequence[dict[str, Any]]) -> dict[str, Any]:
        pad = self.tokenizer.pad_token_id
        batch: dict[str, Any] = {
            "input_ids": pieces.pad_stack([f["input_ids"] for f in features], pad),
            "attention_mask": pieces.pad_stack([[1] * len(f["input_ids"]) for f in features], 0),
        }
        if all("labels" in f for f in features):
            batch["labels"] = pieces.pad_stack([f["labels"] for f in features], -100)
        if all("reference" in f for f in features):
            batch["references"] = [f["reference"] for f in features]
        return batch

    # --- model ------------------------------------------------------------------------------

    def build_model(self, source: ResolvedModel, load_kwargs: dict[str, Any]) -> nn.Module:
        from transformers import AutoModelForSeq2SeqLM

        try:
            model, fresh = pieces.load_with_head(AutoModelForSeq2SeqLM, source, load_kwargs, announce=False)
        except ValueError as exc:
            if "Unrecognized configuration class" not in str(exc):
                raise
            raise ConfigError(
                f"the model {source.path!s} is not an encoder-decoder model; the seq2seq task needs one such as "
                "T5, BART, mT5 or Marian (use --task causal-lm for decoder-only models)."
            ) from None
        if fresh:
            log.warning("the checkpoint lacks %s; they start from random values", ", ".join(fresh))
        if getattr(model.config, "decoder_start_token_id", None) is None:
            raise ConfigError(
                "the model config sets no decoder_start_token_id, so the decoder has no first input; add it to the "
                "model's config.json (T5 uses the pad id, BART the end-of-sequence id)."
            )
        return model

    def _forward(self, model: nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed cross-entropy over the target tokens and how many there were (teacher forcing).

        The decoder input is the labels shifted right behind the family's start token, which the model itself
        derives (``prepare_decoder_input_ids_from_labels``: T5 starts with pad, BART and Marian with their own).
        """
        labels = batch["labels"]
        decoder_input_ids = model.prepare_decoder_input_ids_from_labels(labels=labels)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       decoder_input_ids=decoder_input_ids, use_cache=False).logits
        total = F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=-100, reduction="sum")
        return total, (labels != -100).sum()

    def loss_weight(self, batch: dict[str, Any]) -> int:
        """The number of target tokens ``loss(model, batch)`` averages over."""
        return int((batch["labels"] != -100).sum())

    def loss(self, model: nn.Module, batch: dict[str, Any]) -> torch.Tensor:
        total, count = self._forward(model, batch)
        return total / count.clamp(min=1)

    def evaluate(self, model: nn.Module, batches: Iterable[dict[str, Any]]) -> dict[str, float]:
        """Token-weighted ``eval_loss``, and generation metrics over (up to ``generate_eval_samples``) examples."""
        total, count = 0.0, 0
        predictions: list[str] = []
        references: list[str] = []
        limit = self.options.generate_eval_samples
        with pieces.evaluating(model):
            device = pieces.model_device(model)
            for batch in batches:
                batch = pieces.to_device(batch, device)
                s, n = self._forward(model, batch)
                total += float(s)
                count += int(n)
                room = len(batch["input_ids"]) if limit is None else max(limit - len(predictions), 0)
                if room and "references" in batch:
                    keep = slice(0, min(room, len(batch["input_ids"])))
                    predictions.extend(self._generate_ids(model, batch["input_ids"][keep],
                                                          batch["attention_mask"][keep]))
                    references.extend(batch["references"][keep])
        metrics = {"eval_loss": total / max(count, 1)}
        if predictions:
            metrics.update(text_metrics.generation_scores(predictions, references, prefix="eval_"))
        return metrics

    # --- generation -------------------------------------------------------------------------

    def _generate_ids(self, model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> list[str]:
        kwargs: dict[str, Any] = {"max_new_tokens": self.options.max_new_tokens, "num_beams": self.options.num_beams,
                                  "do_sample": False}
        if self.tokenizer.pad_token_id is not None:
            kwargs["pad_token_id"] = self.tokenizer.pad_token_id
        with pieces.evaluating(model):
            out = model.generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        return [text.strip() for text in self.tokenizer.batch_decode(out, skip_special_tokens=True)]

    def _source_text(self, item: Any) -> str:
        if isinstance(item, str):
            return item
        if isinstance(item, dict):
            return columns.value(item, self.source_column, "an input record", "task.source_column")
        if isinstance(item, list):  # a chat history: answer its last user message
            users = [m.get("content", "") for m in item if isinstance(m, dict) and m.get("role") == "user"]
            if users:
                return str(users[-1])
        raise UsageError(f"cannot generate from an input of type {type(item).__name__}; give source texts.")

    def generate(self, model: nn.Module, items: Sequence[Any], streamer: Any = None) -> list[str]:
        """Outputs for source texts (or rows holding the source column), greedy or beam search, batched."""
        if streamer is not None:
            log.debug("seq2seq generation does not stream; the answer comes whole")
        texts = [self._source_text(item) for item in items]
        if not texts:
            return []
        device = pieces.model_device(model)
        ids = self.source_ids(texts)
        input_ids = pieces.pad_stack(ids, self.tokenizer.pad_token_id).to(device)
        attention = pieces.pad_stack([[1] * len(i) for i in ids], 0).to(device)
        return self._generate_ids(model, input_ids, attention)

    def predict(self, model: nn.Module, inputs: Sequence[Any]) -> list[str]:
        """The generated output (text) for each source text or row."""
        out: list[str] = []
        for _, chunk, _ in pieces.predict_chunks(model, list(inputs), self.options.predict_batch_size):
            out.extend(self.generate(model, chunk))
        return out

    def save(self, folder: str | Path) -> None:
        pieces.write_state(folder, TASK_NAME, {"source_column": self.source_column,
                                               "target_column": self.target_column})
