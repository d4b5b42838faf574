"""`tunekit export --format gguf`: a Llama causal-LM run as one GGUF file that transformers reads back."""

from __future__ import annotations

import pytest
import torch

from tunekit.exports import GGUF_FILE
from tunekit.runs.runner import load_run

PROMPTS = ["is the movie good ?", "the plot was", "yes , the film"]


def _export(cli, run, out, dtype):
    result = cli("export", "--run", str(run), "--output", str(out), "--format", "gguf", "--dtype", dtype)
    assert result.code == 0, result.stderr
    assert f"GGUF ({dtype})" in result.stdout
    return out / GGUF_FILE


def _read_back(path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)


def _greedy(model, ids):
    with torch.no_grad():
        return model.generate(ids, max_new_tokens=12, do_sample=False, pad_token_id=0, eos_token_id=None)[0].tolist()


@pytest.fixture(scope="module")
def run_model(llama_run):
    return load_run(llama_run)


@pytest.mark.parametrize("dtype", ["f32", "f16"])
def test_gguf_round_trip_gives_the_runs_greedy_tokens(cli, llama_run, run_model, tmp_path, dtype):
    path = _export(cli, llama_run, tmp_path / dtype, dtype)
    model, tokenizer = _read_back(path)
    for prompt in PROMPTS:
        ids = run_model.tokenizer(prompt, return_tensors="pt").input_ids
        assert tokenizer(prompt).input_ids == ids[0].tolist()  # the GGUF tokenizer splits text as the run's does
        assert _greedy(model, ids) == _greedy(run_model.model, ids), prompt
    if dtype == "f32":
        ids = run_model.tokenizer(PROMPTS, return_tensors="pt", padding=True)
        with torch.no_grad():
            expected, got = run_model.model(**ids).logits, model(**ids).logits
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)  # stated tolerance for f32: 1e-4


def test_gguf_metadata_carries_tokenizer_and_chat_template(cli, llama_run, run_model, tmp_path):
    import gguf

    reader = gguf.GGUFReader(_export(cli, llama_run, tmp_path / "meta", "f16"))
    fields = {k: f.contents() for k, f in reader.fields.items() if k.startswith(("tokenizer.", "llama.", "general.a"))}
    tok = run_model.tokenizer
    assert fields["general.architecture"] == "llama"
    assert fields["tokenizer.ggml.model"] == "gpt2" and fields["tokenizer.ggml.pre"] == "gpt-2"
    assert fields["tokenizer.chat_template"] == tok.chat_template
    assert fields["tokenizer.ggml.eos_token_id"] == tok.eos_token_id
    assert fields["tokenizer.ggml.bos_token_id"] == tok.bos_token_id
    assert len(fields["tokenizer.ggml.tokens"]) == run_model.model.config.vocab_size  # padded to the embeddings
    types = fields["tokenizer.ggml.token_type"]
    assert types[tok.convert_tokens_to_ids("<|im_end|>")] == gguf.TokenType.CONTROL
    assert types[-1] == gguf.TokenType.UNUSED and types[100] == gguf.TokenType.NORMAL
    assert fields["tokenizer.ggml.merges"]
    names = {t.name for t in reader.tensors}
    assert "output.weight" not in names and "token_embd.weight" in names  # tied head left to token_embd


def test_q8_0_loads_and_generates(cli, llama_run, run_model, tmp_path):
    import gguf

    path = _export(cli, llama_run, tmp_path / "q8", "q8_0")
    kinds = {t.name: t.tensor_type for t in gguf.GGUFReader(path).tensors}
    assert kinds["blk.0.attn_q.weight"] == gguf.GGMLQuantizationType.Q8_0
    assert kinds["blk.0.attn_norm.weight"] == gguf.GGMLQuantizationType.F32
    model, _ = _read_back(path)
    ids = run_model.tokenizer(PROMPTS[0], return_tensors="pt").input_ids
    out = _greedy(model, ids)
    assert len(out) == ids.shape[1] + 12 and out[: ids.shape[1]] == ids[0].tolist()
    with torch.no_grad():  # quantized to 8 bits: close to the run's logits, not equal
        diff = (model(ids).logits - run_model.model(ids).logits).abs().max().item()
    assert diff < 0.05, diff
