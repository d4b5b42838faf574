"""8-bit loading (bitsandbytes LLM.int8 on CPU) composed with every method that freezes the base."""

from __future__ import annotations

import warnings

import pytest
import torch

from tunekit.errors import MethodError
from tunekit.methods.architecture import arch_info
from tunekit.methods.merge import merged_float_model
from tunekit.methods.protocol import count_parameters, float_modules, make_options
from tunekit.plugins import registries
from tunekit.testing import outputs, perturb, sample_inputs, tiny_bert, tiny_llama

pytest.importorskip("bitsandbytes")


@pytest.fixture(scope="module")
def base_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-llama")
    tiny_llama("cls", hidden_size=64, num_attention_heads=4, num_key_value_heads=2).save_pretrained(str(folder))
    return folder


def load(folder, skip=("score",), quantize=True):
    from transformers import LlamaForSequenceClassification

    kwargs = registries().quantizers.get("int8").load_kwargs(list(skip)) if quantize else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return LlamaForSequenceClassification.from_pretrained(str(folder), **kwargs).eval()


def _quantized(model):
    return [n for n, m in model.named_modules() if type(m).__name__ == "Linear8bitLt"]


def test_quantizer_kwargs():
    kwargs = registries().quantizers.get("int8").load_kwargs(["classifier"])
    config = kwargs["quantization_config"]
    assert config.load_in_8bit and config.llm_int8_skip_modules[0] == "classifier"


def test_skip_patterns_cover_the_linear_layers_inside_a_skipped_module():
    from transformers.quantizers.quantizers_utils import should_convert_module

    from tunekit.builtins.quantizers.int8 import skip_patterns

    patterns = skip_patterns(["pooler", "bert.pooler", "classifier", r".*layer\.1"])
    assert patterns.count("pooler") == 1 and r".*layer\.1" in patterns and len(patterns) == 7
    for name in ("bert.pooler.dense", "classifier", "classifier.dense", "roberta.encoder.layer.1.output.dense"):
        assert not should_convert_module(name, patterns), name
    for name in ("bert.encoder.layer.0.attention.self.query", "bert.encoder.layer.11.output.dense", "pooler_x.dense"):
        assert should_convert_module(name, patterns), name


FROZEN_BASE = [("feature-extraction", {}), ("freeze", {"trainable_layers": 1}), ("houlsby", {"reduction_factor": 8}),
               ("pfeiffer", {}), ("lora", {"r": 4}), ("prefix-tuning", {"num_virtual_tokens": 3})]


@pytest.fixture(scope="module")
def bert_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-bert")
    tiny_bert("cls", hidden_size=64, intermediate_size=96).save_pretrained(str(folder))
    return folder


@pytest.mark.parametrize(("name", "options"), FROZEN_BASE)
@pytest.mark.parametrize("keep", [["classifier", "pooler"], ["bert.pooler", "classifier"]])
def test_bert_classification_trains_its_pooler_under_int8(bert_folder, name, options, keep):
    """The task's pooler and head stay float whatever the method, and the trainable count matches the float run."""
    from transformers import BertForSequenceClassification

    method = registries().methods.get(name)
    parsed = make_options(method, options)
    counts = []
    for quantize in (False, True):
        info = arch_info(BertForSequenceClassification.from_pretrained(str(bert_folder)))
        skip = [*keep, *float_modules(method, info, parsed)]
        kwargs = registries().quantizers.get("int8").load_kwargs(skip) if quantize else {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = BertForSequenceClassification.from_pretrained(str(bert_folder), **kwargs)
        assert bool(_quantized(model)) == quantize
        assert not any(n.startswith(("bert.pooler", "classifier")) for n in _quantized(model))
        method.apply(model, parsed, ["bert.pooler", "classifier"])
        counts.append(count_parameters(model)[0])
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            loss = model(**sample_inputs(model)).logits.float().pow(2).mean()
        loss.backward()
        optimizer.step()
        assert torch.isfinite(loss)
        assert model.bert.pooler.dense.weight.grad is not None
    assert counts[0] == counts[1]


@pytest.mark.parametrize(
    ("name", "options"),
    [("feature-extraction", {}), ("freeze", {"trainable_layers": 1}), ("houlsby", {"reduction_factor": 8}),
     ("pfeiffer", {}), ("lora", {"r": 4, "target_modules": "all-linear"}), ("prefix-tuning", {"num_virtual_tokens": 3})],
)
def test_methods_compose_with_int8(base_folder, name, options):
    method = registries().methods.get(name)
    parsed = make_options(method, options)
    info = arch_info(load(base_folder, quantize=False))
    model = load(base_folder, skip=["score", *float_modules(method, info, parsed)])
    assert _quantized(model), "the base should be 8-bit"
    head = sum(p.numel() for p in model.score.parameters())
    method.apply(model, parsed, ["score"])
    trainable, total = count_parameters(model)
    assert trainable - head == method.expected_trainable(info, parsed)
    assert total >= sum(p.numel() for p in load(base_folder, quantize=False).parameters())
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    inputs = sample_inputs(model)
    for _ in range(2):
        optimizer.zero_grad()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            loss = model(**inputs).logits.float().pow(2).mean()
        loss.backward()
        optimizer.step()
    for n, p in model.named_parameters():
        assert torch.equal(p.detach(), before[n]) != p.requires_grad, n


def test_freeze_refuses_quantized_top_blocks(base_folder):
    model = load(base_folder)
    with pytest.raises(MethodError, match="quantized"):
        registries().methods.get("freeze").apply(model, make_options(registries().methods.get("freeze"), {}), ["score"])


def test_full_refuses_int8(base_folder):
    method = registries().methods.get("full")
    assert method.trains_base_weights
    with pytest.raises(MethodError, match="quantized"):
        method.apply(load(base_folder), make_options(method, {}), ["score"])


def test_lora_merge_into_int8_needs_a_float_model(base_folder, tmp_path):
    from transformers import LlamaForSequenceClassification

    model = load(base_folder)
    method = registries().methods.get("lora")
    applied = method.apply(model, make_options(method, {"r": 4}), ["score"])
    perturb(model, scale=0.05)
    inputs = sample_inputs(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantized_out = outputs(model, inputs)
    with pytest.raises(MethodError, match="merged_float_model"):
        applied.merge()
    applied.save(tmp_path / "adapter")
    merged = merged_float_model(model, applied)
    assert not _quantized(merged) and not hasattr(merged.config, "quantization_config")
    assert all(p.dtype == torch.float32 for p in merged.parameters())
    merged_out = outputs(merged, inputs)
    # int8 matmul rounding: close, not equal
    torch.testing.assert_close(merged_out, quantized_out, atol=0.05, rtol=0.05)
    merged.save_pretrained(str(tmp_path / "merged"))
    reloaded = LlamaForSequenceClassification.from_pretrained(str(tmp_path / "merged")).eval()
    torch.testing.assert_close(outputs(reloaded, inputs), merged_out, atol=1e-6, rtol=0)
    # the adapter trained on the int8 base also loads onto the float base
    fresh = load(base_folder, quantize=False)
    method.load(fresh, tmp_path / "adapter")
    torch.testing.assert_close(outputs(fresh, inputs), merged_out, atol=0.05, rtol=0.05)


def test_count_parameters_counts_packed_4bit_weights_by_their_logical_size():
    import bitsandbytes as bnb

    layer = bnb.nn.Linear4bit(64, 32, bias=False, quant_type="nf4")
    layer.weight = bnb.nn.Params4bit(torch.randn(32, 64), requires_grad=False, quant_type="nf4")
    layer = layer.to("cpu")
    if not layer.weight.bnb_quantized:
        layer.weight._quantize("cpu")
    assert layer.weight.numel() == 32 * 64 // 2  # two 4-bit values per byte
    assert count_parameters(layer) == (0, 32 * 64)


def test_runner_keeps_freezes_top_blocks_out_of_quantization(base_folder):
    from tunekit import config as config_mod
    from tunekit.models import ResolvedModel
    from tunekit.runs import quantization

    cfg = config_mod.from_dict({"model": {"name": str(base_folder), "quantize": "int8"},
                                "method": {"name": "freeze", "trainable_layers": 1}})
    method = registries().methods.get("freeze")
    skip = quantization.float_modules(cfg, method, make_options(method, cfg.method_options), ResolvedModel(str(base_folder)))
    model = load(base_folder, skip=["score", *skip])
    quantized = _quantized(model)
    assert quantized and all(n.startswith("model.layers.0.") for n in quantized)
