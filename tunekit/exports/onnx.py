"""``tunekit export --format onnx``: an encoder run (classification, token classification, QA) for ONNX Runtime.

The merged float model goes through ``torch.onnx.export`` with the dynamo exporter (``dynamo=True``,
written through onnxscript). The legacy TorchScript exporter traces one input shape: transformers'
attention-mask code takes Python branches on it, so its graph gave wrong logits (errors near 1e-2) for
other batch or sequence sizes, while the dynamo graph matches torch to ~1e-8 at every shape. The folder
holds ``model.onnx``, the tokenizer files and ``task.json`` (inputs, outputs, labels). After writing, the
model is run once in ONNX Runtime against torch and refused if the logits differ.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch

from tunekit.errors import UsageError
from tunekit.exports.common import require

ONNX_FILE = "model.onnx"
TASK_FILE = "task.json"
TOLERANCE = 1e-4
"""The largest |ONNX Runtime - torch| logit difference an export may show on its check batch."""

HEADS = {
    "ForSequenceClassification": ("sequence-classification", ["logits"]),
    "ForTokenClassification": ("token-classification", ["logits"]),
    "ForQuestionAnswering": ("question-answering", ["start_logits", "end_logits"]),
}
"""Model class suffix -> the head it carries and the outputs the ONNX graph returns."""

INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def head_of(model: Any) -> tuple[str, list[str]]:
    """The head kind and output names of a transformers model, or UsageError when ONNX export does not cover it."""
    name = type(model).__name__
    for suffix, head in HEADS.items():
        if name.endswith(suffix):
            return head
    if name.endswith("ForCausalLM"):
        raise UsageError(f"ONNX export covers classification, token-classification and QA runs, not a causal LM "
                         f"({name}); export it with --format gguf (llama.cpp, ollama) or --format hf.")
    raise UsageError(f"ONNX export covers classification, token-classification and QA runs, not a {name}; "
                     "use --format hf.")


def require_packages() -> None:
    """Raise UsageError naming the ``onnx`` extra when one of its packages is missing."""
    for package in ("onnx", "onnxscript", "onnxruntime"):
        require(package, "onnx")


class OutputsAsTuple(torch.nn.Module):
    """Wraps a model so that it takes positional tensors and returns a tuple of tensors: what the exporter traces."""

    def __init__(self, model: Any, inputs: list[str], outputs: list[str]) -> None:
        super().__init__()
        self.model, self.inputs, self.outputs = model, inputs, outputs

    def forward(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        result = self.model(**dict(zip(self.inputs, tensors, strict=True)), return_dict=True)
        return tuple(result[name] for name in self.outputs)


def sample_inputs(model: Any, tokenizer: Any) -> dict[str, Any]:
    """A padded batch of two rows of different lengths, with only the inputs the model takes."""
    import inspect

    accepted = inspect.signature(model.forward).parameters
    wanted = [n for n in INPUTS if n in accepted and n in tokenizer.model_input_names]
    vocab = model.config.vocab_size
    ids = (torch.arange(16).reshape(2, 8) * 7 + 5) % vocab
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    values = {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}
    return {n: values[n] for n in wanted}


def write_onnx(model: Any, tokenizer: Any, folder: Path) -> float:
    """Write ``model.onnx``, the tokenizer and ``task.json`` into ``folder``; return the checked max logit error."""
    kind, outputs = head_of(model)
    model = model.float().eval()
    sample = sample_inputs(model, tokenizer)
    inputs = list(sample)
    batch = torch.export.Dim("batch", min=1, max=1024)
    longest = getattr(model.config, "max_position_embeddings", None)
    sequence = torch.export.Dim("sequence", min=1, max=longest or 4096)
    shapes = tuple({0: batch, 1: sequence} for _ in inputs)  # one entry: forward takes *tensors
    with warnings.catch_warnings():  # the exporter's notes on axis names it merged are not the user's concern
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.onnx")
        try:
            torch.onnx.export(OutputsAsTuple(model, inputs, outputs).eval(), tuple(sample.values()),
                              str(folder / ONNX_FILE), input_names=inputs, output_names=outputs,
                              dynamic_shapes=(shapes,), dynamo=True, external_data=False, verbose=False)
        except Exception as exc:  # torch.export's errors are pages long; the first line names the cause
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UsageError(f"torch.onnx could not export this {type(model).__name__} ({first[:300]}); "
                             "use --format hf.") from None
    tokenizer.save_pretrained(folder)
    labels = getattr(model.config, "id2label", None) if kind != "question-answering" else None
    task = {"task": kind, "architecture": type(model).__name__, "inputs": inputs, "outputs": outputs,
            "labels": [labels[i] for i in sorted(labels)] if labels else None,
            "max_length": longest}
    (folder / TASK_FILE).write_text(json.dumps(task, indent=2) + "\n", encoding="utf-8")
    return check_against_torch(model, folder / ONNX_FILE, sample, outputs)


def check_against_torch(model: Any, path: Path, sample: dict[str, Any], outputs: list[str]) -> float:
    """Run ``path`` in ONNX Runtime on ``sample``; raise when any output differs from torch by more than TOLERANCE."""
    import numpy as np
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(outputs, {k: v.numpy() for k, v in sample.items()})
    with torch.no_grad():
        expected = model(**sample, return_dict=True)
    worst = max(float(np.abs(g - expected[name].numpy()).max()) for g, name in zip(got, outputs, strict=True))
    if not worst <= TOLERANCE:
        raise UsageError(f"the ONNX model's outputs differ from the run's by {worst:.2e} (more than {TOLERANCE}); "
                         "the model holds an operation the exporter does not translate faithfully, use --format hf.")
    return worst
