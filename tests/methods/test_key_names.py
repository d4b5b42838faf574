"""Trainable and saved key names pinned per built-in method on tiny models (torchtune's expected-adapter-keys tests).

Parameter counts alone cannot tell LoRA on ``query`` from LoRA on ``key``; these lists can. The names are
written out (``per_block`` only repeats a suffix for blocks 0 and 1), so a renamed module, a changed PEFT
prefix or a wrapped layer moving shows up as a diff of names.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from safetensors.torch import load_file

from tunekit.methods.protocol import make_options
from tunekit.plugins import registries
from tunekit.testing import head_modules, tiny_bert, tiny_llama

BERT_HEAD = ["classifier.bias", "classifier.weight"]


def per_block(prefix: str, *suffixes: str, layers: int = 2) -> list[str]:
    """``prefix.<i>.<suffix>`` for every block ``i`` of the tiny models (2 blocks) and every suffix."""
    return [f"{prefix}.{i}.{suffix}" for i in range(layers) for suffix in suffixes]


BERT_BLOCK_PARAMETERS = [
    f"{module}.{kind}"
    for module in ("attention.output.LayerNorm", "attention.output.dense", "attention.self.key",
                   "attention.self.query", "attention.self.value", "intermediate.dense",
                   "output.LayerNorm", "output.dense")
    for kind in ("bias", "weight")
]
LORA_QV = ("attention.self.query.lora_A.weight", "attention.self.query.lora_B.weight",
           "attention.self.value.lora_A.weight", "attention.self.value.lora_B.weight")
ADAPTER = ("adapter.down.bias", "adapter.down.weight", "adapter.up.bias", "adapter.up.weight")
LLAMA_LORA_QV = ("self_attn.q_proj.lora_A.weight", "self_attn.q_proj.lora_B.weight",
                 "self_attn.v_proj.lora_A.weight", "self_attn.v_proj.lora_B.weight")

# (trainable parameter names, keys in adapter_model.safetensors), each sorted, default options.
BERT = {
    "feature-extraction": (BERT_HEAD, BERT_HEAD),
    "freeze": (per_block("bert.encoder.layer", *BERT_BLOCK_PARAMETERS) + BERT_HEAD,
               per_block("bert.encoder.layer", *BERT_BLOCK_PARAMETERS) + BERT_HEAD),
    "houlsby": (per_block("bert.encoder.layer", *(f"attention.output.dense.{a}" for a in ADAPTER),
                          *(f"output.dense.{a}" for a in ADAPTER)) + BERT_HEAD,
                per_block("bert.encoder.layer", *(f"attention.output.dense.{a}" for a in ADAPTER),
                          *(f"output.dense.{a}" for a in ADAPTER)) + BERT_HEAD),
    "pfeiffer": (per_block("bert.encoder.layer", *(f"output.dense.{a}" for a in ADAPTER)) + BERT_HEAD,
                 per_block("bert.encoder.layer", *(f"output.dense.{a}" for a in ADAPTER)) + BERT_HEAD),
    "lora": (per_block("bert.encoder.layer", *LORA_QV) + BERT_HEAD,
             per_block("base_model.model.bert.encoder.layer", *LORA_QV)
             + ["base_model.model.classifier.bias", "base_model.model.classifier.weight"]),
    "prefix-tuning": (BERT_HEAD + ["prefix_encoder.prefix"],
                      ["base_model.classifier.bias", "base_model.classifier.weight", "prompt_embeddings"]),
}
LLAMA = {
    "lora": (per_block("model.layers", *LLAMA_LORA_QV),
             per_block("base_model.model.model.layers", *LLAMA_LORA_QV)),
    "prefix-tuning": (["prefix_encoder.prefix"], ["prompt_embeddings"]),
}


def trainable_and_saved(name: str, model, tmp_path: Path, options: dict | None = None) -> tuple[list[str], list[str]]:
    method = registries().methods.get(name)
    applied = method.apply(model, make_options(method, options or {}), head_modules(model))
    trainable = sorted(n for n, p in model.named_parameters() if p.requires_grad)
    applied.save(tmp_path)
    return trainable, sorted(load_file(str(tmp_path / "adapter_model.safetensors")))


def test_every_built_in_method_has_pinned_names() -> None:
    methods = registries().methods
    built_in = {n for n in methods.names() if methods.entry(n).provider.distribution == "tunekit"}
    assert built_in == set(BERT) | {"full"}, "pin the trainable and saved key names of the new built-in method here"


@pytest.mark.parametrize("name", sorted(BERT))
def test_bert_key_names(name: str, tmp_path: Path) -> None:
    expected_trainable, expected_saved = BERT[name]
    assert trainable_and_saved(name, tiny_bert(), tmp_path) == (sorted(expected_trainable), sorted(expected_saved))


@pytest.mark.parametrize("name", sorted(LLAMA))
def test_llama_key_names(name: str, tmp_path: Path) -> None:
    expected_trainable, expected_saved = LLAMA[name]
    assert trainable_and_saved(name, tiny_llama(), tmp_path) == (sorted(expected_trainable), sorted(expected_saved))


def test_lora_on_query_and_on_key_differ_in_names_not_in_count(tmp_path: Path) -> None:
    query = trainable_and_saved("lora", tiny_bert(), tmp_path / "q", {"target_modules": ["query"]})
    key = trainable_and_saved("lora", tiny_bert(), tmp_path / "k", {"target_modules": ["key"]})
    assert len(query[1]) == len(key[1]) == 6
    assert [n for n in key[0] if "lora" in n] == per_block(
        "bert.encoder.layer", "attention.self.key.lora_A.weight", "attention.self.key.lora_B.weight")
    assert [n for n in query[0] if "lora" in n] == per_block(
        "bert.encoder.layer", "attention.self.query.lora_A.weight", "attention.self.query.lora_B.weight")


def test_full_trains_and_saves_every_parameter(tmp_path: Path) -> None:
    model = tiny_bert()
    method = registries().methods.get("full")
    applied = method.apply(model, make_options(method, {}), head_modules(model))
    applied.save(tmp_path)
    names = sorted(n for n, _ in model.named_parameters())
    assert sorted(n for n, p in model.named_parameters() if p.requires_grad) == names
    assert sorted(load_file(str(tmp_path / "model.safetensors"))) == names
