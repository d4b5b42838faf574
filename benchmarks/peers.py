"""The peers' side, written with their public APIs: transformers Trainer (+ PEFT or AdapterHub ``adapters``).

Runs under the main venv (transformers 5, PEFT) and under the ``adapters`` venv (transformers 4.57), so
it only uses APIs both transformers versions have. Heavy imports happen inside the functions.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

SEED = 42


def training_args(out: Path, lr: float, batch_size: int, epochs: float, seed: int = SEED, bf16: bool = False) -> Any:
    """TrainingArguments with the Trainer's defaults except what the comparison fixes (lr, batch, epochs).

    ``bf16`` must be given here: the arguments set up accelerate's mixed precision when they are built, so
    changing the attribute afterwards has no effect.
    """
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=str(out), learning_rate=lr, per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=batch_size, num_train_epochs=epochs, seed=seed, save_strategy="no",
        report_to="none", disable_tqdm=True, use_cpu=True, bf16=bf16,
    )


def tokenize_sentences(tokenizer: Any, rows: list[dict[str, Any]], max_length: int) -> list[dict[str, Any]]:
    enc = tokenizer([r["sentence"] for r in rows], truncation=True, max_length=max_length)
    keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
    return [{**{k: enc[k][i] for k in keys}, "labels": rows[i]["label"]} for i in range(len(rows))]


def accuracy(model: Any, tokenizer: Any, features: list[dict[str, Any]], batch_size: int) -> float:
    """Dev accuracy with a plain no-grad loop (batches in file order, dynamic padding)."""
    import torch
    from transformers import DataCollatorWithPadding

    collate = DataCollatorWithPadding(tokenizer)
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(features), batch_size):
            batch = collate(features[start:start + batch_size])
            labels = batch.pop("labels")
            logits = model(**batch).logits
            correct += int((logits.argmax(-1) == labels).sum())
    return correct / len(features)


def train_classifier(model: Any, tokenizer: Any, train_rows: list[dict[str, Any]], dev_rows: list[dict[str, Any]],
                     *, lr: float, batch_size: int, epochs: float, workdir: Path, max_length: int = 256,
                     trainer_class: Any = None) -> dict[str, Any]:
    """Tokenize, train with the (Adapter)Trainer, then score the dev set. Returns timings and accuracy."""
    from transformers import DataCollatorWithPadding, Trainer

    t0 = time.perf_counter()
    train = tokenize_sentences(tokenizer, train_rows, max_length)
    dev = tokenize_sentences(tokenizer, dev_rows, max_length)
    tokenize_seconds = time.perf_counter() - t0
    trainer = (trainer_class or Trainer)(
        model=model, args=training_args(workdir / "trainer", lr, batch_size, epochs), train_dataset=train,
        data_collator=DataCollatorWithPadding(tokenizer),
    )
    t1 = time.perf_counter()
    output = trainer.train()
    train_seconds = time.perf_counter() - t1
    t2 = time.perf_counter()
    acc = accuracy(model, tokenizer, dev, batch_size)
    eval_seconds = time.perf_counter() - t2
    return {
        "tokenize_seconds": round(tokenize_seconds, 3), "train_seconds": round(train_seconds, 3),
        "eval_seconds": round(eval_seconds, 3), "accuracy": round(acc, 4),
        "train_loss": round(float(output.training_loss), 4), "steps": int(output.global_step),
    }


def count_trainable(model: Any) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
