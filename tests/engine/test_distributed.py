"""Data-parallel training on CPU: two processes under torchrun match one process with the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file
from tinyjob import FullApplied, max_diff, tiny_bert, weights
from train_script import SCRIPT, job, training_config

from tunekit.engine import find_last_checkpoint, train


@pytest.mark.distributed
def test_two_processes_match_one_with_the_same_global_batch(tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(SCRIPT), str(out), "--steps", "12", "--save-steps", "5", "--batch-size", "4", "--no-dropout"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert proc.stdout.count("steps=12") == 1  # only the main process reports and writes

    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [5, 10, 12]
    assert [r["step"] for r in records if "eval_loss" in r] == [12]
    assert find_last_checkpoint(out).name == "step-10"
    rngs = json.loads((out / "checkpoints" / "step-10" / "rng.json").read_text())
    assert len(rngs) == 2  # one RNG state per process

    model = tiny_bert(dropout=0.0)
    train(model, job(), training_config(12, 5, 8), tmp_path / "single", applied=FullApplied(model),
          config_fingerprint="script")
    diff = max_diff(weights(model), load_file(str(out / "final.safetensors")))
    print(f"\n2 processes x batch 4 vs 1 process x batch 8: max |w_ddp - w_single| = {diff:.3g}")
    assert diff < 1e-4


@pytest.mark.distributed
def test_tunekit_run_under_torchrun_writes_one_run_folder(tmp_path):
    # Every rank runs `tunekit run`; only rank 0 may take the run-folder lock and write (a rank that believed it
    # was the main process would find the folder locked by rank 0 and fail).
    sys.path.insert(0, str(Path(__file__).parents[1]))
    from tinyrun import make_data, make_model, run_args

    model, data, out = make_model(tmp_path / "model"), make_data(tmp_path / "data.tsv"), tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "tunekit", *run_args(model, data, out, "--max-steps", "4")]
    proc = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 4 and (out / "adapter" / "adapter_model.safetensors").is_file()
