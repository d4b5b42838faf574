"""The GGUF export in llama.cpp itself (through llama-cpp-python), where that is installed.

llama-cpp-python is not a tunekit dependency and is not installed in tunekit's test environment, so this
test skips there; docs/deployment.md ("Export to GGUF") gives the same check as commands.
"""

from __future__ import annotations

import pytest

from tunekit.exports import GGUF_FILE
from tunekit.runs.runner import load_run

llama_cpp = pytest.importorskip(
    "llama_cpp", reason="llama-cpp-python is not installed (`pip install llama-cpp-python` to check GGUF exports in llama.cpp)"
)

PROMPTS = ["is the movie good ?", "the plot was"]


@pytest.mark.parametrize("dtype", ["f32", "f16"])
def test_llama_cpp_reads_the_export_with_the_runs_tokens_and_greedy_text(cli, llama_run, tmp_path, dtype):
    out = tmp_path / dtype
    assert cli("export", "--run", str(llama_run), "--output", str(out), "--format", "gguf", "--dtype", dtype).code == 0
    loaded = load_run(llama_run)
    llm = llama_cpp.Llama(model_path=str(out / GGUF_FILE), n_ctx=128, n_threads=1, verbose=False)
    for prompt in PROMPTS:
        ids = loaded.tokenizer(prompt).input_ids
        assert llm.tokenize(prompt.encode(), add_bos=False, special=True) == ids  # same pre-tokenizer and merges
        expected = loaded.model.generate(loaded.tokenizer(prompt, return_tensors="pt").input_ids, max_new_tokens=8,
                                         do_sample=False, eos_token_id=loaded.tokenizer.eos_token_id)[0, len(ids):]
        text = llm.create_completion(ids, max_tokens=8, temperature=0.0, top_k=1)["choices"][0]["text"]
        assert text == loaded.tokenizer.decode(expected, skip_special_tokens=True)
