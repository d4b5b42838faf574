"""``tunekit estimate``: the formula's parts on meta-built configs, a 7B config without weights, and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tunekit import estimate as est

LLAMA2_7B = {
    "model_type": "llama", "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
    "num_attention_heads": 32, "num_key_value_heads": 32, "vocab_size": 32000, "max_position_embeddings": 4096,
    "rms_norm_eps": 1e-5, "tie_word_embeddings": False, "architectures": ["LlamaForCausalLM"],
}
LLAMA2_7B_PARAMS = 6_738_415_616
LLAMA2_7B_BLOCK_LINEARS = 32 * (4 * 4096 * 4096 + 3 * 4096 * 11008)

TINY_LLAMA = {
    "model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 500, "max_position_embeddings": 256,
    "tie_word_embeddings": True,
}
TINY_BERT = {
    "model_type": "bert", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
    "num_attention_heads": 2, "vocab_size": 100, "max_position_embeddings": 128,
}


def write_config(folder: Path, values: dict) -> Path:
    path = folder / "config.json"
    path.write_text(json.dumps(values), encoding="utf-8")
    return path


def tiny(tmp_path: Path, values: dict, method: str = "lora", **settings) -> est.Estimate:
    return est.estimate(str(write_config(tmp_path, values)), method, est.Settings(**settings))


def test_llama2_7b_weights_from_a_bare_config(tmp_path):
    config = str(write_config(tmp_path, LLAMA2_7B))
    plain = est.estimate(config, "lora", est.Settings(batch_size=1, length=512))
    assert plain.weights == LLAMA2_7B_PARAMS * 4  # LoRA freezes every pretrained parameter; fp32 storage
    assert plain.trainable_params == 32 * 2 * 8 * (4096 + 4096)  # r=8 on q and v: A (8x4096) + B (4096x8)
    assert plain.trainable_state == 16 * plain.trainable_params
    nf4 = est.estimate(config, "lora", est.Settings(batch_size=1, length=512, quantize="nf4"))
    assert nf4.quantized_params == LLAMA2_7B_BLOCK_LINEARS
    floats = 4 * (LLAMA2_7B_PARAMS - LLAMA2_7B_BLOCK_LINEARS)  # embeddings, output layer and norms stay float32
    per_quantized = (nf4.weights - floats) / nf4.quantized_params
    assert 0.5 <= per_quantized <= 0.57  # 4-bit codes plus one float32 absmax per 64 weights
    int8 = est.estimate(config, "lora", est.Settings(batch_size=1, length=512, quantize="int8"))
    assert 1.0 <= (int8.weights - floats) / int8.quantized_params <= 1.01


def test_parts_follow_the_settings(tmp_path):
    base = tiny(tmp_path, TINY_LLAMA, batch_size=2, length=32)
    assert base.details["task"] == "causal-lm"
    assert base.total == base.weights + base.trainable_state + base.activations + base.allocator + base.logits + base.overhead
    double = tiny(tmp_path, TINY_LLAMA, batch_size=4, length=32)
    assert double.activations == 2 * base.activations
    ckpt = tiny(tmp_path, TINY_LLAMA, batch_size=2, length=32, gradient_checkpointing=True)
    assert ckpt.activations < base.activations
    assert base.allocator == base.activations // 2 and ckpt.allocator == 0  # the heap's slack only without ckpt
    bf16 = tiny(tmp_path, TINY_LLAMA, batch_size=2, length=32, precision="bf16")
    assert bf16.activations * 2 == base.activations
    full_logits = tiny(tmp_path, TINY_LLAMA, batch_size=2, length=32, logits_chunk=None)
    assert full_logits.logits == 3 * 2 * 32 * 500 * 4
    chunked = tiny(tmp_path, TINY_LLAMA, batch_size=2, length=32, logits_chunk=16)
    assert chunked.logits == 3 * 16 * 500 * 4


def test_training_more_keeps_more(tmp_path):
    lora = tiny(tmp_path, TINY_LLAMA, "lora", batch_size=2, length=32)
    full = tiny(tmp_path, TINY_LLAMA, "full", batch_size=2, length=32)
    assert full.trainable_params == full.total_params and full.weights == 0
    assert full.activations > lora.activations > tiny(tmp_path, TINY_LLAMA, "freeze", batch_size=2, length=32).activations * 0


def test_encoder_is_classification_without_logits(tmp_path):
    result = tiny(tmp_path, TINY_BERT, batch_size=8, length=16)
    assert result.details["task"] == "classification" and result.logits == 0
    assert result.trainable_params > 2 * 2 * 8 * (32 + 32)  # the LoRA pairs plus the fresh classifier head


@pytest.mark.parametrize("bad, needle", [
    ({"quantize": "int4"}, "unknown quantization 'int4'"),
    ({"batch_size": 0}, "must be positive"),
    ({"precision": "fp16"}, "unknown precision"),
])
def test_bad_settings_name_the_problem(tmp_path, bad, needle):
    from tunekit.errors import UsageError

    with pytest.raises(UsageError, match=needle):
        tiny(tmp_path, TINY_LLAMA, **bad)


def test_chunk_matches_the_causal_lm_loss():
    from tunekit.builtins.tasks.causal_lm.loss import CHUNK_TOKENS

    assert est.LOSS_CHUNK_TOKENS == CHUNK_TOKENS


def tunekit(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tunekit", *args], capture_output=True, text=True, timeout=300)


def test_cli_json_on_a_config(tmp_path):
    config = str(write_config(tmp_path, TINY_LLAMA))
    proc = tunekit("estimate", "--model", config, "-b", "2", "-l", "32", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["total"] == sum(data[k] for k in ("weights", "trainable_state", "activations", "allocator", "logits", "overhead"))
    table = tunekit("estimate", "--model", config, "--quantize", "nf4", "--option", "r=4")
    assert table.returncode == 0, table.stderr
    assert "activations" in table.stdout and "peak" in table.stdout


@pytest.mark.parametrize("args, needle", [
    (["--model", "missing/config.json"], "does not exist"),
    (["--method", "lorra"], "unknown method 'lorra'"),
    (["--quantize", "int4"], "unknown quantization 'int4'"),
])
def test_cli_bad_input_is_one_line(tmp_path, args, needle):
    config = str(write_config(tmp_path, TINY_LLAMA))
    proc = tunekit("estimate", "--model", config, *args)
    assert proc.returncode != 0
    assert needle in proc.stderr and "Traceback" not in proc.stderr
    assert [line for line in proc.stderr.splitlines() if line.strip()][-1].startswith("error:")


def test_cli_checkpointing_defaults_to_what_a_run_does(tmp_path):
    """Without the flag the estimate follows training.gradient_checkpointing: null (on from 4096 tokens a batch)."""
    from click.testing import CliRunner

    from tunekit import cli as cli_module

    cli_module._load_commands()
    config = str(write_config(tmp_path, TINY_LLAMA))

    def activations(length: int, *flags: str) -> int:
        result = CliRunner().invoke(cli_module.cli, ["estimate", "--model", config, "-b", "4", "-l", str(length),
                                                     "--json", *flags], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return json.loads(result.output)["activations"]

    assert activations(1024) == activations(1024, "--gradient-checkpointing") < activations(1024, "--no-gradient-checkpointing")
    assert activations(256) == activations(256, "--no-gradient-checkpointing") > activations(256, "--gradient-checkpointing")
