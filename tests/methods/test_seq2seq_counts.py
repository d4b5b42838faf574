"""Encoder-decoder (T5, BART) architecture description and trainable-parameter counts.

Property tests on random T5 / BART / mBART / Marian configs compare each method's closed form (written
again here from the config numbers alone) with the parameters that train after applying it; the peers'
numbers are reproduced on the full t5-small and bart-base configs (public config values, built on the
meta device: no weights), LoRA, IA3 and prefix tuning checked against PEFT on the same configs.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import (
    BartConfig,
    BartForConditionalGeneration,
    MarianConfig,
    MarianMTModel,
    MBartConfig,
    MBartForConditionalGeneration,
    T5Config,
    T5ForConditionalGeneration,
)

from tests.methods.seq2seq_support import tiny_bart, tiny_t5
from tunekit.errors import MethodError
from tunekit.methods import architecture
from tunekit.methods.protocol import count_parameters, make_options
from tunekit.plugins import registries
from tunekit.testing import tiny_bert

KINDS = ("t5", "t5-gated", "bart", "mbart", "marian")


@st.composite
def seq2seq(draw):
    heads = draw(st.integers(1, 4))
    return {
        "kind": draw(st.sampled_from(KINDS)), "layers": draw(st.integers(1, 3)), "decoder_layers": draw(st.integers(1, 3)),
        "heads": heads, "head_dim": draw(st.sampled_from([4, 8])), "hidden": heads * draw(st.sampled_from([4, 8])),
        "ffn": draw(st.integers(4, 40)), "vocab": draw(st.integers(16, 40)), "positions": 16, "buckets": 8,
    }


def build(a: dict) -> torch.nn.Module:
    """The model on the meta device: counting needs only shapes."""
    with torch.device("meta"):
        if a["kind"].startswith("t5"):
            return T5ForConditionalGeneration(T5Config(
                vocab_size=a["vocab"], d_model=a["hidden"], d_kv=a["head_dim"], num_heads=a["heads"], d_ff=a["ffn"],
                num_layers=a["layers"], num_decoder_layers=a["decoder_layers"], relative_attention_num_buckets=a["buckets"],
                feed_forward_proj="gated-gelu" if a["kind"] == "t5-gated" else "relu"))
        cls, config = {"bart": (BartForConditionalGeneration, BartConfig), "mbart": (MBartForConditionalGeneration, MBartConfig),
                       "marian": (MarianMTModel, MarianConfig)}[a["kind"]]
        return cls(config(
            vocab_size=a["vocab"], d_model=a["hidden"], encoder_layers=a["layers"], decoder_layers=a["decoder_layers"],
            encoder_attention_heads=a["heads"], decoder_attention_heads=a["heads"], encoder_ffn_dim=a["ffn"],
            decoder_ffn_dim=a["ffn"], max_position_embeddings=a["positions"], pad_token_id=1, decoder_start_token_id=2))


def inner(a: dict) -> int:
    return a["heads"] * a["head_dim"] if a["kind"].startswith("t5") else a["hidden"]


def linears(a: dict) -> dict[str, tuple[int, int, int]]:
    """(in, out, how many in the model) of each linear kind, by a leaf name that selects only that kind."""
    h, f, q, n, d = a["hidden"], a["ffn"], inner(a), a["layers"] + a["decoder_layers"], a["decoder_layers"]
    if a["kind"].startswith("t5"):
        table = {f"SelfAttention.{p}": ((q, h) if p == "o" else (h, q)) + (n,) for p in "qkvo"}
        table.update({f"EncDecAttention.{p}": ((q, h) if p == "o" else (h, q)) + (d,) for p in "qkvo"})
        wi = {"wi_0": (h, f, n), "wi_1": (h, f, n)} if a["kind"] == "t5-gated" else {"wi": (h, f, n)}
        return {**table, **wi, "wo": (f, h, n)}
    table = {f"self_attn.{p}_proj": (h, h, n) for p in ("q", "k", "v", "out")}
    table.update({f"encoder_attn.{p}_proj": (h, h, d) for p in ("q", "k", "v", "out")})
    return {**table, "fc1": (h, f, n), "fc2": (f, h, n)}


def blocks(a: dict) -> tuple[int, int]:
    """(encoder block, decoder block) parameters."""
    h, f, q = a["hidden"], a["ffn"], inner(a)
    if a["kind"].startswith("t5"):
        attention, ffn = 4 * h * q, (3 if a["kind"] == "t5-gated" else 2) * h * f
        return attention + ffn + 2 * h, 2 * attention + ffn + 3 * h
    attention, ffn = 4 * (h * h + h) + 2 * h, h * f + f + f * h + h + 2 * h
    return attention + ffn, 2 * attention + ffn


def final_norms(a: dict) -> int:
    return {"t5": 2 * a["hidden"], "t5-gated": 2 * a["hidden"], "mbart": 4 * a["hidden"]}.get(a["kind"], 0)


def backbone(a: dict) -> int:
    h, enc, dec = a["hidden"], *blocks(a)
    model = build(a)
    untied = model.get_output_embeddings().weight is not model.get_input_embeddings().weight
    total = a["layers"] * enc + a["decoder_layers"] * dec + final_norms(a) + a["vocab"] * h * (1 + untied)
    if a["kind"].startswith("t5"):
        total += 2 * a["buckets"] * a["heads"]
    else:  # positions per stack (BART, mBART: an offset of 2; Marian sinusoidal), embedding LayerNorms
        total += 2 * (a["positions"] + (0 if a["kind"] == "marian" else 2)) * h
        total += 0 if a["kind"] == "marian" else 4 * h
    return total


def check(a: dict, name: str, options: dict, formula: int) -> None:
    model = build(a)
    method = registries().methods.get(name)
    parsed = make_options(method, options)
    assert method.expected_trainable(architecture.arch_info(model), parsed) == formula
    method.apply(model, parsed, [])
    assert count_parameters(model)[0] == formula


SETTINGS = settings(max_examples=12, deadline=None)


@SETTINGS
@given(seq2seq(), st.integers(1, 8), st.data())
def test_lora_count(a, r, data):
    table = linears(a)
    if data.draw(st.booleans()):
        chosen, targets = list(table), "all-linear"
    else:
        chosen = data.draw(st.lists(st.sampled_from(list(table)), min_size=1, unique=True))
        targets = chosen
    check(a, "lora", {"r": r, "target_modules": targets}, sum(r * (table[k][0] + table[k][1]) * table[k][2] for k in chosen))


@SETTINGS
@given(seq2seq(), st.integers(1, 8), st.sampled_from(["houlsby", "pfeiffer"]))
def test_bottleneck_count(a, reduction, name):
    h, width = a["hidden"], a["hidden"] // reduction
    if width < 1:
        return
    per_adapter = 2 * h * width + width + h
    n = a["layers"] + a["decoder_layers"]
    adapters = 2 * n + a["decoder_layers"] if name == "houlsby" else n  # Houlsby: self, cross (decoder), ffn
    check(a, name, {"reduction_factor": reduction}, adapters * per_adapter)


@SETTINGS
@given(seq2seq(), st.integers(1, 6), st.sampled_from([False, 5]))
def test_prefix_count(a, tokens, projection):
    width = (a["layers"] + 2 * a["decoder_layers"]) * 2 * inner(a)  # encoder self, decoder self, cross (each choice:
    # tests/methods/test_prefix_seq2seq.py)
    formula = tokens * width if not projection else tokens * a["hidden"] + a["hidden"] * 5 + 5 + 5 * width + width
    check(a, "prefix-tuning", {"num_virtual_tokens": tokens, "projection": projection}, formula)


@SETTINGS
@given(seq2seq(), st.integers(1, 3))
def test_freeze_count(a, n):
    n = min(n, a["layers"], a["decoder_layers"])
    enc, dec = blocks(a)
    formula = n * (enc + dec) + final_norms(a)
    if a["kind"].startswith("t5"):  # the relative-position table of each stack sits in its first block
        formula += a["buckets"] * a["heads"] * ((n == a["layers"]) + (n == a["decoder_layers"]))
    check(a, "freeze", {"trainable_layers": n}, formula)


@SETTINGS
@given(seq2seq(), st.sampled_from(["full", "feature-extraction", "ia3", "prompt-tuning"]))
def test_other_counts(a, name):
    n, kv = a["layers"] + a["decoder_layers"], inner(a)
    formula = {"full": backbone(a), "feature-extraction": 0, "prompt-tuning": 4 * a["hidden"],
               "ia3": n * (2 * kv + a["ffn"]) + a["decoder_layers"] * 2 * kv}[name]
    check(a, name, {"num_virtual_tokens": 4} if name == "prompt-tuning" else {}, formula)


# ---------------------------------------------------------------- architecture


def test_arch_describes_both_stacks():
    t5 = tiny_t5(layers=2, decoder_layers=3)
    assert [n for n, _ in architecture.blocks(t5)][1:3] == ["encoder.block.1", "decoder.block.0"]
    assert architecture.attention_outputs(t5)[2] == "decoder.block.0.layer.0.SelfAttention.o"
    assert architecture.cross_attention_outputs(t5) == [f"decoder.block.{i}.layer.1.EncDecAttention.o" for i in range(3)]
    assert architecture.ffn_outputs(t5)[0] == "encoder.block.0.layer.1.DenseReluDense.wo"
    assert architecture.ffn_outputs(t5)[-1] == "decoder.block.2.layer.2.DenseReluDense.wo"
    assert architecture.final_norms(t5) == ["encoder.final_layer_norm", "decoder.final_layer_norm"]
    assert architecture.final_norm(t5) == "decoder.final_layer_norm"
    assert len(architecture.embeddings(t5)) == 3  # shared + each stack's alias: never one frozen-cache embedding
    info = architecture.arch_info(t5)
    assert (info.layers, info.decoder_layers, info.all_layers, info.kv_dim) == (2, 3, 5, 32)
    bart = tiny_bart()
    assert architecture.cross_attention_outputs(bart)[0] == "model.decoder.layers.0.encoder_attn.out_proj"
    assert architecture.final_norms(bart) == []  # BART has none; mBART one per stack
    assert architecture.stacks(bart)[1][0].cross_attention_output == "encoder_attn.out_proj"
    assert architecture.block_index_pattern(bart, 2) == r"model\.decoder\.layers\.0"
    assert architecture.cross_attention_outputs(tiny_bert()) == [] and len(architecture.stacks(tiny_bert())) == 1


def test_freeze_refuses_more_blocks_than_the_smaller_stack():
    method = registries().methods.get("freeze")
    with pytest.raises(MethodError, match="smaller stack"):
        method.apply(tiny_t5(layers=3, decoder_layers=1), make_options(method, {"trainable_layers": 2}), [])


# ---------------------------------------------------------------- the peers' reference numbers


def t5_small() -> torch.nn.Module:
    """t5-small's public config values (the model card's config.json), built on the meta device."""
    with torch.device("meta"):
        return T5ForConditionalGeneration(T5Config(
            vocab_size=32128, d_model=512, d_kv=64, d_ff=2048, num_layers=6, num_heads=8,
            relative_attention_num_buckets=32, feed_forward_proj="relu", tie_word_embeddings=True))


def bart_base() -> torch.nn.Module:
    """bart-base's public config values, built on the meta device."""
    with torch.device("meta"):
        return BartForConditionalGeneration(BartConfig(
            vocab_size=50265, d_model=768, encoder_layers=6, decoder_layers=6, encoder_attention_heads=12,
            decoder_attention_heads=12, encoder_ffn_dim=3072, decoder_ffn_dim=3072, max_position_embeddings=1024))


REFERENCE = [
    # 36 attentions (6 encoder self, 6 decoder self, 6 cross; q and v each) x 8 x (512 + 512)
    ("t5-small", "lora", {"r": 8, "target_modules": ["q", "v"]}, 294_912),
    ("bart-base", "lora", {"r": 8, "target_modules": ["q_proj", "v_proj"]}, 442_368),
    # k and v of every attention (18 x 2 x 512) + the feed-forward input of wo (12 x 2048): PEFT's T5 defaults
    ("t5-small", "ia3", {}, 43_008),
    ("t5-small", "prefix-tuning", {"num_virtual_tokens": 20, "attention": ["decoder"]}, 122_880),  # 20 x 6 x 2 x 512
    ("t5-small", "prefix-tuning", {"num_virtual_tokens": 20}, 368_640),  # encoder, decoder and cross: 18 layers
    ("t5-small", "full", {}, 60_506_624),
    ("bart-base", "full", {}, 139_420_416),
    ("t5-small", "prompt-tuning", {"num_virtual_tokens": 20}, 10_240),
]


@pytest.mark.parametrize(("model", "method", "options", "expected"), REFERENCE)
def test_reference_counts(model, method, options, expected):
    built = {"t5-small": t5_small, "bart-base": bart_base}[model]()
    m = registries().methods.get(method)
    parsed = make_options(m, options)
    assert m.expected_trainable(architecture.arch_info(built), parsed) == expected
    m.apply(built, parsed, [])
    assert count_parameters(built)[0] == expected


@pytest.mark.parametrize(("model", "kind", "expected"), [
    ("t5-small", "lora", 294_912), ("bart-base", "lora", 442_368), ("t5-small", "ia3", 43_008),
    ("t5-small", "prefix", 122_880)])
def test_peft_counts_the_same_on_the_config(model, kind, expected):
    peft = pytest.importorskip("peft")
    config = {"lora": lambda: peft.LoraConfig(task_type="SEQ_2_SEQ_LM", r=8, target_modules=(
                  ["q", "v"] if model == "t5-small" else ["q_proj", "v_proj"])),
              "ia3": lambda: peft.IA3Config(task_type="SEQ_2_SEQ_LM"),
              "prefix": lambda: peft.PrefixTuningConfig(task_type="SEQ_2_SEQ_LM", num_virtual_tokens=20)}[kind]()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wrapped = peft.get_peft_model({"t5-small": t5_small, "bart-base": bart_base}[model](), config)
    assert wrapped.get_nb_trainable_parameters()[0] == expected
