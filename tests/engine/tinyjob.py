"""A tiny, self-contained task job and model for the engine tests (no task or method plugin needed)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
from safetensors.torch import save_file
from torch import nn
from transformers import BertConfig, BertForSequenceClassification


def tiny_bert(seed: int = 0, dropout: float = 0.1) -> nn.Module:
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=32, num_labels=2,
                        hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    return BertForSequenceClassification(config)


class TinyJob:
    """Binary classification of random token sequences: label 1 when the sequence holds a token below 5."""

    head_modules = ["classifier"]
    metric_for_best = "eval_accuracy"
    greater_is_better = True

    def __init__(self, n_train: int = 64, n_eval: int = 24, seed: int = 0, min_len: int = 3, max_len: int = 14):
        rng = random.Random(seed)

        def make(n: int) -> list[dict[str, Any]]:
            rows = []
            for _ in range(n):
                length = rng.randint(min_len, max_len)
                ids = [rng.randint(1, 49) for _ in range(length)]
                rows.append({"input_ids": ids, "label": int(min(ids) < 5)})
            return rows

        self.train_dataset = make(n_train)
        self.eval_dataset = make(n_eval) if n_eval else None
        self.loss_calls = 0

    def collate(self, features: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        width = max(len(f["input_ids"]) for f in features)
        ids = torch.zeros(len(features), width, dtype=torch.long)
        mask = torch.zeros(len(features), width, dtype=torch.long)
        for i, f in enumerate(features):
            ids[i, : len(f["input_ids"])] = torch.tensor(f["input_ids"])
            mask[i, : len(f["input_ids"])] = 1
        return {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([f["label"] for f in features])}

    def loss(self, model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        self.loss_calls += 1
        return model(**batch).loss

    def evaluate(self, model: Any, batches: Iterable[dict[str, torch.Tensor]]) -> dict[str, float]:
        correct = total = 0
        loss_sum = 0.0
        for batch in batches:
            out = model(**batch)
            loss_sum += float(out.loss) * len(batch["labels"])
            correct += int((out.logits.argmax(-1) == batch["labels"]).sum())
            total += len(batch["labels"])
        return {"eval_loss": loss_sum / total, "eval_accuracy": correct / total}


class FullApplied:
    """An ``Applied`` handle for plain full fine-tuning: saves the trainable tensors."""

    def __init__(self, model: nn.Module, injected: Sequence[str] = ()) -> None:
        self.model = model
        self.injected = list(injected)

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        return {n: p.detach().clone() for n, p in self.model.named_parameters() if p.requires_grad}

    def save(self, folder: str | Path) -> None:
        Path(folder).mkdir(parents=True, exist_ok=True)
        save_file(self.trainable_state_dict(), str(Path(folder) / "adapter_model.safetensors"))

    def merge(self) -> None:
        raise NotImplementedError

    def unmerge(self) -> None:
        raise NotImplementedError


def weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
