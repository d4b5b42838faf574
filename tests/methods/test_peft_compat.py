"""Adapter folders are interchangeable with PEFT (a test reference only; never a runtime dependency)."""

from __future__ import annotations

import warnings

import pytest
import torch

from tunekit.methods.protocol import make_options
from tunekit.plugins import registries
from tunekit.testing import head_modules, outputs, perturb, sample_inputs, tiny_bert, tiny_gpt2, tiny_llama

peft = pytest.importorskip("peft")

FACTORIES = {
    "bert-cls": lambda: tiny_bert("cls"),
    "gpt2-lm": lambda: tiny_gpt2("lm"),
    "llama-cls": lambda: tiny_llama("cls"),
    "llama-lm": lambda: tiny_llama("lm"),
}


def _apply(name, options, model):
    method = registries().methods.get(name)
    applied = method.apply(model, make_options(method, options), head_modules(model))
    perturb(model, scale=0.1)
    return method, applied


def _peft_load(factory, folder):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return peft.PeftModel.from_pretrained(factory(), str(folder)).eval()


# transformers 5.24 renamed the models' cache argument from ``past_key_values`` to ``cache``. PEFT releases that
# still pass ``past_key_values`` cannot run prefix tuning there: classification models refuse it outright, and
# ``generate`` drops PEFT's prefixes in favour of the cache it creates itself. These two probes recognise exactly
# those failures, so the interop tests report the upstream gap instead of failing, and pass again once PEFT adapts.
PEFT_CACHE_REFUSAL = "Model does not support past key values which are required for prefix tuning."
PEFT_CACHE_IGNORED = "Both `past_key_values` and `cache` are set"


def _upstream_gap(what: str) -> str:
    import transformers

    return (f"PEFT {peft.__version__} cannot {what} on transformers {transformers.__version__}: it passes "
            "`past_key_values`, which this transformers release renamed to `cache` (a PEFT limitation, not tunekit's)")


def _peft_outputs(peft_model, inputs):
    try:
        return outputs(peft_model, inputs)
    except ValueError as exc:
        if str(exc) == PEFT_CACHE_REFUSAL:
            pytest.xfail(_upstream_gap("run prefix tuning on this model"))
        raise


def _peft_generate(peft_model, inputs, **kwargs):
    """PEFT's generation, and whether transformers said it ignored PEFT's ``past_key_values``."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        result = peft_model.generate(**inputs, **kwargs)
    return result, any(PEFT_CACHE_IGNORED in str(w.message) for w in seen)


@pytest.mark.parametrize(
    ("model", "method", "options"),
    [
        ("bert-cls", "lora", {"r": 4}),
        ("bert-cls", "lora", {"r": 2, "target_modules": "all-linear"}),
        ("bert-cls", "lora", {"r": 2, "target_modules": r".*\.(key|value)"}),
        ("gpt2-lm", "lora", {"r": 4}),
        ("llama-cls", "lora", {"r": 4, "target_modules": ["q_proj", "k_proj", "down_proj"]}),
        ("bert-cls", "prefix-tuning", {"num_virtual_tokens": 4}),
        ("gpt2-lm", "prefix-tuning", {"num_virtual_tokens": 4}),
        ("llama-lm", "prefix-tuning", {"num_virtual_tokens": 4, "projection": 12}),
        ("llama-cls", "prefix-tuning", {"num_virtual_tokens": 3}),
    ],
)
def test_tunekit_adapter_loads_in_peft(model, method, options, tmp_path):
    factory = FACTORIES[model]
    m = factory()
    _, applied = _apply(method, options, m)
    inputs = sample_inputs(m)
    expected = outputs(m, inputs)
    applied.save(tmp_path)
    peft_model = _peft_load(factory, tmp_path)
    torch.testing.assert_close(_peft_outputs(peft_model, inputs), expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("model", ["gpt2-lm", "llama-lm"])
def test_prefix_generation_matches_peft(model, tmp_path):
    factory = FACTORIES[model]
    m = factory()
    _, applied = _apply("prefix-tuning", {"num_virtual_tokens": 3}, m)
    applied.save(tmp_path)
    peft_model = _peft_load(factory, tmp_path)
    inputs = sample_inputs(m, batch=2, length=5)
    kwargs = {"max_new_tokens": 6, "do_sample": False, "pad_token_id": 0}
    ours = m.generate(**inputs, **kwargs)
    theirs, prefixes_dropped = _peft_generate(peft_model, inputs, **kwargs)
    if prefixes_dropped and not torch.equal(ours, theirs):
        pytest.xfail(_upstream_gap("generate with prefix tuning"))
    assert torch.equal(ours, theirs)


def test_peft_lora_folder_loads_in_tunekit(tmp_path):
    base = tiny_bert("cls")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pm = peft.get_peft_model(base, peft.LoraConfig(r=4, lora_alpha=8, target_modules=["query", "value"],
                                                        task_type="SEQ_CLS"))
    perturb(pm, scale=0.1)
    inputs = sample_inputs(base)
    expected = outputs(pm, inputs)
    pm.save_pretrained(str(tmp_path))
    fresh = tiny_bert("cls")
    applied = registries().methods.get("lora").load(fresh, tmp_path)
    torch.testing.assert_close(outputs(fresh, inputs), expected, atol=1e-6, rtol=0)
    assert "classifier" in applied.keep


def test_peft_gpt2_lora_and_prefix_folders_load_in_tunekit(tmp_path):
    for name, config in [
        ("lora", peft.LoraConfig(r=4, target_modules=["c_attn"], fan_in_fan_out=True, task_type="CAUSAL_LM")),
        ("prefix-tuning", peft.PrefixTuningConfig(num_virtual_tokens=3, task_type="CAUSAL_LM")),
    ]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pm = peft.get_peft_model(tiny_gpt2("lm"), config)
        perturb(pm, scale=0.1)
        inputs = sample_inputs(tiny_gpt2("lm"))
        expected = outputs(pm, inputs)
        pm.save_pretrained(str(tmp_path / name))
        fresh = tiny_gpt2("lm")
        registries().methods.get(name).load(fresh, tmp_path / name)
        torch.testing.assert_close(outputs(fresh, inputs), expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize(("model", "method", "options"), [
    ("bert-cls", "lora", {"r": 4, "dropout": 0.0}),
    ("gpt2-lm", "lora", {"r": 2, "target_modules": ["c_attn", "c_fc"]}),
    ("llama-cls", "lora", {"r": 2, "target_modules": "all-linear"}),
])  # (PEFT cannot load a prefix-tuning adapter as trainable, so prefix tuning is compared on outputs only)
def test_training_matches_peft_step_for_step(model, method, options, tmp_path):
    """From the same initial adapter and the same batches, tunekit and PEFT follow the same losses."""
    factory = FACTORIES[model]
    ours = factory()
    m = registries().methods.get(method)
    torch.manual_seed(0)  # the adapter's initialisation, whatever ran before in this process
    applied = m.apply(ours, make_options(m, options), head_modules(ours))
    perturb(ours, scale=0.02)
    applied.save(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = peft.PeftModel.from_pretrained(factory(), str(tmp_path), is_trainable=True)

    def train(model_):
        params = [p for p in model_.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=1e-2)
        losses = []
        model_.eval()  # no dropout, so both see the same computation
        for _ in range(4):
            batch = sample_inputs(ours, batch=4, length=6, seed=0)  # one batch: its loss must fall
            optimizer.zero_grad()
            loss = model_(**batch).logits.float().pow(2).mean()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        return losses, sum(p.numel() for p in params)

    ours_losses, ours_count = train(ours)
    theirs_losses, theirs_count = train(theirs)
    assert ours_count == theirs_count
    assert ours_losses == pytest.approx(theirs_losses, rel=1e-5, abs=1e-6)
    assert ours_losses[-1] < ours_losses[0]
