"""training.gradient_checkpointing: the auto rule, the forced settings, exactness of the losses for every
frozen-base method, that checkpointing really recomputes, the use_cache handling and the frozen-output cache."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from tinyjob import FullApplied, TinyJob, tiny_bert
from transformers import LlamaConfig, LlamaForCausalLM

from tunekit import apply_method
from tunekit.config import TrainingConfig
from tunekit.engine import train
from tunekit.engine.memory import AUTO_TOKENS, decide, is_checkpointing
from tunekit.errors import ConfigError


def tiny_llama() -> LlamaForCausalLM:
    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                                        num_attention_heads=4, num_key_value_heads=2, vocab_size=50,
                                        tie_word_embeddings=False, pad_token_id=0))


class CausalJob(TinyJob):
    """Next-token prediction of the same random sequences (padding positions ignored)."""

    head_modules = ["lm_head"]
    metric_for_best = None

    def __init__(self, **kw):
        super().__init__(n_eval=0, **kw)

    def collate(self, features):
        batch = super().collate(features)
        labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"], "labels": labels}


def cfg(**kw) -> TrainingConfig:
    base = {"max_steps": 4, "batch_size": 4, "lr": 1e-2, "logging_steps": 1, "eval_each_epoch": False,
            "load_best_at_end": False}
    base.update(kw)
    tc = TrainingConfig(**base)
    tc.validate()
    return tc


def losses(out) -> list[float]:
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in lines if "loss" in r]


def count_calls(module, calls, key):
    """Count ``module``'s forward calls in ``calls[key]`` (by wrapping forward: a hook on a frozen block would stop
    training.cache_frozen from caching it; a forward hook would miss recomputes that stop early)."""
    inner = module.forward

    def forward(*args, **kwargs):
        calls[key] += 1
        return inner(*args, **kwargs)

    module.forward = forward


def tiny_run(tmp_path, name, family, method, checkpointing, options=None, **kw):
    """Train a fresh tiny model with ``method`` applied; returns (per-step losses, model)."""
    model = tiny_bert() if family == "bert" else tiny_llama()
    job = TinyJob(n_eval=0) if family == "bert" else CausalJob()
    keep = ["classifier"] if family == "bert" else []
    if method == "full-finetune":
        applied = FullApplied(model)
    else:
        applied = apply_method(model, method, keep_trainable=keep, **(options or {})).applied
    torch.manual_seed(1)  # a method's random initialisation above differs in nothing between the two runs
    train(model, job, cfg(gradient_checkpointing=checkpointing, **kw), tmp_path / name, applied=applied)
    return losses(tmp_path / name), model


CASES = [
    ("bert", "full-finetune", {}),
    ("bert", "lora", {"r": 2}),
    ("bert", "houlsby", {"reduction_factor": 4}),
    ("bert", "pfeiffer", {"reduction_factor": 4}),
    ("bert", "feature-extraction", {}),
    ("bert", "freeze", {"trainable_layers": 1}),
    ("bert", "ia3", {}),
    ("llama", "lora", {"r": 2}),
    ("llama", "prefix-tuning", {"num_virtual_tokens": 3}),
    ("llama", "prompt-tuning", {"num_virtual_tokens": 3}),
    ("llama", "freeze", {"trainable_layers": 1}),
    ("llama", "houlsby", {"reduction_factor": 4}),
]


@pytest.mark.parametrize(("family", "method", "options"), CASES, ids=[f"{f}-{m}" for f, m, _ in CASES])
def test_losses_are_bit_identical_with_and_without_checkpointing(tmp_path, family, method, options):
    """CPU fp32, BERT with dropout 0.1 on: non-reentrant checkpointing replays the RNG, so every step's loss
    is the same float."""
    plain, _ = tiny_run(tmp_path, "plain", family, method, False, options)
    checked, model = tiny_run(tmp_path, "ckpt", family, method, True, options)
    assert is_checkpointing(model)
    assert len(plain) == 4 and all(torch.isfinite(torch.tensor(plain)))
    assert checked == plain


def test_checkpointed_blocks_run_again_during_backward(tmp_path):
    """Each layer's forward runs twice per micro-batch with checkpointing (forward + recompute), once without."""
    counts = {}
    for on in (False, True):
        model = tiny_llama()
        applied = apply_method(model, "lora", r=2).applied
        calls = {1: 0}
        count_calls(model.model.layers[1].mlp, calls, 1)
        train(model, CausalJob(), cfg(max_steps=2, gradient_checkpointing=on), tmp_path / str(on), applied=applied)
        counts[on] = calls[1]
    assert counts == {False: 2, True: 4}


def test_prefix_tuning_keeps_its_prefix_under_checkpointing(tmp_path):
    """transformers drops a checkpointed block's cache; tunekit keeps it, so the prefixes still get gradients."""
    _, model = tiny_run(tmp_path, "ckpt", "llama", "prefix-tuning", True, {"num_virtual_tokens": 3})
    fresh = tiny_llama()
    apply_method(fresh, "prefix-tuning", num_virtual_tokens=3)
    trained = {n: p for n, p in model.named_parameters() if p.requires_grad}
    start = {n: p for n, p in fresh.named_parameters() if p.requires_grad}
    assert trained and all(not torch.equal(trained[n], start[n]) for n in trained)


def test_use_cache_stays_on_for_generation(tmp_path, caplog):
    model = tiny_llama()
    applied = apply_method(model, "prefix-tuning", num_virtual_tokens=3).applied
    with caplog.at_level(logging.WARNING):
        train(model, CausalJob(), cfg(max_steps=2, gradient_checkpointing=True), tmp_path / "r", applied=applied)
    assert not [r for r in caplog.records if "use_cache" in r.getMessage() or "Caching is" in r.getMessage()]
    assert model.config.use_cache is True
    model.eval()
    prompt = torch.tensor([[5, 6, 7]])
    with torch.no_grad():
        out = model.generate(prompt, max_new_tokens=3, do_sample=False, return_dict_in_generate=True, pad_token_id=0)
        assert out.past_key_values is not None  # generation used the key/value cache
        # the same tokens as without the cache: the cache (prefixes included) is consistent
        again = model.generate(prompt, max_new_tokens=3, do_sample=False, use_cache=False, pad_token_id=0)
    assert torch.equal(out.sequences, again)


def test_with_the_frozen_cache_only_the_trained_blocks_recompute(tmp_path, caplog):
    counts = {}
    for on in (False, True):
        model = tiny_llama()
        applied = apply_method(model, "freeze", trainable_layers=1).applied
        calls = {0: 0, 2: 0}
        for i in calls:
            count_calls(model.model.layers[i].mlp, calls, i)
        with caplog.at_level(logging.INFO, logger="tunekit.engine"):
            train(model, CausalJob(), cfg(max_steps=2, gradient_checkpointing=on), tmp_path / str(on),
                  applied=applied)
        counts[on] = dict(calls)
    assert "cached the frozen embeddings and blocks 0-1" in caplog.text
    # block 0 runs once per example batch while caching (no gradients, nothing recomputed), never during the steps
    assert counts[True][0] == counts[False][0]
    assert counts[False][2] == 2 and counts[True][2] == 4


@pytest.mark.parametrize(("batch_size", "longest", "expected"), [(4, 1023, False), (4, 1024, True), (64, 64, True)])
def test_auto_turns_on_from_4096_tokens_per_batch(batch_size, longest, expected):
    data = [{"input_ids": [1] * longest}, {"input_ids": [1, 2]}]
    on, why = decide(cfg(batch_size=batch_size), tiny_bert(), data)
    assert on is expected and "auto" in why and str(batch_size * longest) in why
    assert AUTO_TOKENS == 4096


def test_auto_stays_off_for_a_model_without_support():
    model = torch.nn.Linear(2, 2)
    on, why = decide(cfg(batch_size=64), model, [{"input_ids": [1] * 100}])
    assert not on and "does not support" in why


def test_forced_settings_win_over_auto(tmp_path, caplog):
    assert decide(cfg(gradient_checkpointing=True), tiny_bert(), [{"input_ids": [1]}])[0] is True
    assert decide(cfg(gradient_checkpointing=False, batch_size=64), tiny_bert(), [{"input_ids": [1] * 100}])[0] is False
    with caplog.at_level(logging.INFO, logger="tunekit.engine"):
        model = tiny_bert()
        train(model, TinyJob(n_eval=0), cfg(max_steps=1), tmp_path / "auto", applied=FullApplied(model))
    assert "gradient checkpointing off: batch_size x longest example = 56 tokens < 4096 (auto)" in caplog.text
    assert not is_checkpointing(model)


def test_forcing_it_on_a_model_without_support_is_a_config_error():
    with pytest.raises(ConfigError, match=r"^training.gradient_checkpointing is true but Linear does not support"):
        decide(cfg(gradient_checkpointing=True), torch.nn.Linear(2, 2), [{"input_ids": [1]}])


def test_a_model_trained_with_checkpointing_can_train_again_without(tmp_path):
    model = tiny_llama()
    applied = apply_method(model, "lora", r=2).applied
    train(model, CausalJob(), cfg(max_steps=1, gradient_checkpointing=True), tmp_path / "on", applied=applied)
    assert is_checkpointing(model)
    train(model, CausalJob(), cfg(max_steps=1, gradient_checkpointing=False), tmp_path / "off", applied=applied)
    assert not is_checkpointing(model) and not model._forward_pre_hooks


@pytest.mark.parametrize(("args", "expected"), [([], None), (["--gradient-checkpointing"], True),
                                                (["--no-gradient-checkpointing"], False)])
def test_the_run_flag_is_three_way(args, expected):
    """``bool | None`` gets ``--flag/--no-flag``: unset leaves auto, and an explicit false reaches the config."""
    from tunekit.cli.run import overrides_from_flags, run

    values = run.make_context("run", list(args)).params
    tree = overrides_from_flags(values)
    assert tree.get("training", {}).get("gradient_checkpointing") == expected
    assert "resume" not in tree.get("training", {})  # a plain on/off flag left off still sets nothing


@pytest.mark.parametrize("quant", ["int8", "nf4"])
def test_a_quantized_base_trains_the_same_with_checkpointing(tmp_path, quant):
    """LoRA over an int8 / nf4 base (the QLoRA case): checkpointing recomputes the quantized blocks exactly."""
    pytest.importorskip("bitsandbytes")
    from tunekit.plugins import registries
    from tunekit.runs.quantization import Quantization, quantizer_options

    folder = tmp_path / "base"
    tiny_llama().save_pretrained(str(folder))
    quantizer = registries().quantizers.get(quant)
    quantization = Quantization(quantizer, quantizer_options(quantizer, {}))

    def run(name, checkpointing):
        model = LlamaForCausalLM.from_pretrained(str(folder), **quantization.load_kwargs(["lm_head"]))
        getattr(quantizer, "after_load", lambda m: None)(model)
        torch.manual_seed(0)
        applied = apply_method(model, "lora", r=2).applied
        train(model, CausalJob(), cfg(gradient_checkpointing=checkpointing), tmp_path / name, applied=applied)
        return losses(tmp_path / name), model

    plain, _ = run("plain", False)
    checked, model = run("ckpt", True)
    assert is_checkpointing(model)
    assert any(type(m).__name__ in ("Linear8bitLt", "Linear4bit") for m in model.modules())
    assert len(plain) == 4 and all(torch.isfinite(torch.tensor(plain)))
    assert checked == plain
