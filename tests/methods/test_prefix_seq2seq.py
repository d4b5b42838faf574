"""Prefix tuning on encoder-decoder models: encoder self-, decoder self- and cross-attention prefixes.

Counts per choice of ``method.attention`` (property tests on random T5/BART/mBART/Marian configs), the copy
task to the loss floor of a frozen output layer, cached and beam generation, padding, each kind touching only
its attention, and the two file formats (PEFT's for ``[decoder]``, tunekit's otherwise).
"""

from __future__ import annotations

import logging
import warnings

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import tests.methods.test_seq2seq_counts as counts
from tests.methods.seq2seq_support import FACTORIES, apply, copy_batch, logits, train
from tunekit.errors import CheckpointError, ConfigError, MethodError
from tunekit.methods import adapter_files, architecture
from tunekit.methods.protocol import count_parameters, make_options
from tunekit.plugins import registries
from tunekit.testing import tiny_gpt2

FAMILIES = ("t5", "bart")
ALL = ["encoder", "decoder", "cross"]
pytestmark = pytest.mark.usefixtures("one_thread_torch")


def method():
    return registries().methods.get("prefix-tuning")


# ---------------------------------------------------------------- counts


@counts.SETTINGS
@given(counts.seq2seq(), st.integers(1, 6), st.sampled_from([False, 5]),
       st.lists(st.sampled_from(ALL), min_size=1, max_size=3, unique=True))
def test_count_for_each_choice_of_attention(a, tokens, projection, kinds):
    layers = {"encoder": a["layers"], "decoder": a["decoder_layers"], "cross": a["decoder_layers"]}
    width = sum(layers[k] for k in kinds) * 2 * counts.inner(a)
    formula = tokens * width if not projection else tokens * a["hidden"] + a["hidden"] * 5 + 5 + 5 * width + width
    counts.check(a, "prefix-tuning", {"num_virtual_tokens": tokens, "projection": projection, "attention": kinds},
                 formula)


@pytest.mark.parametrize(("model", "attention", "expected"), [
    ("t5-small", ALL, 368_640),  # 20 tokens x (6 encoder + 6 decoder + 6 cross) x 2 x 512
    ("t5-small", ["decoder"], 122_880),  # PEFT's count
    ("bart-base", ALL, 552_960),  # 20 x 18 x 2 x 768
    ("bart-base", ["encoder", "cross"], 368_640),
])
def test_reference_counts(model, attention, expected):
    built = {"t5-small": counts.t5_small, "bart-base": counts.bart_base}[model]()
    parsed = make_options(method(), {"num_virtual_tokens": 20, "attention": attention})
    assert method().expected_trainable(architecture.arch_info(built), parsed) == expected
    method().apply(built, parsed, [])
    assert count_parameters(built)[0] == expected


# ---------------------------------------------------------------- training and generation


def output_floor(model, labels: torch.Tensor) -> float:
    """The lowest mean loss on ``labels`` any decoder state reaches through the frozen output layer (the last
    norm and the language-model head): the floor for a method that leaves those untouched."""
    if hasattr(model, "decoder"):  # T5: final RMS norm, tied head scaled by d_model ** -0.5
        def head(h):
            x = model.decoder.final_layer_norm(h)
            return model.lm_head(x * model.model_dim ** -0.5 if model.config.tie_word_embeddings else x)
    else:  # BART: the last decoder layer's LayerNorm, the head and its bias
        def head(h):
            return model.lm_head(model.model.decoder.layers[-1].final_layer_norm(h)) + model.final_logits_bias
    tokens = labels.flatten()
    states = torch.zeros(tokens.numel(), model.config.d_model).normal_(generator=torch.Generator().manual_seed(0))
    states.requires_grad_(True)
    optimiser = torch.optim.Adam([states], lr=0.05)
    for _ in range(1500):
        optimiser.zero_grad()
        value = torch.nn.functional.cross_entropy(head(states), tokens)
        value.backward()
        optimiser.step()
    return float(value.detach())


@pytest.mark.parametrize("family", FAMILIES)
def test_copy_task_reaches_the_floor_of_the_frozen_output_layer(family):
    """Every copied token right, and the loss within 0.1 of the lowest a frozen norm + head allow (T5 ~0.11,
    BART ~0.08 on this batch: the random tied embeddings cap the logit margins, whatever the method)."""
    model = FACTORIES[family]()
    apply("prefix-tuning", model, num_virtual_tokens=8)
    batch = copy_batch(8)
    before, after = train(model, batch, 300, 1e-1)
    accuracy = float((logits(model, batch).argmax(-1) == batch["labels"]).float().mean())
    floor = output_floor(model, batch["labels"])
    assert accuracy == 1.0 and after < floor + 0.1, f"{family}: {before:.3f} -> {after:.3f} (floor {floor:.3f})"


def _moved(family, attention=ALL, **options):
    model = FACTORIES[family]()
    applied = apply("prefix-tuning", model, num_virtual_tokens=3, attention=attention, **options)
    train(model, copy_batch(8), 5, 5e-2)  # move the prefixes off their initial values
    return model, applied


@pytest.mark.parametrize("family", FAMILIES)
def test_cached_generation_steps_equal_full_forward_passes(family):
    model, _ = _moved(family)
    batch = copy_batch(2, seed=3)
    with torch.no_grad():
        out = model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], max_new_tokens=5,
                             do_sample=False, num_beams=1, return_dict_in_generate=True, output_logits=True)
        full = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                     decoder_input_ids=out.sequences[:, :-1]).logits
    for step, step_logits in enumerate(out.logits):
        torch.testing.assert_close(step_logits, full[:, step], atol=1e-4, rtol=0)


@pytest.mark.parametrize("family", FAMILIES)
def test_beam_search_with_and_without_the_cache_agree(family):
    model, _ = _moved(family)
    batch = copy_batch(3, seed=4)
    with torch.no_grad():
        runs = [model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], max_new_tokens=5,
                               do_sample=False, num_beams=3, use_cache=cached) for cached in (True, False)]
    assert torch.equal(runs[0], runs[1])


@pytest.mark.parametrize("family", FAMILIES)
def test_padding_the_source_leaves_the_outputs_alone(family):
    """The widened masks keep padded encoder positions out of encoder self- and cross-attention."""
    model, _ = _moved(family)
    batch = copy_batch(2, seed=5)
    pad = model.config.pad_token_id
    alone = logits(model, {k: v[:1, :4] for k, v in batch.items()})
    ids = batch["input_ids"].clone()
    ids[0, 4:] = pad
    mask = batch["attention_mask"].clone()
    mask[0, 4:] = 0
    padded = logits(model, {"input_ids": ids, "attention_mask": mask, "labels": batch["labels"][:, :4].contiguous()})
    torch.testing.assert_close(padded[:1], alone, atol=1e-4, rtol=0)


@pytest.mark.parametrize("family", FAMILIES)
def test_each_kind_changes_only_its_attention(family):
    batch = copy_batch(2)
    base = FACTORIES[family]()
    with torch.no_grad():
        encoded = base(**batch).encoder_last_hidden_state
    for kinds in (["encoder"], ["decoder"], ["cross"]):
        model, applied = _moved(family, kinds)
        with torch.no_grad():
            out = model(**batch)
        assert applied.kinds == tuple(kinds)
        assert torch.allclose(out.encoder_last_hidden_state, encoded, atol=1e-6) == (kinds != ["encoder"]), kinds
        assert not torch.allclose(out.logits, logits(base, batch), atol=1e-3), kinds
        applied.remove()
        torch.testing.assert_close(logits(model, batch), logits(base, batch), atol=0, rtol=0)


@pytest.mark.parametrize("family", FAMILIES)
def test_training_without_the_cache_equals_training_with_it(family):
    model, _ = _moved(family)
    batch = copy_batch(4)
    with torch.no_grad():
        cached, uncached = (model(**batch, use_cache=flag).logits for flag in (True, False))
    torch.testing.assert_close(cached, uncached, atol=1e-5, rtol=0)


@pytest.mark.parametrize("family", FAMILIES)
def test_gradient_checkpointing_gives_the_same_gradients(family):
    """Under tunekit's checkpointing (``tunekit.engine.memory``: the decoder cache is kept and replayed) every
    kind of prefix gets the gradients it gets without checkpointing."""
    from tunekit.engine import memory

    batch = copy_batch(4)
    grads = []
    for checkpointing in (False, True):
        model = FACTORIES[family]()
        applied = apply("prefix-tuning", model, num_virtual_tokens=3)
        if checkpointing:
            memory.enable(model)
        model.train()
        model(**batch).loss.backward()
        grads.append(applied.encoder.prefix.grad.clone())
    torch.testing.assert_close(grads[0], grads[1], atol=1e-5, rtol=1e-4)


# ---------------------------------------------------------------- files


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("projection", [False, 8])
def test_encoder_and_cross_prefixes_save_in_tunekit_format(family, projection, tmp_path, caplog):
    model, applied = _moved(family, projection=projection)
    batch = copy_batch(4)
    with caplog.at_level(logging.INFO, logger="tunekit.methods.prefix_tuning"):
        applied.save(tmp_path)
    assert "cannot be saved in PEFT's format" in caplog.text and "method.attention=[decoder]" in caplog.text
    config = adapter_files.read_config(tmp_path)
    assert config["tunekit_method"] == "prefix-tuning" and "peft_type" not in config
    assert config["options"]["attention"] == ALL and config["options"]["projection"] is False  # folded
    assert adapter_files.method_of(tmp_path) == "prefix-tuning"
    reloaded = method().load(FACTORIES[family](), tmp_path)
    assert reloaded.kinds == ("decoder", "encoder", "cross")
    torch.testing.assert_close(logits(reloaded.model, batch), logits(model, batch), atol=1e-5, rtol=0)


@pytest.mark.skipif(__import__("importlib").util.find_spec("peft") is None, reason="peft is not installed")
@pytest.mark.parametrize("family", FAMILIES)
def test_decoder_only_prefixes_save_in_peft_format_and_load_in_peft(family, tmp_path, caplog):
    import peft

    model, applied = _moved(family, ["decoder"])
    batch = copy_batch(4)
    with caplog.at_level(logging.INFO, logger="tunekit.methods.prefix_tuning"):
        applied.save(tmp_path)
    assert "PEFT's format" not in caplog.text
    config = adapter_files.read_config(tmp_path)
    assert config["peft_type"] == "PREFIX_TUNING" and config["task_type"] == "SEQ_2_SEQ_LM"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = peft.PeftModel.from_pretrained(FACTORIES[family](), str(tmp_path)).eval()
        expected = logits(theirs, batch)
    torch.testing.assert_close(logits(model, batch), expected, atol=1e-5, rtol=0)
    ours = method().load(FACTORIES[family](), tmp_path)
    assert ours.kinds == ("decoder",)
    torch.testing.assert_close(logits(ours.model, batch), expected, atol=1e-5, rtol=0)


def test_a_tunekit_format_folder_refuses_another_model(tmp_path):
    _, applied = _moved("t5")
    applied.save(tmp_path)
    with pytest.raises(CheckpointError, match="holds prompt_embeddings with shape"):
        method().load(FACTORIES["t5"](layers=3), tmp_path)


# ---------------------------------------------------------------- options


def test_one_stack_models_refuse_a_choice_of_attention():
    with pytest.raises(MethodError, match="one stack; leave method.attention at its default"):
        apply("prefix-tuning", tiny_gpt2(), attention=["decoder"])
    assert apply("prefix-tuning", tiny_gpt2(), num_virtual_tokens=2).kinds == ()


@pytest.mark.parametrize(("value", "message"), [([], "at least one"), (["cross", "cross"], "at most once"),
                                                (["self"], "must be one of")])
def test_bad_attention_values_are_config_errors(value, message):
    with pytest.raises(ConfigError, match=message):
        make_options(method(), {"attention": value})


def test_loss_falls_with_every_single_kind():
    for family in FAMILIES:
        for kinds in (["encoder"], ["cross"]):
            model = FACTORIES[family]()
            apply("prefix-tuning", model, num_virtual_tokens=4, attention=kinds)
            before, after = train(model, copy_batch(8), 40, 1e-1)
            assert after < 0.9 * before, (family, kinds, before, after)


# ---------------------------------------------------------------- through the seq2seq task


def test_a_seq2seq_run_learns_to_copy_and_its_folder_predicts_the_same(tmp_path):
    """``tunekit.run`` with the default prefixes on tiny T5, then ``load_run`` from the tunekit-format folder."""
    import tests.tasks.test_seq2seq as task_tests  # the task's tokenizer, model and copy-data builders
    import tunekit

    tok = task_tests.make_tokenizer("t5")
    task_tests.make_model("t5", len(tok)).save_pretrained(tmp_path / "model")
    tok.save_pretrained(tmp_path / "model")
    rows = task_tests.copy_rows()
    data = task_tests._jsonl(tmp_path / "copy.jsonl", rows)
    method = {"name": "prefix-tuning", "num_virtual_tokens": 8}
    result = tunekit.run(task_tests._config(tmp_path / "model", data, tmp_path / "run", method, 100, 1e-1))
    assert result.summary["eval_exact_match"] == 100.0, result.summary
    assert adapter_files.read_config(result.output_dir / "adapter")["tunekit_method"] == "prefix-tuning"
    loaded = tunekit.load_run(result.output_dir)
    sources = [r["source"] for r in rows]
    assert loaded.job.predict(loaded.model, sources) == sources
