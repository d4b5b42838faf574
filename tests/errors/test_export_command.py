"""`tunekit export`: a LoRA run merged into a plain transformers folder gives the run's outputs."""

from __future__ import annotations

import torch
from transformers import AutoModelForSequenceClassification

from tunekit.runs.runner import load_run


def test_export_merges_lora_into_a_standalone_model(cli, finished_run, tmp_path):
    out = tmp_path / "merged"
    result = cli("export", "--run", str(finished_run), "--output", str(out))
    assert result.code == 0, result.stderr
    assert (out / "config.json").is_file() and (out / "model.safetensors").is_file()

    loaded = load_run(finished_run)
    ids = loaded.tokenizer(["a fine film", "a dull film"], return_tensors="pt", padding=True)
    merged = AutoModelForSequenceClassification.from_pretrained(out).eval()
    assert not any("lora" in name for name, _ in merged.named_parameters())
    with torch.no_grad():
        expected = loaded.model(**ids).logits
        got = merged(**ids).logits
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def test_export_refuses_a_non_empty_folder(cli, finished_run, tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = cli("export", "--run", str(finished_run), "--output", str(out))
    assert result.code == 2
    assert "already exists and is not empty" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


def test_export_writes_a_method_that_trains_in_place_as_the_trained_model(cli, models, data, tmp_path):
    """freeze has nothing to merge (it only unfreezes the top block): export writes the model it trained."""
    from tunekit.runs.runner import run

    run_dir = tmp_path / "freeze-run"
    run({
        "model": {"name": str(models["bert"])},
        "task": {"name": "sequence-classification"},
        "method": {"name": "freeze", "trainable_layers": 1},
        "data": {"train": str(data / "train.csv")},
        "training": {"max_steps": 2, "batch_size": 4, "eval_each_epoch": False, "lr": 1e-2},
        "output": {"dir": str(run_dir)},
    })
    out = tmp_path / "exported"
    result = cli("export", "--run", str(run_dir), "--output", str(out))
    assert result.code == 0, result.stderr
    assert "the trained model" in result.stdout

    loaded = load_run(run_dir)
    ids = loaded.tokenizer(["a fine film", "a dull film"], return_tensors="pt", padding=True)
    exported = AutoModelForSequenceClassification.from_pretrained(out).eval()
    with torch.no_grad():
        torch.testing.assert_close(exported(**ids).logits, loaded.model(**ids).logits, atol=1e-5, rtol=1e-4)
