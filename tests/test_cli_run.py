"""`tunekit run` end to end through the console script: the SST-2 slice, and bad input ending cleanly."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import shared_data


def tunekit(*args: str, cwd: Path | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tunekit", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout)


def assert_clean_error(proc: subprocess.CompletedProcess, code: int, needle: str) -> None:
    assert proc.returncode == code, proc.stderr
    assert needle in proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error:") or any(line.startswith("error:") for line in lines)


def test_unknown_method_suggests_a_name(tmp_path):
    proc = tunekit("run", "--method", "lorra", "--output", str(tmp_path / "out"))
    assert_clean_error(proc, 2, "did you mean 'lora'")
    assert not (tmp_path / "out").exists()


def test_bad_set_value_names_the_key(tmp_path):
    proc = tunekit("run", "--set", "training.lr=fast", "--output", str(tmp_path / "out"))
    assert_clean_error(proc, 2, "training.lr must be a number")
    assert not (tmp_path / "out").exists()


def test_missing_data_file_leaves_no_folder(tmp_path):
    proc = tunekit("run", "--method", "full", "--task", "sequence-classification", "--model", "minilm-l6",
                   "--data", str(tmp_path / "missing.tsv"), "--output", str(tmp_path / "out"))
    assert_clean_error(proc, 2, "does not exist")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_sst2_slice_on_minilm(tmp_path):
    """The foundation's slice: full fine-tuning of MiniLM on SST-2 for a few steps, then the run folder."""
    train = shared_data("sst2", "train.tsv")
    dev = shared_data("sst2", "dev.tsv")
    out = tmp_path / "run"
    proc = tunekit("run", "--method", "full", "--task", "sequence-classification", "--model", "minilm-l6",
                   "--data", str(train), "--val-data", str(dev), "--max-steps", "40", "--batch-size", "16",
                   "--lr", "2e-4", "--set", "data.max_train_samples=2000", "--set", "data.max_eval_samples=300",
                   "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "trainable params: 22,713,986 || all params: 22,713,986 || trainable%: 100.0000" in proc.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["trainable_params"] == summary["total_params"] == 22_713_986
    assert summary["eval_accuracy"] > 0.6  # chance is ~0.5; 40 steps of full fine-tuning clear it
    assert {"eval_loss", "eval_f1", "eval_matthews_correlation"} <= summary.keys()
    assert (out / "config.yaml").is_file() and (out / "metrics.jsonl").is_file()
    assert any((out / "adapter").iterdir())
    # A plain rerun into the same folder refuses, saying how to resume or start over.
    again = tunekit("run", "--method", "full", "--task", "sequence-classification", "--model", "minilm-l6",
                    "--data", str(train), "--output", str(out))
    assert_clean_error(again, 1, "--resume")


def test_run_flags_take_help_and_type_from_the_config_fields():
    """One help string per key: each `tunekit run` flag shows its config field's help, type and choices."""
    import click

    from tunekit import config
    from tunekit.cli.run import FLAG_KEYS, overrides_from_flags, run

    params = {p.name: p for p in run.params}
    for flag, key in FLAG_KEYS.items():
        _, help_text = config.key_field(key)
        assert params[flag].help == f"{help_text} [{key}]", flag
    assert "backbone_lr" in params["lr"].help
    assert params["lr"].type is click.FLOAT and params["max_steps"].type is click.INT
    assert list(params["precision"].type.choices) == ["fp32", "bf16"]
    assert params["resume"].is_flag and params["report_to"].multiple
    tree = overrides_from_flags({"lr": 0.1, "resume": True, "overwrite": False, "report_to": ("tensorboard",),
                                 "epochs": None})
    assert tree == {"training": {"lr": 0.1, "resume": True, "report_to": ["tensorboard"]}}
