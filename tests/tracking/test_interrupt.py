"""Ctrl-C during a tracked run: the W&B offline run and the MLflow run are closed and say how the run ended.

Marked slow: a real subprocess is started, signalled and waited for (about 30 s of CPU with MLflow's store)."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from tests.tinyrun import make_data, make_model, run_args, wait_for
from tests.tracking.offline import offline_env, wandb_records


@pytest.mark.slow
def test_ctrl_c_leaves_complete_tracker_runs_marked_as_stopped(tmp_path):
    model, data = make_model(tmp_path / "model"), make_data(tmp_path / "train.tsv")
    out = tmp_path / "run"
    args = run_args(model, data, out, "--max-steps", "2000", "--report-to", "wandb,mlflow",
                    "--set", "training.logging_steps=1")
    proc = subprocess.Popen([sys.executable, "-m", "tunekit", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=offline_env(tmp_path), cwd=tmp_path)
    try:
        metrics = out / "metrics.jsonl"
        wait_for(proc, lambda: metrics.is_file() and len(metrics.read_text().splitlines()) >= 3, "three log lines")
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr.decode()[-2000:]
    (folder,) = (out / "trackers" / "wandb").glob("offline-run-*")
    records = wandb_records(folder)
    steps = [r["history"]["step"]["num"] for r in records if r["type"] == "history"]
    assert len(steps) >= 3 and [r["exit"]["exit_code"] for r in records if r["type"] == "exit"] == [130]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{out / 'trackers' / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("tunekit").experiment_id])
    assert run.info.status == "KILLED" and len(client.get_metric_history(run.info.run_id, "train/loss")) >= 3
