"""Every method on encoder-decoder models (tiny random T5 and BART), applied through the method API.

Each method trains a copy task (source ids -> the same ids) to a clearly lower loss and round-trips through
save/load with identical outputs; LoRA and prefix-tuning folders are interchangeable with PEFT's
(``task_type`` SEQ_2_SEQ_LM); generation with each method's cache/mask handling agrees with the
teacher-forced forward pass; int8 and nf4 seq2seq bases train LoRA.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from tests.methods.seq2seq_support import FACTORIES, apply, copy_batch, logits, loss, train
from tunekit.methods import adapter_files, architecture
from tunekit.methods.protocol import count_parameters
from tunekit.plugins import registries

FAMILIES = ("t5", "bart")
pytestmark = pytest.mark.usefixtures("one_thread_torch")


# (method, options, learning rate, most loss left): each trains the copy task for STEPS Adam steps. A few
# soft-prompt vectors have little capacity on a random model: prompt tuning lowers the loss by ~20% here.
CASES = [
    ("lora", {"r": 4}, 3e-2, 0.7),
    ("lora", {"r": 4, "target_modules": "all-linear"}, 1e-2, 0.7),
    ("houlsby", {"reduction_factor": 2}, 3e-2, 0.7),
    ("pfeiffer", {"reduction_factor": 2}, 3e-2, 0.7),
    ("prefix-tuning", {"num_virtual_tokens": 4}, 1e-1, 0.7),
    ("ia3", {}, 1e-1, 0.7),
    ("prompt-tuning", {"num_virtual_tokens": 8}, 1e-1, 0.9),
    ("freeze", {"trainable_layers": 1}, 3e-3, 0.7),
    ("full", {}, 3e-3, 0.7),
]
STEPS = 40


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(("name", "options", "lr", "left"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_method_trains_a_copy_task_and_round_trips(family, name, options, lr, left, tmp_path):
    factory = FACTORIES[family]
    model = factory()
    applied = apply(name, model, **options)
    batch = copy_batch(8)
    before, after = train(model, batch, STEPS, lr)
    assert after < left * before, f"{name} on {family}: loss {before:.3f} -> {after:.3f}"
    applied.save(tmp_path)
    method = registries().methods.get(name)
    reloaded = method.load(factory(), tmp_path)
    assert torch.allclose(logits(reloaded.model, batch), logits(model, batch), atol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_feature_extraction_trains_nothing_without_a_head(family):
    model = FACTORIES[family]()
    apply("feature-extraction", model)
    assert count_parameters(model)[0] == 0


@pytest.mark.parametrize("family", FAMILIES)
def test_lora_targets_by_name_and_regex(family):
    cross = {"t5": "EncDecAttention.q", "bart": "encoder_attn.q_proj"}[family]
    model = FACTORIES[family]()
    applied = apply("lora", model, r=2, target_modules=[cross])
    assert applied.injected and all(".decoder." in f".{n}" and n.endswith(cross) for n in applied.injected)
    regex = {"t5": r"encoder\.block\.\d+\.layer\.0\.SelfAttention\.v", "bart": r"model\.encoder\.layers\.\d+\.self_attn\.v_proj"}
    applied = apply("lora", FACTORIES[family](), r=2, target_modules=regex[family])
    assert len(applied.injected) == 2 and all("encoder." in n for n in applied.injected)


@pytest.mark.parametrize("family", FAMILIES)
def test_houlsby_adapts_self_cross_and_feed_forward(family):
    model = FACTORIES[family]()
    applied = apply("houlsby", model, reduction_factor=4)
    cross = architecture.cross_attention_outputs(FACTORIES[family]())
    assert set(cross) <= set(applied.injected) and len(applied.injected) == 2 * 4 + 2


# ---------------------------------------------------------------- generation


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(("name", "options"), [("prefix-tuning", {"num_virtual_tokens": 3}),
                                               ("prompt-tuning", {"num_virtual_tokens": 3}), ("lora", {"r": 2})])
def test_generation_agrees_with_the_forward_pass(family, name, options):
    model = FACTORIES[family]()
    apply(name, model, **options)
    train(model, copy_batch(8), 5, 5e-2)  # move the method off its initial values
    batch = copy_batch(2, seed=3)
    with torch.no_grad():
        generated = model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                   max_new_tokens=4, do_sample=False, num_beams=1)
        forward = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                        decoder_input_ids=generated[:, :-1]).logits
    assert torch.equal(forward.argmax(-1)[:, -3:], generated[:, -3:])


# ---------------------------------------------------------------- PEFT interchange

peft_needed = pytest.mark.skipif(__import__("importlib").util.find_spec("peft") is None, reason="peft is not installed")


def _peft_load(family, folder):
    import peft

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return peft.PeftModel.from_pretrained(FACTORIES[family](), str(folder)).eval()


def _peft_logits(model, batch):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return logits(model, batch)


@peft_needed
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(("name", "options"), [("lora", {"r": 4}), ("lora", {"r": 2, "target_modules": "all-linear"}),
                                               ("prefix-tuning", {"num_virtual_tokens": 3, "attention": ["decoder"]})])
def test_tunekit_adapter_loads_in_peft(family, name, options, tmp_path):
    model = FACTORIES[family]()
    applied = apply(name, model, **options)
    batch = copy_batch(4)
    train(model, batch, 3, 5e-2)
    applied.save(tmp_path)
    assert adapter_files.read_config(tmp_path)["task_type"] == "SEQ_2_SEQ_LM"
    theirs = _peft_load(family, tmp_path)
    assert torch.allclose(_peft_logits(theirs, batch), logits(model, batch), atol=1e-5)


def _peft_config(peft, family, kind):
    lora_targets = {"t5": ["q", "v", "wo"], "bart": ["q_proj", "v_proj", "fc2"]}[family]
    return {
        "lora": lambda: peft.LoraConfig(task_type="SEQ_2_SEQ_LM", r=4, lora_alpha=8, target_modules=lora_targets,
                                        init_lora_weights=False),
        "prefix": lambda: peft.PrefixTuningConfig(task_type="SEQ_2_SEQ_LM", num_virtual_tokens=3),
        "ia3": lambda: peft.IA3Config(task_type="SEQ_2_SEQ_LM", init_ia3_weights=False),  # PEFT's defaults per family
        "prompt": lambda: peft.PromptTuningConfig(task_type="SEQ_2_SEQ_LM", num_virtual_tokens=3),
    }[kind]()


@peft_needed
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(("kind", "method"), [("lora", "lora"), ("prefix", "prefix-tuning"), ("ia3", "ia3"),
                                              ("prompt", "prompt-tuning")])
def test_peft_adapter_loads_in_tunekit(family, kind, method, tmp_path):
    import peft

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = peft.get_peft_model(FACTORIES[family](), _peft_config(peft, family, kind))
        if kind == "ia3":  # PEFT's random IA3 start is close to ones: push the vectors further from identity
            with torch.no_grad():
                for name, p in theirs.named_parameters():
                    if "ia3_l" in name:
                        p.mul_(1.5)
        theirs.save_pretrained(str(tmp_path))
    batch = copy_batch(4)
    expected = _peft_logits(_peft_load(family, tmp_path), batch)
    ours = registries().methods.get(method).load(FACTORIES[family](), tmp_path)
    assert torch.allclose(logits(ours.model, batch), expected, atol=1e-5)
    assert not torch.allclose(logits(FACTORIES[family](), batch), expected, atol=1e-3)  # the adapter does something


# ---------------------------------------------------------------- quantized bases


@pytest.mark.parametrize("quantize", ["int8", "nf4"])
def test_lora_trains_on_a_quantized_seq2seq_base(quantize, tmp_path):
    pytest.importorskip("bitsandbytes")
    from transformers import T5ForConditionalGeneration

    FACTORIES["t5"](width=64).save_pretrained(str(tmp_path))  # 4-bit blocks need 64 inputs per layer
    quantizer = registries().quantizers.get(quantize)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = T5ForConditionalGeneration.from_pretrained(str(tmp_path), **quantizer.load_kwargs([]))
    if hasattr(quantizer, "after_load"):  # as the runner does (keeps bitsandbytes' backward-less CPU kernel off)
        quantizer.after_load(model)
    assert any(type(m).__name__ in ("Linear8bitLt", "Linear4bit") for m in model.modules())
    apply("lora", model, r=4)
    batch = copy_batch(8)
    before = loss(model, batch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, after = train(model, batch, 15, 3e-2)
    assert after < 0.8 * before


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(("name", "options"), [("lora", {"r": 4, "target_modules": "all-linear"}), ("ia3", {})])
def test_merge_and_unmerge_keep_the_outputs(family, name, options):
    model = FACTORIES[family]()
    applied = apply(name, model, **options)
    batch = copy_batch(4)
    train(model, batch, 3, 5e-2)
    expected = logits(model, batch)
    applied.merge()
    assert torch.allclose(logits(model, batch), expected, atol=1e-4)
    applied.unmerge()
    assert torch.allclose(logits(model, batch), expected, atol=1e-4)
