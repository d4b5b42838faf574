"""Tiny randomly initialised models for method tests: BERT, GPT-2 (Conv1D) and Llama with GQA.

Every factory is deterministic (seeded), so two calls build bit-identical models: the conformance
checks rely on that to compare a model with a fresh copy of its base.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

VOCAB = 96


def _seeded(build: Callable[[], nn.Module], seed: int) -> nn.Module:
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        return build().eval()
    finally:
        torch.random.set_rng_state(state)


def tiny_bert(head: str = "cls", seed: int = 0, **overrides) -> nn.Module:
    """2-layer BERT, hidden 32, 4 heads; ``head`` is ``cls`` (sequence classification), ``tokens`` or ``qa``."""
    from transformers import (
        BertConfig,
        BertForQuestionAnswering,
        BertForSequenceClassification,
        BertForTokenClassification,
    )

    config = BertConfig(**{"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
                           "intermediate_size": 48, "vocab_size": VOCAB, "max_position_embeddings": 64,
                           "num_labels": 2 if head == "qa" else 3, "pad_token_id": 0, **overrides})
    cls = {"cls": BertForSequenceClassification, "tokens": BertForTokenClassification, "qa": BertForQuestionAnswering}[head]
    return _seeded(lambda: cls(config), seed)


def tiny_gpt2(head: str = "lm", seed: int = 0, **overrides) -> nn.Module:
    """2-layer GPT-2 (Conv1D layers), hidden 32, 4 heads; ``head`` is ``lm`` or ``cls``."""
    from transformers import GPT2Config, GPT2ForSequenceClassification, GPT2LMHeadModel

    config = GPT2Config(**{"n_embd": 32, "n_layer": 2, "n_head": 4, "vocab_size": VOCAB, "n_positions": 64,
                           "num_labels": 3, "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2, **overrides})
    cls = {"lm": GPT2LMHeadModel, "cls": GPT2ForSequenceClassification}[head]
    return _seeded(lambda: cls(config), seed)


def tiny_llama(head: str = "lm", seed: int = 0, **overrides) -> nn.Module:
    """2-layer Llama, hidden 48, 6 query heads / 2 kv heads (GQA); ``head`` is ``lm`` or ``cls``."""
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification

    config = LlamaConfig(**{"hidden_size": 48, "num_hidden_layers": 2, "num_attention_heads": 6,
                            "num_key_value_heads": 2, "intermediate_size": 64, "vocab_size": VOCAB,
                            "max_position_embeddings": 64, "num_labels": 3, "pad_token_id": 0,
                            "bos_token_id": 1, "eos_token_id": 2, **overrides})
    cls = {"lm": LlamaForCausalLM, "cls": LlamaForSequenceClassification}[head]
    return _seeded(lambda: cls(config), seed)


HEADS = {"BertForSequenceClassification": ["classifier"], "BertForTokenClassification": ["classifier"],
         "BertForQuestionAnswering": ["qa_outputs"], "GPT2ForSequenceClassification": ["score"],
         "LlamaForSequenceClassification": ["score"]}


def head_modules(model: nn.Module) -> list[str]:
    """The task-head module names of a tiny model (what a task would pass as ``keep_trainable``)."""
    return list(HEADS.get(type(model).__name__, []))


def sample_inputs(model: nn.Module, batch: int = 2, length: int = 7, seed: int = 0) -> dict[str, torch.Tensor]:
    """Token ids (never the pad id 0) and an attention mask with right padding in the last row."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, VOCAB, (batch, length), generator=g)
    mask = torch.ones_like(ids)
    if batch > 1:
        ids[-1, -2:] = 0
        mask[-1, -2:] = 0
    return {"input_ids": ids, "attention_mask": mask}


TINY_MODELS: dict[str, Callable[[], nn.Module]] = {
    "bert-cls": lambda: tiny_bert("cls"),
    "gpt2-lm": lambda: tiny_gpt2("lm"),
    "gpt2-cls": lambda: tiny_gpt2("cls"),
    "llama-lm": lambda: tiny_llama("lm"),
    "llama-cls": lambda: tiny_llama("cls"),
}
"""Named factories covering the three families, with and without a task head."""
