"""Trainable-parameter counts: property tests on random architectures, and the peers' reference numbers.

Every formula below is written from the config numbers alone; the model's own parameters are only
counted on the other side of the equation (after the method is applied).
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
)

from tunekit.methods.architecture import arch_info
from tunekit.methods.protocol import count_parameters, make_options
from tunekit.plugins import registries

LABELS = 3


@st.composite
def architectures(draw):
    family = draw(st.sampled_from(["bert", "gpt2", "llama"]))
    heads = draw(st.integers(1, 4))
    head_dim = draw(st.sampled_from([4, 8]))
    kv_heads = draw(st.sampled_from([d for d in range(1, heads + 1) if heads % d == 0])) if family == "llama" else heads
    return {
        "family": family, "layers": draw(st.integers(1, 3)), "heads": heads, "kv_heads": kv_heads,
        "head_dim": head_dim, "hidden": heads * head_dim, "intermediate": draw(st.integers(4, 40)),
        "vocab": draw(st.integers(16, 40)), "positions": 32,
    }


def build(a: dict) -> torch.nn.Module:
    """The model on the meta device (instant, no memory): counting needs only shapes."""
    with torch.device("meta"):
        if a["family"] == "bert":
            return BertForSequenceClassification(BertConfig(
                hidden_size=a["hidden"], num_hidden_layers=a["layers"], num_attention_heads=a["heads"],
                intermediate_size=a["intermediate"], vocab_size=a["vocab"], max_position_embeddings=a["positions"],
                num_labels=LABELS))
        if a["family"] == "gpt2":
            return GPT2LMHeadModel(GPT2Config(
                n_embd=a["hidden"], n_layer=a["layers"], n_head=a["heads"], n_inner=a["intermediate"],
                vocab_size=a["vocab"], n_positions=a["positions"]))
        return LlamaForCausalLM(LlamaConfig(
            hidden_size=a["hidden"], num_hidden_layers=a["layers"], num_attention_heads=a["heads"],
            num_key_value_heads=a["kv_heads"], intermediate_size=a["intermediate"], vocab_size=a["vocab"],
            max_position_embeddings=a["positions"], tie_word_embeddings=False))


def head_params(a: dict) -> int:
    return a["hidden"] * LABELS + LABELS if a["family"] == "bert" else 0


def block_params(a: dict) -> int:
    h, i = a["hidden"], a["intermediate"]
    if a["family"] in ("bert", "gpt2"):
        attention = 4 * (h * h + h) + 2 * h
        ffn = (h * i + i) + (i * h + h) + 2 * h
        return attention + ffn
    q, kv = a["heads"] * a["head_dim"], a["kv_heads"] * a["head_dim"]
    return h * q + 2 * h * kv + q * h + 3 * h * i + 2 * h


def final_norm(a: dict) -> int:
    return {"bert": 0, "gpt2": 2 * a["hidden"], "llama": a["hidden"]}[a["family"]]


def backbone(a: dict) -> int:
    h = a["hidden"]
    emb = {"bert": (a["vocab"] + a["positions"] + 2) * h + 2 * h,  # token, position, 2 token types, LayerNorm
           "gpt2": (a["vocab"] + a["positions"]) * h,
           "llama": a["vocab"] * h}[a["family"]]
    extra = {"bert": h * h + h, "gpt2": 0, "llama": a["vocab"] * h}[a["family"]]  # pooler / untied lm_head
    return emb + a["layers"] * block_params(a) + final_norm(a) + extra


def linear_shapes(a: dict) -> dict[str, tuple[int, int]]:
    h, i = a["hidden"], a["intermediate"]
    if a["family"] == "bert":
        return {"query": (h, h), "key": (h, h), "value": (h, h), "attention.output.dense": (h, h),
                "intermediate.dense": (h, i), "output.dense": (i, h)}
    if a["family"] == "gpt2":
        return {"c_attn": (h, 3 * h), "attn.c_proj": (h, h), "c_fc": (h, i), "mlp.c_proj": (i, h)}
    q, kv = a["heads"] * a["head_dim"], a["kv_heads"] * a["head_dim"]
    return {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h),
            "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}


def check(a: dict, method_name: str, options: dict, formula: int) -> None:
    model = build(a)
    method = registries().methods.get(method_name)
    parsed = make_options(method, options)
    expected = method.expected_trainable(arch_info(model), parsed)
    keep = ["classifier"] if a["family"] == "bert" else []
    method.apply(model, parsed, keep)
    trainable, _ = count_parameters(model)
    assert trainable - head_params(a) == formula
    assert expected == formula


SETTINGS = settings(max_examples=25, deadline=None)


@SETTINGS
@given(architectures(), st.integers(1, 8), st.data())
def test_lora_count(a, r, data):
    names = list(linear_shapes(a))
    if data.draw(st.booleans()):
        chosen, targets = names, "all-linear"
    else:
        # leaf names that select exactly one kind of layer in this family
        unique = [n for n in names if sum(m == n or m.endswith("." + n) for m in names) == 1 and "." not in n]
        chosen = data.draw(st.lists(st.sampled_from(unique), min_size=1, unique=True))
        targets = chosen
    shapes = linear_shapes(a)
    formula = a["layers"] * sum(r * (shapes[n][0] + shapes[n][1]) for n in chosen)
    check(a, "lora", {"r": r, "target_modules": targets}, formula)


@SETTINGS
@given(architectures(), st.integers(1, 8), st.sampled_from(["houlsby", "pfeiffer"]))
def test_bottleneck_count(a, reduction, name):
    h = a["hidden"]
    width = h // reduction
    if width < 1:
        return
    per_adapter = (h * width + width) + (width * h + h)
    slots = 2 if name == "houlsby" else 1
    check(a, name, {"reduction_factor": reduction}, a["layers"] * slots * per_adapter)


@SETTINGS
@given(architectures(), st.integers(1, 6), st.sampled_from([False, True, 5]))
def test_prefix_count(a, tokens, projection):
    width = a["layers"] * 2 * a["kv_heads"] * a["head_dim"]
    if projection is False:
        formula = tokens * width
    else:
        p = a["hidden"] if projection is True else projection
        formula = tokens * a["hidden"] + (a["hidden"] * p + p) + (p * width + width)
    check(a, "prefix-tuning", {"num_virtual_tokens": tokens, "projection": projection}, formula)


@SETTINGS
@given(architectures(), st.integers(1, 3))
def test_freeze_count(a, trainable_layers):
    trainable_layers = min(trainable_layers, a["layers"])
    formula = trainable_layers * block_params(a) + final_norm(a)
    check(a, "freeze", {"trainable_layers": trainable_layers}, formula)


@SETTINGS
@given(architectures(), st.sampled_from(["full", "feature-extraction"]))
def test_full_and_feature_extraction_counts(a, name):
    if name == "feature-extraction" and a["family"] != "bert":
        return  # a causal LM without a task head has nothing to train under feature extraction
    check(a, name, {}, backbone(a) if name == "full" else 0)


# ---------------------------------------------------------------- the peers' reference numbers (ANCHORS.md)


def _meta(cls, config):
    with torch.device("meta"):
        return cls(config)


@pytest.mark.parametrize(
    ("model", "method", "options", "expected"),
    [
        ("bert-base", "lora", {"r": 8, "target_modules": ["query", "value"]}, 294_912),
        ("roberta-base", "lora", {"r": 8, "target_modules": ["query", "value"]}, 294_912),
        ("gpt2", "lora", {"r": 8, "target_modules": ["c_attn"]}, 294_912),
        ("bert-base", "pfeiffer", {"reduction_factor": 16}, 894_528),
        ("bert-base", "houlsby", {"reduction_factor": 16}, 1_789_056),
        ("gpt2", "prefix-tuning", {"num_virtual_tokens": 20, "projection": False}, 368_640),
    ],
)
def test_reference_counts(model, method, options, expected):
    from transformers import RobertaConfig, RobertaModel

    built = {
        "bert-base": lambda: _meta(BertForSequenceClassification, BertConfig()),
        "roberta-base": lambda: _meta(RobertaModel, RobertaConfig(vocab_size=50265, max_position_embeddings=514,
                                                                   type_vocab_size=1)),
        "gpt2": lambda: _meta(GPT2LMHeadModel, GPT2Config()),
    }[model]()
    m = registries().methods.get(method)
    parsed = make_options(m, options)
    assert m.expected_trainable(arch_info(built), parsed) == expected
    before, _ = count_parameters(built)
    keep = ["classifier"] if model == "bert-base" else []
    head = sum(p.numel() for k in keep for p in built.get_submodule(k).parameters())
    m.apply(built, parsed, keep)
    trainable, _ = count_parameters(built)
    assert trainable - head == expected
