"""`tunekit export --format onnx`: encoder runs as model.onnx that ONNX Runtime runs with the run's logits."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tunekit.runs.runner import load_run

SENTENCES = ["the good movie", "a bad plot was awful", "great fun !", "the film was boring and the acting bad"]
OUTPUTS = {"sequence-classification": ["logits"], "token-classification": ["logits"],
           "question-answering": ["start_logits", "end_logits"]}


def _onnx_outputs(folder, encoded, names):
    import onnxruntime

    session = onnxruntime.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    task = json.loads((folder / "task.json").read_text())
    return session.run(names, {k: encoded[k].numpy() for k in task["inputs"]})


@pytest.mark.parametrize("task", list(OUTPUTS))
def test_onnx_runtime_gives_the_runs_logits(cli, encoder_runs, tmp_path, task):
    from transformers import AutoTokenizer

    out = tmp_path / "onnx"
    result = cli("export", "--run", str(encoder_runs[task]), "--output", str(out), "--format", "onnx")
    assert result.code == 0, result.stderr
    assert "ONNX Runtime matches" in result.stdout
    meta = json.loads((out / "task.json").read_text())
    assert meta["task"] == task and meta["outputs"] == OUTPUTS[task]
    if task != "question-answering":
        assert meta["labels"] and len(meta["labels"]) >= 2
    loaded = load_run(encoder_runs[task])
    tokenizer = AutoTokenizer.from_pretrained(out)  # the exported folder's own tokenizer
    for rows in (SENTENCES, SENTENCES[:1], SENTENCES * 3):  # batch and sequence sizes the export never saw
        encoded = tokenizer(rows, return_tensors="pt", padding=True)
        got = _onnx_outputs(out, encoded, OUTPUTS[task])
        with torch.no_grad():
            expected = loaded.model(**encoded, return_dict=True)
        for name, value in zip(OUTPUTS[task], got, strict=True):
            assert np.abs(value - expected[name].numpy()).max() <= 1e-4, (task, name, len(rows))
