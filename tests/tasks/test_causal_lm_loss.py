"""causal-lm lean loss: hidden states at learned positions, projected in checkpointed chunks, equal to the
full-logits loss (value and gradients) for plain models, LoRA (also on the head) and prefix tuning."""

from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F

from tests.tasks.test_causal_lm import ALPACA, _ctx, _rows
from tunekit.builtins.tasks.causal_lm import loss as lean
from tunekit.methods.protocol import apply_method
from tunekit.models import ResolvedModel
from tunekit.plugins import registries

METHODS = {
    "full": None,
    "lora": {"r": 4},
    "lora-head": {"r": 4, "target_modules": ["lm_head"]},
    "prefix": {"num_virtual_tokens": 3},
}
METHOD_NAMES = {"full": None, "lora": "lora", "lora-head": "lora", "prefix": "prefix-tuning"}


def _job(tok, **task_options):
    return registries().tasks.get("causal-lm").prepare(_ctx(tok, _rows(ALPACA * 2), _rows(ALPACA), task_options))


def _model(job, folder, method):
    torch.manual_seed(0)
    model = job.build_model(ResolvedModel(str(folder)), {})
    if METHOD_NAMES[method]:
        apply_method(model, METHOD_NAMES[method], **METHODS[method])
        for p in model.parameters():  # start LoRA's B away from zero so the adapter changes the logits
            if p.requires_grad:
                torch.nn.init.normal_(p, std=0.05)
    return model


def _reference(model, batch):
    """The loss the plain way: full logits for every position, float32 cross-entropy, mean over learned targets."""
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    if "attention_mask" not in inputs:
        inputs["use_cache"] = False
    logits = model(**inputs).logits
    target = lean.shifted_targets(batch["labels"])
    return F.cross_entropy(logits.flatten(0, 1).float(), target.flatten(), ignore_index=-100)


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad and p.grad is not None}


def _loss_and_grads(model, fn):
    model.zero_grad()
    value = fn()
    value.backward()
    return value.detach(), _grads(model)


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("arch", ["tiny_llama", "tiny_gpt2"])
def test_lean_loss_equals_full_logits(arch, method, decoder_tokenizer, request, monkeypatch):
    job = _job(decoder_tokenizer)
    model = _model(job, request.getfixturevalue(arch), method)
    model.eval()  # no dropout: both computations must see the same network
    if method == "lora-head":
        assert type(model.get_output_embeddings()).__name__ != "Linear", "LoRA did not wrap the head"
    batch = job.collate(job.train_dataset)
    monkeypatch.setattr(lean, "CHUNK_TOKENS", 7)  # several chunks, the last one short
    rows_seen: list[int] = []
    hook = model.get_output_embeddings().register_forward_hook(lambda m, a, o: rows_seen.append(a[0].shape[0]))
    value, grads = _loss_and_grads(model, lambda: job.loss(model, batch))
    hook.remove()
    learned = job.loss_weight(batch)
    assert learned == int((lean.shifted_targets(batch["labels"]) != -100).sum()) > 7
    # forward chunks of 7 learned rows, then the same chunks recomputed in backward: never a [B, L] projection
    assert sum(rows_seen) == 2 * learned and max(rows_seen) == 7
    ref, ref_grads = _loss_and_grads(model, lambda: _reference(model, batch))
    assert torch.allclose(value, ref, rtol=1e-5, atol=1e-6)
    assert grads.keys() == ref_grads.keys() and grads
    for name, g in grads.items():
        assert torch.allclose(g, ref_grads[name], rtol=1e-4, atol=1e-6), name


def test_evaluation_uses_the_lean_path(decoder_tokenizer, tiny_llama):
    job = _job(decoder_tokenizer)
    model = _model(job, tiny_llama, "full")
    batch = job.collate(job.eval_dataset)
    rows_seen: list[int] = []
    model.get_output_embeddings().register_forward_hook(lambda m, a, o: rows_seen.append(a[0].numel() // 32))
    scores = job.evaluate(model, [batch])
    assert sum(rows_seen) == job.loss_weight(batch)
    with torch.no_grad():
        assert scores["eval_loss"] == pytest.approx(float(_reference(model, batch)), rel=1e-5)


def test_post_processed_logits_fall_back_to_full_logits(decoder_tokenizer, tiny_llama, caplog):
    job = _job(decoder_tokenizer)
    model = _model(job, tiny_llama, "full")
    model.config.final_logit_softcapping = 30.0  # Llama ignores it, but a model that reads it changes its logits
    batch = job.collate(job.train_dataset)
    rows_seen: list[int] = []
    model.get_output_embeddings().register_forward_hook(lambda m, a, o: rows_seen.append(a[0].shape[:2]))
    with caplog.at_level(logging.DEBUG, logger="tunekit.tasks.causal_lm"):
        value = job.loss(model, batch)
    assert "final_logit_softcapping" in caplog.text
    assert len(rows_seen) == 1 and rows_seen[0][0] == batch["input_ids"].shape[0]  # full [B, L', d] projection
    with torch.no_grad():
        assert torch.allclose(value, _reference(model, batch), rtol=1e-5)


def test_loss_weight_counts_learned_targets_without_a_model(decoder_tokenizer):
    job = _job(decoder_tokenizer)
    labels = torch.tensor([[-100, -100, 5, 6, -100], [7, 8, -100, -100, -100]])
    assert job.loss_weight({"labels": labels}) == 3  # 5, 6 and 8; the first column is never a target
    batch = job.collate(job.train_dataset)
    assert isinstance(job.loss_weight(batch), int)
