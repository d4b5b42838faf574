"""Caching the frozen lower layers: when it applies, exactness of the replay, and training with it."""

from __future__ import annotations

import contextlib

import pytest
import torch
from tinyjob import FullApplied, TinyJob, max_diff, tiny_bert, weights
from transformers import LlamaConfig, LlamaForCausalLM

from tunekit.config import TrainingConfig
from tunekit.engine import train
from tunekit.engine.frozen_cache import build_frozen_cache, first_trainable_block


def only(model, *prefixes):
    for name, p in model.named_parameters():
        p.requires_grad = name.startswith(prefixes)
    return model


def tiny_llama():
    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                                        num_attention_heads=4, num_key_value_heads=2, vocab_size=50,
                                        tie_word_embeddings=False, pad_token_id=0))


def test_where_caching_applies():
    assert first_trainable_block(only(tiny_bert(), "classifier"), ["classifier"]) == (2, "")
    assert first_trainable_block(only(tiny_bert(), "classifier", "bert.encoder.layer.1.", "bert.pooler"),
                                 ["classifier"]) == (1, "")
    k, reason = first_trainable_block(only(tiny_bert(), "classifier", "bert.encoder.layer.0."), ["classifier"])
    assert k is None and "first block" in reason
    k, reason = first_trainable_block(only(tiny_bert(), "classifier", "bert.embeddings."), ["classifier"])
    assert k is None and "embeddings" in reason
    model = only(tiny_bert(), "classifier")
    model.prefix = torch.nn.Parameter(torch.zeros(4, 32))  # a method's parameter outside the blocks
    k, reason = first_trainable_block(model, ["classifier"])
    assert k is None and "prefix" in reason
    model = only(tiny_bert(), "classifier")
    model.bert.encoder.layer[0].register_forward_hook(lambda m, a, o: o)
    assert first_trainable_block(model, ["classifier"])[0] is None


@pytest.mark.parametrize("family", ["bert", "llama"])
def test_replay_gives_the_same_loss_as_the_whole_model(family):
    job = TinyJob(n_train=20)
    if family == "bert":
        model, head = only(tiny_bert(), "classifier", "bert.encoder.layer.1.", "bert.pooler"), ["classifier"]
    else:
        model, head = only(tiny_llama(), "model.layers.2.", "model.norm", "lm_head"), ["lm_head"]
    model.eval()
    cache = build_frozen_cache(model, job.train_dataset, job.collate, head, 4, torch.device("cpu"),
                               contextlib.nullcontext)
    assert cache is not None and cache.k == (1 if family == "bert" else 2)
    indices = [3, 7, 11, 0]
    batch = job.collate([job.train_dataset[i] for i in indices])
    if family == "llama":
        batch = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"],
                 "labels": batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)}
    with torch.no_grad():
        whole = model(**batch).loss
        with cache.replay(indices, batch):
            replayed = model(**batch).loss
    assert float(whole) == pytest.approx(float(replayed), abs=1e-5)
    assert len(getattr(model.bert.encoder if family == "bert" else model.model,
                       "layer" if family == "bert" else "layers")) == (2 if family == "bert" else 3)  # swapped back


def count_calls(module):
    """Count forward calls through an instance ``forward`` (a hook would rightly switch caching off)."""
    calls = []
    inner = module.forward

    def forward(*args, **kwargs):
        calls.append(1)
        return inner(*args, **kwargs)

    module.forward = forward
    return calls


def test_training_with_the_cache_matches_training_without_and_skips_the_lower_blocks(tmp_path):
    job = TinyJob(n_train=48, n_eval=8)
    runs = {}
    for cached in (False, True):
        model = only(tiny_bert(dropout=0.0), "classifier", "bert.encoder.layer.1.", "bert.pooler")
        calls = count_calls(model.bert.encoder.layer[0])
        tc = TrainingConfig(epochs=3, batch_size=8, lr=1e-3, logging_steps=3, cache_frozen=cached,
                            load_best_at_end=False)
        result = train(model, job, tc, tmp_path / str(cached), applied=FullApplied(model))
        runs[cached] = (weights(model), len(calls), result)
    (w_plain, calls_plain, r_plain), (w_cached, calls_cached, r_cached) = runs[False], runs[True]
    assert max_diff(w_plain, w_cached) < 1e-4
    assert r_cached.final_metrics["eval_accuracy"] == r_plain.final_metrics["eval_accuracy"]
    steps = 3 * 6
    evals = 3  # one per epoch, one batch each
    assert calls_plain == steps + evals
    assert calls_cached == 6 + evals  # the capture pass (48 examples / 8) and evaluation only
