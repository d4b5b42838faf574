"""Prompt tuning on tiny BERT (classification), GPT-2 and Llama (GQA) causal LMs, incl. cached generate."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import tunekit_prompt_tuning
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
)
from tunekit_prompt_tuning import PromptTuning

from tunekit import plugins
from tunekit.errors import CheckpointError, ConfigError, MethodError
from tunekit.methods.protocol import count_parameters, make_options

CONFIGS = {
    "bert": BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                       intermediate_size=48, max_position_embeddings=64, num_labels=3),
    "gpt2": GPT2Config(vocab_size=99, n_embd=32, n_layer=2, n_head=4, n_positions=64, bos_token_id=1,
                       eos_token_id=2, pad_token_id=0),
    "llama": LlamaConfig(vocab_size=99, hidden_size=36, num_hidden_layers=2, num_attention_heads=6,
                         num_key_value_heads=2, intermediate_size=40, max_position_embeddings=64,
                         bos_token_id=1, eos_token_id=2, pad_token_id=0),
}
CLASSES = {"bert": BertForSequenceClassification, "gpt2": GPT2LMHeadModel, "llama": LlamaForCausalLM}
WIDTH = {"bert": 32, "gpt2": 32, "llama": 36}


def tiny(kind: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return CLASSES[kind](CONFIGS[kind]).eval()


def options(**values: object) -> tunekit_prompt_tuning.PromptTuningOptions:
    return make_options(PromptTuning(), {"num_virtual_tokens": 4, **values})


IDS = torch.tensor([[0, 0, 5, 6, 7, 8], [3, 4, 5, 6, 7, 8]])
MASK = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]])  # left padding, as for generation


@pytest.mark.parametrize("kind", sorted(CLASSES))
def test_trainable_count_is_tokens_times_width(kind: str) -> None:
    model = tiny(kind)
    keep = ["classifier"] if kind == "bert" else []
    PromptTuning().apply(model, options(), keep_trainable=keep)
    head = sum(p.numel() for p in model.classifier.parameters()) if kind == "bert" else 0
    assert count_parameters(model)[0] == 4 * WIDTH[kind] + head
    assert PromptTuning().expected_trainable(CONFIGS[kind], options()) == 4 * WIDTH[kind]


def test_pinned_counts_for_full_size_configs() -> None:
    method = PromptTuning()
    assert method.expected_trainable(GPT2Config(), options(num_virtual_tokens=20)) == 15_360
    assert method.expected_trainable(BertConfig(), options(num_virtual_tokens=20)) == 15_360
    smol = LlamaConfig(hidden_size=576, num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3)
    assert method.expected_trainable(smol, options(num_virtual_tokens=20)) == 11_520


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_equals_the_base_model_run_on_explicitly_prepended_embeddings(kind: str) -> None:
    base = tiny(kind)
    model = tiny(kind)
    applied = PromptTuning().apply(model, options())
    with torch.no_grad():
        got = model(input_ids=IDS, attention_mask=MASK).logits
        prompt = applied.prompt.weight.unsqueeze(0).expand(2, -1, -1)
        embeds = torch.cat([prompt, base.get_input_embeddings()(IDS)], dim=1)
        mask = torch.cat([torch.ones(2, 4, dtype=MASK.dtype), MASK], dim=1)
        want = base(inputs_embeds=embeds, attention_mask=mask).logits[:, 4:]
    assert got.shape == (2, 6, 99)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_cached_generate_matches_uncached_greedy_decoding(kind: str) -> None:
    model = tiny(kind)
    PromptTuning().apply(model, options(init="random", seed=3))
    generated = model.generate(input_ids=IDS, attention_mask=MASK, max_new_tokens=5, do_sample=False,
                               min_new_tokens=5, pad_token_id=0)
    seq, mask = IDS, MASK
    with torch.no_grad():
        for _ in range(5):
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            logits = model(input_ids=seq, attention_mask=mask, position_ids=positions, use_cache=False).logits
            logits[:, 2] = float("-inf")  # min_new_tokens bans EOS
            nxt = logits[:, -1].argmax(-1, keepdim=True)
            seq, mask = torch.cat([seq, nxt], 1), torch.cat([mask, torch.ones_like(nxt)], 1)
    assert generated.tolist() == seq.tolist()


def test_the_prompt_changes_the_model_and_loss_uses_the_callers_labels() -> None:
    base, model = tiny("llama"), tiny("llama")
    PromptTuning().apply(model, options())
    with torch.no_grad():
        out = model(input_ids=IDS, attention_mask=MASK, labels=IDS)
        plain = base(input_ids=IDS, attention_mask=MASK, labels=IDS)
    assert out.logits.shape == plain.logits.shape
    assert not torch.allclose(out.logits, plain.logits, atol=1e-4)
    manual = torch.nn.functional.cross_entropy(out.logits[:, :-1].reshape(-1, 99), IDS[:, 1:].reshape(-1))
    torch.testing.assert_close(out.loss, manual, rtol=1e-5, atol=1e-6)


def test_encoder_classification_trains_prompt_and_head_only() -> None:
    model = tiny("bert").train()
    applied = PromptTuning().apply(model, options(), keep_trainable=["classifier"])
    assert applied.injected == ["bert.soft_prompt", "classifier"]
    assert applied.new_parameters == ["bert.soft_prompt.weight"]
    frozen = {n: p.clone() for n, p in model.named_parameters() if not p.requires_grad}
    start = applied.prompt.weight.clone()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    token_types = torch.zeros_like(IDS)
    loss = model(input_ids=IDS, attention_mask=MASK, token_type_ids=token_types, labels=torch.tensor([0, 2])).loss
    loss.backward()
    opt.step()
    assert not torch.equal(applied.prompt.weight, start)
    assert all(torch.equal(p, frozen[n]) for n, p in model.named_parameters() if n in frozen)


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    model = tiny("bert")
    applied = PromptTuning().apply(model, options(), keep_trainable=["classifier"])
    with torch.no_grad():
        applied.prompt.weight.add_(0.3)
        model.classifier.bias.add_(1.0)
        expected = model(input_ids=IDS, attention_mask=MASK).logits
    applied.save(tmp_path / "adapter")
    fresh = tiny("bert")
    loaded = PromptTuning().load(fresh, tmp_path / "adapter")
    with torch.no_grad():
        torch.testing.assert_close(fresh(input_ids=IDS, attention_mask=MASK).logits, expected, rtol=0, atol=0)
    assert sorted(loaded.trainable_state_dict()) == ["bert.soft_prompt.weight", "classifier.bias", "classifier.weight"]
    with pytest.raises(MethodError, match="'classifier'"):
        PromptTuning().apply(untouched := tiny("gpt2"), options(), keep_trainable=["classifier"])
    assert all(p.requires_grad for p in untouched.parameters())  # refused before touching the model


def test_user_errors_are_tunekit_errors(tmp_path: Path) -> None:
    model = tiny("gpt2")
    applied = PromptTuning().apply(model, options(num_virtual_tokens=60))
    with pytest.raises(MethodError, match="exceed the model's 64 positions"):
        model(input_ids=IDS)
    with pytest.raises(MethodError, match="cannot be folded"):
        applied.merge()
    with pytest.raises(MethodError, match="already has a soft prompt"):
        PromptTuning().apply(model, options())
    with pytest.raises(ConfigError, match="num_virtual_tokens must be positive"):
        options(num_virtual_tokens=0)
    with pytest.raises(ConfigError, match="must be one of"):
        options(init="text")
    with pytest.raises(CheckpointError, match="does not exist"):
        PromptTuning().load(tiny("gpt2"), tmp_path)
    with pytest.raises(MethodError, match="token embeddings"):
        PromptTuning().apply(torch.nn.Linear(2, 2), options())


def test_vocab_initialisation_copies_embedding_rows() -> None:
    model = tiny("llama")
    applied = PromptTuning().apply(model, options(init="vocab", seed=1))
    table = model.get_input_embeddings().weight
    for row in applied.prompt.weight:
        assert (table == row).all(dim=1).any()


def test_registers_through_the_plugin_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plugins, "_current", plugins._current)
    monkeypatch.setenv("TUNEKIT_DISABLE_PLUGINS", "prompt-tuning")  # the installed copy steps aside
    regs = plugins.reset(extra_plugins=[tunekit_prompt_tuning])
    assert isinstance(regs.methods.get("prompt-tuning"), PromptTuning)


def test_loading_into_a_model_of_another_width_is_a_checkpoint_error(tmp_path: Path) -> None:
    PromptTuning().apply(model := tiny("gpt2"), options()).save(tmp_path)
    assert model is not None
    with pytest.raises(CheckpointError, match="does not match this model|shape"):
        PromptTuning().load(tiny("llama"), tmp_path)


@pytest.mark.parametrize("model", ["bert-cls", "gpt2-lm", "gpt2-cls", "llama-lm", "llama-cls"])
def test_tunekit_conformance_suite(model: str, tmp_path: Path) -> None:
    from tunekit.testing import TINY_MODELS, check_method

    check_method(PromptTuning(), {"num_virtual_tokens": 3}, TINY_MODELS[model], tmp_path)


@pytest.mark.slow
def test_smollm2_cached_generation_with_a_soft_prompt() -> None:
    """The real Llama decoder (GQA, 9 query / 3 kv heads): cached generate equals uncached greedy decoding."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunekit.models import resolve_model

    try:
        folder = resolve_model("smollm2-135m").path
    except Exception as exc:  # the model package is not installed here
        pytest.skip(f"smollm2-135m is unavailable: {exc}")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    PromptTuning().apply(model, options(num_virtual_tokens=8))
    tokenizer.padding_side = "left"
    batch = tokenizer(["The capital of France is", "Two plus two"], return_tensors="pt", padding=True)
    generated = model.generate(**batch, max_new_tokens=6, do_sample=False, min_new_tokens=6,
                               pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
    seq, mask = batch["input_ids"], batch["attention_mask"]
    banned = model.generation_config.eos_token_id
    banned = banned if isinstance(banned, list) else [banned]
    with torch.no_grad():
        for _ in range(6):
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            logits = model(input_ids=seq, attention_mask=mask, position_ids=positions, use_cache=False).logits[:, -1]
            logits[:, [b for b in banned if b is not None]] = float("-inf")
            nxt = logits.argmax(-1, keepdim=True)
            seq, mask = torch.cat([seq, nxt], 1), torch.cat([mask, torch.ones_like(nxt)], 1)
    assert generated.tolist() == seq.tolist()
