"""4-bit loading (``--quantize nf4`` / ``fp4``, bitsandbytes on CPU) composed with every method that freezes the base.

Tiny random Llama / BERT models: the trained modules stay float, the trainable and total counts equal the
float model's, a few steps lower the loss through the 4-bit base, merge-capable methods export a float model
that computes what the quantized one did, and the bad inputs end in one-sentence errors.
"""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from tunekit import config as config_mod
from tunekit.errors import ConfigError, MethodError, UsageError
from tunekit.methods.architecture import arch_info
from tunekit.methods.merge import merged_float_model
from tunekit.methods.protocol import count_parameters, float_modules, make_options
from tunekit.plugins import registries
from tunekit.runs import quantization
from tunekit.testing import outputs, perturb, sample_inputs, tiny_bert, tiny_llama

pytest.importorskip("bitsandbytes")

QUANT_TYPES = ["nf4", "fp4"]
# Every method that leaves the base frozen (freeze keeps its top block out of quantization), plugins included.
FROZEN_BASE = [("lora", {"r": 4, "target_modules": "all-linear"}), ("houlsby", {"reduction_factor": 8}),
               ("pfeiffer", {}), ("prefix-tuning", {"num_virtual_tokens": 3}), ("ia3", {}),
               ("prompt-tuning", {"num_virtual_tokens": 3}), ("freeze", {"trainable_layers": 1})]


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def _quantized(model):
    return [n for n, m in model.named_modules() if type(m).__name__ == "Linear4bit"]


def _method(name, options):
    if name not in registries().methods:
        pytest.skip(f"the {name} plugin is not installed (pip install -e plugins/tunekit-{name})")
    method = registries().methods.get(name)
    return method, make_options(method, options)


@pytest.fixture(scope="module")
def lm_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-llama-lm")
    tiny_llama("lm", hidden_size=64, num_attention_heads=4, num_key_value_heads=2).save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def cls_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-llama-cls")
    tiny_llama("cls", hidden_size=64, num_attention_heads=4, num_key_value_heads=2).save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def bert_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-bert")
    tiny_bert("cls", hidden_size=64, intermediate_size=128).save_pretrained(str(folder))
    return folder


def load(cls, folder, quant=None, skip=(), **options):
    """``cls`` from ``folder``, 4-bit when ``quant`` names a quantizer, finished as the runner does (``after_load``)."""
    quantizer = registries().quantizers.get(quant) if quant else None
    kwargs = quantizer.load_kwargs(list(skip), quantizer.options_class(**options)) if quantizer else {}
    model = _quiet(cls.from_pretrained, str(folder), **kwargs).eval()
    if quantizer:
        quantizer.after_load(model)
    return model


def _lm_loss(model, inputs):
    """Next-token loss over the caller's positions (a soft prompt's extra positions, if any, are cut off)."""
    ids = inputs["input_ids"]
    logits = _quiet(model, **inputs).logits[:, -ids.shape[1]:].float()
    labels = ids.masked_fill(inputs["attention_mask"] == 0, -100)
    return torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(), ignore_index=-100)


@pytest.mark.parametrize("quant", QUANT_TYPES)
def test_load_kwargs_carry_the_options(quant):
    quantizer = registries().quantizers.get(quant)
    config = quantizer.load_kwargs(["classifier"], quantizer.options_class())["quantization_config"]
    assert config.load_in_4bit and not config.load_in_8bit and config.bnb_4bit_quant_type == quant
    assert config.bnb_4bit_use_double_quant and config.llm_int8_skip_modules[0] == "classifier"
    assert config.bnb_4bit_compute_dtype == (torch.bfloat16 if torch.cuda.is_available()
                                             and torch.cuda.is_bf16_supported() else torch.float32)  # "auto"
    options = quantizer.options_class(compute_dtype="float16", double_quant=False)
    config = quantizer.load_kwargs([], options)["quantization_config"]
    assert config.bnb_4bit_compute_dtype == torch.float16 and not config.bnb_4bit_use_double_quant
    assert config.llm_int8_skip_modules is None


@pytest.mark.parametrize("quant", QUANT_TYPES)
@pytest.mark.parametrize(("name", "options"), FROZEN_BASE)
def test_methods_train_through_a_4bit_llama(lm_folder, quant, name, options):
    """Counts equal the float model's, only float parameters train, and a few steps lower the loss."""
    method, parsed = _method(name, options)
    reference = load(__import__("transformers").LlamaForCausalLM, lm_folder)
    info = arch_info(reference)
    method.apply(reference, parsed, [])
    model = load(type(reference), lm_folder, quant, float_modules(method, info, parsed))
    assert _quantized(model), "the base should be 4-bit"
    method.apply(model, parsed, [])
    assert count_parameters(model) == count_parameters(reference)
    assert count_parameters(model)[0] == method.expected_trainable(info, parsed)
    trained = [p for p in model.parameters() if p.requires_grad]
    assert all(p.dtype == torch.float32 for p in trained)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.AdamW(trained, lr=2e-2)
    inputs = sample_inputs(model, batch=2, length=12)
    losses = []
    model.train()
    for _ in range(8):
        optimizer.zero_grad()
        loss = _lm_loss(model, inputs)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.995 * losses[0], losses  # ia3, the smallest, lowers it by ~0.75% here
    for n, p in model.named_parameters():
        assert torch.equal(p.detach(), before[n]) != p.requires_grad, n


@pytest.mark.parametrize(("name", "options"), [("feature-extraction", {}), *FROZEN_BASE])
def test_bert_classification_keeps_its_pooler_and_head_float_under_nf4(bert_folder, name, options):
    from transformers import BertForSequenceClassification

    method, parsed = _method(name, options)
    keep = ["bert.pooler", "classifier"]
    counts = []
    for quant in (None, "nf4"):
        info = arch_info(load(BertForSequenceClassification, bert_folder))
        model = load(BertForSequenceClassification, bert_folder, quant, [*keep, *float_modules(method, info, parsed)])
        assert bool(_quantized(model)) == bool(quant)
        assert not any(n.startswith(("bert.pooler", "classifier")) for n in _quantized(model))
        method.apply(model, parsed, keep)
        counts.append(count_parameters(model))
        loss = _quiet(model, **sample_inputs(model)).logits.float().pow(2).mean()
        loss.backward()
        assert torch.isfinite(loss) and model.bert.pooler.dense.weight.grad is not None
    assert counts[0] == counts[1]


@pytest.mark.parametrize("quant", QUANT_TYPES)
@pytest.mark.parametrize(("name", "options"), [("lora", {"r": 4, "target_modules": "all-linear"}), ("ia3", {})])
def test_merged_float_model_computes_what_the_4bit_model_did(cls_folder, tmp_path, quant, name, options):
    """Exact up to float rounding: the export dequantizes with the same bitsandbytes routine the 4-bit
    matmul uses (compute dtype float32 here), so only the order of the additions differs."""
    from transformers import LlamaForSequenceClassification

    method, parsed = _method(name, options)
    model = load(LlamaForSequenceClassification, cls_folder, quant, ["score"], compute_dtype="float32")
    applied = method.apply(model, parsed, ["score"])
    perturb(model, scale=0.05)
    inputs = sample_inputs(model)
    quantized_out = _quiet(outputs, model, inputs)
    with pytest.raises(MethodError):
        applied.merge()  # merging into packed 4-bit weights would round the update away
    merged = merged_float_model(model, applied)
    assert not _quantized(merged) and not hasattr(merged.config, "quantization_config")
    assert all(p.dtype == torch.float32 for p in merged.parameters())
    merged_out = outputs(merged, inputs)
    torch.testing.assert_close(merged_out, quantized_out, atol=1e-4, rtol=1e-4)
    merged.save_pretrained(str(tmp_path / "merged"))
    reloaded = LlamaForSequenceClassification.from_pretrained(str(tmp_path / "merged")).eval()
    torch.testing.assert_close(outputs(reloaded, inputs), merged_out, atol=1e-6, rtol=0)


def test_training_after_an_evaluation_still_reaches_every_layer(lm_folder):
    """An eval-mode pass without gradients (evaluation, held-out answers) must not cut training's gradients.

    bitsandbytes' AVX512-BF16 CPU kernel, which it switches to on such a pass, has no backward; ``after_load``
    keeps it off. Without ``after_load`` the loss reaches no LoRA weight on a CPU that has the kernel.
    """
    from transformers import LlamaForCausalLM

    model = load(LlamaForCausalLM, lm_folder, "nf4", compute_dtype="float32")
    inputs = sample_inputs(model)
    with torch.no_grad():
        _quiet(model, **inputs)  # eval mode, no gradients
    method, parsed = _method("lora", {"r": 4})
    method.apply(model.train(), parsed, [])
    perturb(model)
    _lm_loss(model, inputs).backward()
    reached = [p.grad is not None and bool(p.grad.abs().sum() > 0) for p in model.parameters() if p.requires_grad]
    assert reached and all(reached)


def test_full_and_quantized_freeze_are_refused(cls_folder):
    from transformers import LlamaForSequenceClassification

    cfg = config_mod.from_dict({"model": {"name": str(cls_folder), "quantize": "nf4"}, "method": {"name": "full"}})
    with pytest.raises(UsageError, match=r"method 'full' trains the base weights, which cannot be trained in nf4; drop"):
        quantization.check_quantize(cfg, registries().methods.get("full"))
    model = load(LlamaForSequenceClassification, cls_folder, "fp4", ["score"])
    for name in ("full", "freeze"):  # freeze whose top blocks were quantized anyway (no float_modules skip)
        method = registries().methods.get(name)
        with pytest.raises(MethodError, match="quantized"):
            method.apply(model, make_options(method, {}), ["score"])


def test_quantize_options_from_set_reach_the_quantizer(cls_folder):
    cfg = config_mod.load(overrides={"model": {"name": str(cls_folder), "quantize": "nf4"}},
                          sets=["model.quantize_options.compute_dtype=bfloat16", "model.quantize_options.double_quant=no"])
    assert cfg.model.quantize_options == {"compute_dtype": "bfloat16", "double_quant": False}  # YAML reads `no`
    quant = quantization.check_quantize(cfg, registries().methods.get("lora"))
    assert quant.options == registries().quantizers.get("nf4").options_class("bfloat16", False)
    config = quant.load_kwargs(["score"])["quantization_config"]
    assert config.bnb_4bit_compute_dtype == torch.bfloat16 and not config.bnb_4bit_use_double_quant


@pytest.mark.parametrize(("quantize", "options", "phrase"), [
    ("nf4", {"dtype": "bfloat16"}, r"unknown option model.quantize_options.dtype; known options: "
                                   r"model.quantize_options.compute_dtype, model.quantize_options.double_quant\."),
    ("fp4", {"compute_dtype": "int4"}, r"model.quantize_options.compute_dtype must be one of 'auto', .*not 'int4'\."),
    ("int8", {"compute_dtype": "float32"}, r"quantizer 'int8' takes no options, .*remove model.quantize_options\."),
])
def test_bad_quantize_options_are_one_sentence_config_errors(cls_folder, quantize, options, phrase):
    cfg = config_mod.from_dict({"model": {"name": str(cls_folder), "quantize": quantize, "quantize_options": options}})
    with pytest.raises(ConfigError, match=phrase):
        quantization.check_quantize(cfg, registries().methods.get("lora"))


def test_a_quantizer_without_options_keeps_the_one_argument_call():
    """The 0.1 protocol: ``load_kwargs(skip_modules)`` only; the runner never passes options to it."""
    calls = []

    class Legacy:
        name, description = "legacy", "a 0.1 quantizer"

        def load_kwargs(self, skip_modules):
            calls.append(list(skip_modules))
            return {"marker": True}

    quant = quantization.Quantization(Legacy(), quantization.quantizer_options(Legacy(), {}))
    assert quant.load_kwargs(("score",)) == {"marker": True} and calls == [["score"]]


@pytest.mark.parametrize("quant", QUANT_TYPES)
def test_missing_bitsandbytes_is_one_usage_error(monkeypatch, quant):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes" else real(name, *a))
    with pytest.raises(UsageError, match=rf"--quantize {quant} needs the bitsandbytes package; pip install bitsandbytes\."):
        registries().quantizers.get(quant).load_kwargs(["score"])


def test_nf4_run_exports_a_float_model_that_matches_the_trained_run(tmp_path):
    """``tunekit run --quantize nf4`` end to end, then ``export --dequantize``: same logits as the loaded run."""
    from click.testing import CliRunner
    from transformers import AutoModelForSequenceClassification

    from tests.tinyrun import make_data, make_model
    from tunekit import cli as cli_module
    from tunekit.runs import runner

    model_dir = make_model(tmp_path / "model")
    out = tmp_path / "run"
    summary = runner.run({
        "model": {"name": str(model_dir), "quantize": "nf4", "quantize_options": {"compute_dtype": "float32"}},
        "task": {"name": "sequence-classification"}, "method": {"name": "lora", "r": 4},
        "data": {"train": str(make_data(tmp_path / "train.tsv", n=32))},
        "training": {"max_steps": 3, "batch_size": 8, "lr": 1e-2, "eval_each_epoch": False},
        "output": {"dir": str(out)},
    }).summary
    assert summary["quantize"] == "nf4"
    float_count = runner.prepare(runner.as_config({
        "model": {"name": str(model_dir)}, "task": {"name": "sequence-classification"},
        "method": {"name": "lora", "r": 4}, "data": {"train": str(tmp_path / "train.tsv")}})).report
    assert (summary["trainable_params"], summary["total_params"]) == (float_count.trainable_params, float_count.total_params)
    assert "quantize_options:\n    compute_dtype: float32" in (out / "config.yaml").read_text()
    loaded = runner.load_run(out)
    assert _quantized(loaded.model)
    cli_module._load_commands()
    result = CliRunner().invoke(cli_module.cli, ["export", "--run", str(out), "--output", str(tmp_path / "x"), "--dequantize"])
    assert result.exit_code == 0, result.output
    assert "quantization_config" not in json.loads((tmp_path / "x" / "config.json").read_text())
    exported = AutoModelForSequenceClassification.from_pretrained(str(tmp_path / "x")).eval()
    inputs = dict(loaded.tokenizer(["good movie", "boring plot and awful acting"], padding=True, return_tensors="pt"))
    torch.testing.assert_close(outputs(exported, inputs), _quiet(outputs, loaded.model, inputs), atol=1e-4, rtol=1e-4)
