"""Tiny random T5 / BART models and a copy task for the encoder-decoder method tests.

The models are built from small configs (no hub); the copy task maps random token ids to the same ids as
labels, so a method that can move the model at all lowers the teacher-forced loss within a few steps.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import BartConfig, BartForConditionalGeneration, T5Config, T5ForConditionalGeneration

from tunekit.methods.protocol import make_options
from tunekit.plugins import registries

VOCAB = 24
LENGTH = 6


def tiny_t5(layers: int = 2, decoder_layers: int = 2, gated: bool = False, seed: int = 0, width: int = 32) -> nn.Module:
    """A T5 (or, ``gated``, a T5 v1.1 / mT5-style) model with two small stacks; dropout off."""
    torch.manual_seed(seed)
    config = T5Config(vocab_size=VOCAB, d_model=width, d_kv=width // 4, num_heads=4, d_ff=width * 3 // 2, num_layers=layers,
                      num_decoder_layers=decoder_layers, relative_attention_num_buckets=8, dropout_rate=0.0,
                      feed_forward_proj="gated-gelu" if gated else "relu", pad_token_id=0, eos_token_id=1,
                      decoder_start_token_id=0, tie_word_embeddings=not gated)
    return T5ForConditionalGeneration(config).eval()


def tiny_bart(layers: int = 2, decoder_layers: int = 2, seed: int = 0) -> nn.Module:
    """A BART model with two small stacks; dropout off; weights drawn wide enough for a copy task to train."""
    torch.manual_seed(seed)
    config = BartConfig(vocab_size=VOCAB, d_model=32, encoder_layers=layers, decoder_layers=decoder_layers,
                        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=48, decoder_ffn_dim=48,
                        max_position_embeddings=32, dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
                        pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2,
                        forced_eos_token_id=None, init_std=0.2)  # 0.2: the default 0.02 barely trains from random
    return BartForConditionalGeneration(config).eval()


FACTORIES = {"t5": tiny_t5, "bart": tiny_bart}


def copy_batch(batch: int = 16, seed: int = 0) -> dict[str, torch.Tensor]:
    """Source ids (never a special id), an all-ones mask, and the same ids as labels."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, VOCAB, (batch, LENGTH), generator=g)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}


def apply(name: str, model: nn.Module, **options: Any) -> Any:
    """Apply the registered method ``name`` with ``options`` (no task head: seq2seq keeps the LM head tied)."""
    method = registries().methods.get(name)
    return method.apply(model, make_options(method, options), [])


def loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> float:
    model.eval()
    with torch.no_grad():
        return float(model(**batch).loss)


def train(model: nn.Module, batch: dict[str, torch.Tensor], steps: int, lr: float) -> tuple[float, float]:
    """(loss before, loss after) ``steps`` Adam steps on ``batch`` over the trainable parameters."""
    before = loss(model, batch)
    params = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.Adam(params, lr=lr)
    model.train()
    for _ in range(steps):
        optimiser.zero_grad()
        model(**batch).loss.backward()
        optimiser.step()
    return before, loss(model, batch)


def logits(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(**batch).logits.float()
