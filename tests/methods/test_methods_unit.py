"""Unit tests of the built-in methods' behaviour beyond the conformance kit: targets, errors, files."""

from __future__ import annotations

import json

import pytest
import torch

from tunekit.errors import CheckpointError, ConfigError, MethodError
from tunekit.methods import adapter_files, architecture
from tunekit.methods.protocol import apply_method, make_options
from tunekit.plugins import registries
from tunekit.testing import outputs, perturb, sample_inputs, tiny_bert, tiny_gpt2, tiny_llama


def method(name):
    return registries().methods.get(name)


def apply(name, model, keep=(), **options):
    m = method(name)
    return m.apply(model, make_options(m, options), list(keep))


# ---------------------------------------------------------------- arch


def test_arch_finds_modules_of_each_family():
    bert, gpt2, llama = tiny_bert(), tiny_gpt2(), tiny_llama()
    assert architecture.attention_outputs(bert)[0] == "bert.encoder.layer.0.attention.output.dense"
    assert architecture.ffn_outputs(gpt2)[1] == "transformer.h.1.mlp.c_proj"
    assert architecture.final_norm(llama) == "model.norm"
    assert architecture.final_norm(bert) is None
    assert architecture.embeddings(gpt2) == ["transformer.wte", "transformer.wpe"]
    info = architecture.arch_info(llama)
    assert (info.heads, info.kv_heads, info.head_dim, info.kv_dim) == (6, 2, 8, 16)
    assert "lm_head" not in architecture.linear_modules(llama)


def test_unknown_architecture_is_a_method_error():
    from transformers import DistilBertConfig, DistilBertModel

    model = DistilBertModel(DistilBertConfig(dim=32, n_layers=1, n_heads=2, hidden_dim=32, vocab_size=50))
    with pytest.raises(MethodError, match="distilbert"):
        apply("lora", model)


# ---------------------------------------------------------------- lora targets


def _wrapped(model):
    return sorted(n for n, m in model.named_modules() if type(m).__name__ == "LoraWrapper")


def test_lora_default_targets_per_family():
    assert _wrapped(apply("lora", tiny_bert()).model)[0].endswith("attention.self.query")
    assert all(n.endswith("c_attn") for n in _wrapped(apply("lora", tiny_gpt2()).model))
    assert {n.rsplit(".", 1)[1] for n in _wrapped(apply("lora", tiny_llama()).model)} == {"q_proj", "v_proj"}


def test_lora_regex_is_a_full_match_and_comma_string_is_a_list():
    a = apply("lora", tiny_bert(), target_modules=r".*\.layer\.1\.attention\.self\.(query|key)")
    assert _wrapped(a.model) == ["bert.encoder.layer.1.attention.self.key", "bert.encoder.layer.1.attention.self.query"]
    b = apply("lora", tiny_bert(), target_modules="key,value")
    assert len(_wrapped(b.model)) == 4


def test_lora_all_linear_never_touches_the_head_or_pooler():
    a = apply("lora", tiny_bert(), keep=["classifier"], target_modules="all-linear")
    wrapped = _wrapped(a.model)
    assert len(wrapped) == 2 * 6
    assert not any("pooler" in n or "classifier" in n for n in wrapped)
    assert a.file_config()["target_modules"] == ["dense", "key", "query", "value"] or "pooler" not in str(
        a.file_config()["target_modules"])


@pytest.mark.parametrize("targets", [["qurey"], "does_not_exist_regex.*"])
def test_lora_target_matching_nothing_names_the_pattern_and_lists_names(targets):
    with pytest.raises(MethodError) as info:
        apply("lora", tiny_bert(), target_modules=targets)
    message = str(info.value)
    assert (targets[0] if isinstance(targets, list) else targets) in message
    assert "query" in message and "value" in message


def test_lora_invalid_regex():
    with pytest.raises(MethodError, match="invalid"):
        apply("lora", tiny_bert(), target_modules="(query")


def test_lora_alpha_defaults_to_twice_r():
    a = apply("lora", tiny_gpt2(), r=4)
    wrapper = a.model.get_submodule(_wrapped(a.model)[0])
    assert wrapper.scaling == 2.0
    assert a.file_config()["lora_alpha"] == 8.0
    assert a.file_config()["fan_in_fan_out"] is True


def test_lora_options_validation():
    for bad in ({"r": 0}, {"dropout": 1.5}, {"alpha": -1}, {"target_modules": []}):
        with pytest.raises(ConfigError):
            make_options(method("lora"), bad)


def test_lora_unload_leaves_plain_merged_model():
    model = tiny_gpt2()
    a = apply("lora", model, r=2)
    perturb(model)
    inputs = sample_inputs(model)
    expected = outputs(model, inputs)
    plain = a.unload()
    assert not _wrapped(plain)
    torch.testing.assert_close(outputs(plain, inputs), expected, atol=1e-5, rtol=0)


def test_apply_method_reports_counts():
    report = apply_method(tiny_bert(), "lora", keep_trainable=["classifier"], r=2)
    assert report.trainable_params == 2 * 2 * (2 * (32 + 32)) + (32 * 3 + 3)
    assert report.line().startswith("trainable params: ")


def test_keep_trainable_must_exist():
    with pytest.raises(MethodError, match="nope"):
        apply("houlsby", tiny_bert(), keep=["nope"])


# ---------------------------------------------------------------- other methods


def test_freeze_trains_top_blocks_and_final_norm_only():
    model = tiny_llama()
    apply("freeze", model, trainable_layers=1)
    trainable = {n.split(".weight")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert all(n.startswith("model.layers.1.") or n == "model.norm" for n in trainable)
    assert "model.norm" in trainable


def test_freeze_more_layers_than_the_model_has():
    with pytest.raises(MethodError, match="at most 2"):
        apply("freeze", tiny_bert(), trainable_layers=3)


def test_bottleneck_reduction_too_large():
    with pytest.raises(MethodError, match="reduction factor"):
        apply("pfeiffer", tiny_bert(), reduction_factor=64)


def test_non_linearity_must_be_known():
    with pytest.raises(ConfigError, match="non_linearity"):
        make_options(method("houlsby"), {"non_linearity": "swish"})


def test_only_lora_merges():
    a = apply("houlsby", tiny_bert())
    with pytest.raises(MethodError):
        a.merge()


# ---------------------------------------------------------------- prefix tuning


def test_prefix_has_kv_head_count_for_gqa():
    model = tiny_llama()
    a = apply("prefix-tuning", model, num_virtual_tokens=5)
    assert a.encoder.kv_heads == 2
    assert a.file_config()["num_attention_heads"] == 2 and a.file_config()["token_dim"] == 16


@pytest.mark.parametrize("factory", [tiny_llama, tiny_gpt2])
def test_prefix_generation_with_kv_cache_matches_full_forward(factory):
    """Each step's logits from cached generation equal a full forward over the whole sequence."""
    model = factory()
    apply("prefix-tuning", model, num_virtual_tokens=3)
    perturb(model, scale=0.5)
    ids = sample_inputs(model, batch=2, length=5)["input_ids"]
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=5, do_sample=False,
                         pad_token_id=0, return_dict_in_generate=True, output_logits=True)
    seq = out.sequences
    with torch.no_grad():
        full = model(input_ids=seq[:, :-1], attention_mask=torch.ones_like(seq[:, :-1])).logits
    for step, logits in enumerate(out.logits):
        torch.testing.assert_close(logits, full[:, ids.shape[1] - 1 + step], atol=1e-5, rtol=0)


def test_prefix_changes_outputs_and_remove_restores_them():
    model = tiny_bert()
    inputs = sample_inputs(model)
    base = outputs(model, inputs)
    a = apply("prefix-tuning", model, keep=["classifier"], num_virtual_tokens=2)
    assert not torch.allclose(outputs(model, inputs), base)
    a.remove()
    torch.testing.assert_close(outputs(model, inputs), base, atol=0, rtol=0)


def test_prefix_twice_is_refused():
    model = tiny_gpt2()
    apply("prefix-tuning", model)
    with pytest.raises(MethodError, match="prefixes"):
        apply("prefix-tuning", model)


# ---------------------------------------------------------------- files


def _saved(tmp_path, name="houlsby", factory=tiny_bert, **options):
    model = factory()
    a = apply(name, model, keep=["classifier"] if factory is tiny_bert else [], **options)
    a.save(tmp_path)
    return json.loads((tmp_path / adapter_files.CONFIG_NAME).read_text())


def _rewrite(tmp_path, config):
    (tmp_path / adapter_files.CONFIG_NAME).write_text(json.dumps(config))


def test_tunekit_config_layout(tmp_path):
    config = _saved(tmp_path)
    assert config == {"tunekit_method": "houlsby", "keep_trainable": ["classifier"],
                      "options": {"reduction_factor": 16, "non_linearity": "relu", "dropout": 0.0}}
    assert adapter_files.method_of(tmp_path) == "houlsby"


def test_a_peft_folder_is_read_by_the_method_that_claims_its_type(tmp_path):
    """PEFT folders name a ``peft_type``; the method declaring that type (a plugin's too) reads it."""
    for peft_type, name in (("LORA", "lora"), ("PREFIX_TUNING", "prefix-tuning")):
        _rewrite(tmp_path, {"peft_type": peft_type})
        assert adapter_files.method_of(tmp_path) == name
    _rewrite(tmp_path, {"peft_type": "ADALORA"})
    with pytest.raises(CheckpointError, match=r"'ADALORA'.*LORA, PREFIX_TUNING"):
        adapter_files.method_of(tmp_path)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda c: c.update(extra=1), "unknown key 'extra'"),
        (lambda c: c["options"].update(reduction_factor="many"), "whole number"),
        (lambda c: c["options"].update(shape="x"), "unknown option"),
        (lambda c: c.update(tunekit_method="pfeiffer"), "written by method 'pfeiffer'"),
        (lambda c: c.update(keep_trainable="classifier"), "keep_trainable"),
    ],
)
def test_tunekit_config_is_validated(tmp_path, change, match):
    config = _saved(tmp_path)
    change(config)
    _rewrite(tmp_path, config)
    with pytest.raises(CheckpointError, match=match):
        method("houlsby").load(tiny_bert(), tmp_path)


def test_peft_config_with_unsupported_feature_is_refused(tmp_path):
    config = _saved(tmp_path, "lora")
    config["use_dora"] = True
    _rewrite(tmp_path, config)
    with pytest.raises(CheckpointError, match="use_dora"):
        method("lora").load(tiny_bert(), tmp_path)
    config["use_dora"] = False
    config["surprise"] = 1
    _rewrite(tmp_path, config)
    with pytest.raises(CheckpointError, match="surprise"):
        method("lora").load(tiny_bert(), tmp_path)


def test_loading_into_a_different_model_is_a_checkpoint_error(tmp_path):
    _saved(tmp_path, "lora", r=2)
    with pytest.raises(CheckpointError, match="shape"):
        method("lora").load(tiny_bert(hidden_size=64), tmp_path)
    _saved(tmp_path, "prefix-tuning", factory=tiny_gpt2)
    with pytest.raises(CheckpointError, match="num_layers"):
        method("prefix-tuning").load(tiny_gpt2(n_layer=3), tmp_path)


def test_missing_files(tmp_path):
    with pytest.raises(CheckpointError, match="adapter_config.json"):
        method("lora").load(tiny_bert(), tmp_path)
    _saved(tmp_path, "pfeiffer")
    (tmp_path / adapter_files.WEIGHTS_NAME).unlink()
    with pytest.raises(CheckpointError, match="incomplete"):
        method("pfeiffer").load(tiny_bert(), tmp_path)


def test_full_saves_a_model_folder_from_pretrained_opens(tmp_path):
    from transformers import AutoModelForCausalLM

    model = tiny_llama()
    a = apply("full", model)
    perturb(model)
    a.save(tmp_path)
    assert not (tmp_path / adapter_files.CONFIG_NAME).exists()
    inputs = sample_inputs(model)
    reloaded = AutoModelForCausalLM.from_pretrained(str(tmp_path))
    torch.testing.assert_close(outputs(reloaded, inputs), outputs(model, inputs), atol=1e-6, rtol=0)


@pytest.mark.parametrize(("name", "fragment", "count"), [
    ("lora", "lora_", 2 * 2 * 2), ("houlsby", ".adapter.", 2 * 2 * 4), ("prefix-tuning", "prefix_encoder", 1),
    ("freeze", None, 0),
])
def test_new_parameters_are_the_ones_the_method_created(name, fragment, count):
    a = apply(name, tiny_bert(), keep=["classifier"])
    assert len(a.new_parameters) == count
    assert all(fragment in n for n in a.new_parameters)
    assert not any(n.startswith("classifier") for n in a.new_parameters)


@pytest.mark.parametrize("factory", [tiny_bert, tiny_gpt2])
def test_prefix_accepts_positional_inputs(factory):
    model = factory()
    apply("prefix-tuning", model, keep=["classifier"] if factory is tiny_bert else [], num_virtual_tokens=2)
    ids = sample_inputs(model, batch=2)["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, model(input_ids=ids).logits, atol=0, rtol=0)
