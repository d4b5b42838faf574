"""IA3 on tiny random T5 and BART: folders in PEFT's IA3 format (``task_type: SEQ_2_SEQ_LM``) both ways."""

from __future__ import annotations

import importlib.util
import json
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import BartConfig, BartForConditionalGeneration, T5Config, T5ForConditionalGeneration
from tunekit_ia3 import IA3

from tunekit.methods import adapter_files
from tunekit.methods.protocol import make_options

pytestmark = pytest.mark.skipif(importlib.util.find_spec("peft") is None, reason="peft is not installed")


def tiny(family: str, gated: bool = False) -> torch.nn.Module:
    """A two-block-per-stack model, dropout off (gated: T5 v1.1 with an untied head)."""
    torch.manual_seed(0)
    if family == "t5":
        config = T5Config(vocab_size=24, d_model=32, d_kv=8, num_heads=4, d_ff=48, num_layers=2, num_decoder_layers=2,
                          relative_attention_num_buckets=8, dropout_rate=0.0, pad_token_id=0, eos_token_id=1,
                          decoder_start_token_id=0, feed_forward_proj="gated-gelu" if gated else "relu",
                          tie_word_embeddings=not gated)
        return T5ForConditionalGeneration(config).eval()
    config = BartConfig(vocab_size=24, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                        decoder_attention_heads=4, encoder_ffn_dim=48, decoder_ffn_dim=48, max_position_embeddings=32,
                        dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, pad_token_id=1, bos_token_id=0,
                        eos_token_id=2, decoder_start_token_id=2, forced_eos_token_id=None, init_std=0.2)
    return BartForConditionalGeneration(config).eval()


FAMILIES = [("t5", False), ("t5", True), ("bart", False)]


def batch() -> dict[str, torch.Tensor]:
    ids = torch.randint(3, 24, (3, 6), generator=torch.Generator().manual_seed(1))
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.flip(1).contiguous()}


def logits(model: torch.nn.Module) -> torch.Tensor:
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model(**batch()).logits


def trained(family: str, gated: bool):
    """IA3 applied with its vectors moved well away from ones."""
    model = tiny(family, gated)
    applied = IA3().apply(model, make_options(IA3(), {}))
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for wrapper in applied.wrappers().values():
            wrapper.ia3_l.copy_(1 + 0.5 * torch.randn(wrapper.ia3_l.shape, generator=g))
    return model, applied


def peft_load(family: str, gated: bool, folder: Path) -> torch.nn.Module:
    import peft

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return peft.PeftModel.from_pretrained(tiny(family, gated), str(folder)).eval()


@pytest.mark.parametrize(("family", "gated"), FAMILIES)
def test_saved_folder_is_peft_ia3_and_peft_loads_it_with_identical_outputs(family, gated, tmp_path):
    model, applied = trained(family, gated)
    applied.save(tmp_path)
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert (config["peft_type"], config["task_type"]) == ("IA3", "SEQ_2_SEQ_LM") and "tunekit_method" not in config
    assert set(config["feedforward_modules"]) < set(config["target_modules"])
    assert adapter_files.method_of(tmp_path) == "ia3"
    tensors = load_file(str(tmp_path / "adapter_model.safetensors"))
    assert len(tensors) == len(applied.targets) and all(k.startswith("base_model.model.") for k in tensors)
    theirs = peft_load(family, gated, tmp_path)
    assert theirs.get_nb_trainable_parameters()[1] and sum(p.numel() for n, p in theirs.named_parameters()
                                                           if "ia3_l" in n) == IA3().expected_trainable(model, applied.options)
    torch.testing.assert_close(logits(theirs), logits(model), atol=1e-5, rtol=0)
    assert not torch.allclose(logits(tiny(family, gated)), logits(model), atol=1e-3)  # the vectors do something


@pytest.mark.parametrize(("family", "gated"), FAMILIES)
def test_tunekit_reloads_its_peft_format_folder_and_writes_it_again_unchanged(family, gated, tmp_path):
    model, applied = trained(family, gated)
    applied.save(tmp_path / "a")
    reloaded = IA3().load(tiny(family, gated), tmp_path / "a")
    torch.testing.assert_close(logits(reloaded.model), logits(model), atol=0, rtol=0)
    reloaded.save(tmp_path / "b")
    first, second = (load_file(str(tmp_path / d / "adapter_model.safetensors")) for d in "ab")
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
    assert (tmp_path / "a" / "adapter_config.json").read_text() == (tmp_path / "b" / "adapter_config.json").read_text()


@pytest.mark.parametrize("family", ["t5", "bart"])
def test_peft_ia3_folder_loads_in_tunekit_with_identical_outputs(family, tmp_path):
    import peft

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = peft.get_peft_model(tiny(family), peft.IA3Config(task_type="SEQ_2_SEQ_LM", init_ia3_weights=False))
        theirs.save_pretrained(str(tmp_path))
    expected = logits(peft_load(family, False, tmp_path))
    ours = IA3().load(tiny(family), tmp_path)
    torch.testing.assert_close(logits(ours.model), expected, atol=1e-5, rtol=0)


def test_a_kept_module_keeps_tunekit_format(tmp_path):
    model = tiny("t5", gated=True)
    IA3().apply(model, make_options(IA3(), {}), ["lm_head"]).save(tmp_path)
    assert json.loads((tmp_path / "adapter_config.json").read_text())["tunekit_method"] == "ia3"
    assert IA3().load(tiny("t5", gated=True), tmp_path).keep == ["lm_head"]
