"""Prompt tuning on tiny random T5 and BART: PEFT's prompt-tuning folders (``task_type: SEQ_2_SEQ_LM``) both
ways, and what a soft prompt can learn on a copy task.

On a *random* frozen model a soft prompt cannot learn to copy (``tests/methods/test_seq2seq_methods.py`` asks
for a 10% lower loss): the frozen cross-attention has no position-aligned read-out for the prompt to switch on,
and more tokens, steps, other learning rates or initialisations only move the plateau a little (see the
README). Given a base that *has* the skill, the prompt learns to select it: ``test_prompt_selects_a_task_the
_frozen_model_knows`` first trains a tiny BART on copy and reversal, each behind a marker token, then tunes a
one-vector prompt (no marker) on copying, to near-zero loss on held-out sequences.
"""

from __future__ import annotations

import importlib.util
import json
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import BartConfig, BartForConditionalGeneration, T5Config, T5ForConditionalGeneration
from tunekit_prompt_tuning import PromptTuning

from tunekit.methods import adapter_files
from tunekit.methods.protocol import make_options

VOCAB, LENGTH = 24, 6
peft_needed = pytest.mark.skipif(importlib.util.find_spec("peft") is None, reason="peft is not installed")


def tiny(family: str) -> torch.nn.Module:
    """A two-block-per-stack model, dropout off."""
    torch.manual_seed(0)
    if family == "t5":
        return T5ForConditionalGeneration(T5Config(
            vocab_size=VOCAB, d_model=32, d_kv=8, num_heads=4, d_ff=48, num_layers=2, num_decoder_layers=2,
            relative_attention_num_buckets=8, dropout_rate=0.0, pad_token_id=0, eos_token_id=1,
            decoder_start_token_id=0)).eval()
    return BartForConditionalGeneration(BartConfig(
        vocab_size=VOCAB, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=48, decoder_ffn_dim=48, max_position_embeddings=32, dropout=0.0,
        attention_dropout=0.0, activation_dropout=0.0, pad_token_id=1, bos_token_id=0, eos_token_id=2,
        decoder_start_token_id=2, forced_eos_token_id=None, init_std=0.2)).eval()


def sequences(n: int, seed: int, marker: int | None = None, reverse: bool = False) -> dict[str, torch.Tensor]:
    """Random ids 5.. (3 and 4 are the task markers) as source, the same (or reversed) ids as labels."""
    ids = torch.randint(5, VOCAB, (n, LENGTH), generator=torch.Generator().manual_seed(seed))
    source = ids if marker is None else torch.cat([torch.full((n, 1), marker), ids], dim=1)
    return {"input_ids": source, "attention_mask": torch.ones_like(source),
            "labels": (ids.flip(1) if reverse else ids).contiguous()}


def logits(model: torch.nn.Module, batch: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model(**(batch or sequences(3, 1))).logits


def loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> float:
    with torch.no_grad():
        return float(model(**batch).loss)


def prompted(family: str, **values):
    model = tiny(family)
    applied = PromptTuning().apply(model, make_options(PromptTuning(), {"num_virtual_tokens": 3, **values}))
    with torch.no_grad():
        applied.prompt.weight.normal_(generator=torch.Generator().manual_seed(2))
    return model, applied


def peft_load(family: str, folder: Path) -> torch.nn.Module:
    import peft

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return peft.PeftModel.from_pretrained(tiny(family), str(folder)).eval()


@peft_needed
@pytest.mark.parametrize("family", ["t5", "bart"])
def test_saved_folder_is_peft_prompt_tuning_and_peft_loads_it_with_identical_outputs(family, tmp_path):
    model, applied = prompted(family)
    applied.save(tmp_path)
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert (config["peft_type"], config["task_type"], config["num_transformer_submodules"]) == \
        ("PROMPT_TUNING", "SEQ_2_SEQ_LM", 2) and "tunekit_method" not in config
    assert adapter_files.method_of(tmp_path) == "prompt-tuning"
    stored = load_file(str(tmp_path / "adapter_model.safetensors"))
    assert list(stored) == ["prompt_embeddings"] and stored["prompt_embeddings"].shape == (6, 32)
    torch.testing.assert_close(stored["prompt_embeddings"][:3], applied.prompt.weight.detach(), atol=0, rtol=0)
    torch.testing.assert_close(logits(peft_load(family, tmp_path)), logits(model), atol=1e-5, rtol=0)
    assert not torch.allclose(logits(tiny(family)), logits(model), atol=1e-3)  # the prompt does something


@pytest.mark.parametrize("family", ["t5", "bart"])
def test_tunekit_reloads_its_peft_format_folder(family, tmp_path):
    model, applied = prompted(family)
    applied.save(tmp_path)
    reloaded = PromptTuning().load(tiny(family), tmp_path)
    torch.testing.assert_close(logits(reloaded.model), logits(model), atol=0, rtol=0)


@peft_needed
@pytest.mark.parametrize("family", ["t5", "bart"])
def test_peft_prompt_tuning_folder_loads_in_tunekit_and_is_written_back_for_peft(family, tmp_path):
    import peft

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = peft.get_peft_model(tiny(family), peft.PromptTuningConfig(task_type="SEQ_2_SEQ_LM", num_virtual_tokens=3))
        theirs.save_pretrained(str(tmp_path / "peft"))
    expected = logits(peft_load(family, tmp_path / "peft"))
    ours = PromptTuning().load(tiny(family), tmp_path / "peft")
    torch.testing.assert_close(logits(ours.model), expected, atol=1e-5, rtol=0)
    ours.save(tmp_path / "again")
    torch.testing.assert_close(logits(peft_load(family, tmp_path / "again")), expected, atol=1e-5, rtol=0)


def test_a_kept_module_keeps_tunekit_format(tmp_path):
    model = tiny("t5")
    PromptTuning().apply(model, make_options(PromptTuning(), {"num_virtual_tokens": 2}), ["lm_head"]).save(tmp_path)
    assert json.loads((tmp_path / "adapter_config.json").read_text())["tunekit_method"] == "prompt-tuning"


def _train(model: torch.nn.Module, batches, steps: int, lr: float) -> None:
    params = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.Adam(params, lr=lr)
    model.train()
    for step in range(steps):
        optimiser.zero_grad()
        model(**batches(step)).loss.backward()
        optimiser.step()
    model.eval()


@pytest.fixture
def one_thread():
    """Torch on one thread (a tiny model trains fastest so, and a shared machine stays responsive)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.usefixtures("one_thread")
def test_prompt_selects_a_task_the_frozen_model_knows():
    model = tiny("bart")

    def both_tasks(step):  # fresh sequences each step, half copied behind marker 3, half reversed behind 4
        copy, reverse = sequences(16, 1000 + step, marker=3), sequences(16, 5000 + step, marker=4, reverse=True)
        return {k: torch.cat([copy[k], reverse[k]]) for k in copy}

    _train(model, both_tasks, 400, 3e-3)
    assert loss(model, sequences(8, 7, marker=3)) < 0.05  # the base copies behind its marker ...
    held_out = sequences(8, 7)
    assert loss(model, held_out) > 1.0  # ... and not without it
    PromptTuning().apply(model, make_options(PromptTuning(), {"num_virtual_tokens": 1, "init": "random"}))
    before = loss(model, held_out)
    _train(model, lambda step: sequences(8, 5), 100, 1e-1)  # one fixed batch, as in the copy-task tests
    after = loss(model, held_out)
    assert after < 0.05 and before > 0.5, f"{before:.3f} -> {after:.3f}"
