"""`tunekit run --report-to wandb,mlflow,tensorboard` on a tiny random BERT (offline), each store read back with
its own library's reader, and the same run without trackers trains to the same bits."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.tinyrun import adapter_tensors, make_data, make_model, metric_lines, run_args
from tests.tracking.offline import offline_env, wandb_records

ARGS = ("--max-steps", "6", "--eval-steps", "3", "--set", "training.logging_steps=1")


def tunekit_offline(home: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tunekit", *args], capture_output=True, text=True, timeout=600,
                          env=offline_env(home), cwd=home)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """One run logging to all three trackers and the same run without any."""
    home = tmp_path_factory.mktemp("tracking")
    model, data = make_model(home / "model"), make_data(home / "train.tsv")
    out = {"tracked": home / "tracked", "plain": home / "plain"}
    trackers = ("--report-to", "wandb,mlflow,tensorboard")
    for name, extra in (("tracked", trackers), ("plain", ())):
        proc = tunekit_offline(home, *run_args(model, data, out[name], *ARGS, *extra))
        assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def logged(run: Path) -> tuple[dict[int, float], dict[int, float]]:
    """Training loss per step and eval accuracy per step, from metrics.jsonl (what the trackers must hold)."""
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return ({r["step"]: r["loss"] for r in lines if "loss" in r},
            {r["step"]: r["eval_accuracy"] for r in lines if "eval_accuracy" in r})


def test_cli_logs_to_all_three_trackers_under_the_run_folder(runs):
    trackers = runs["tracked"] / "trackers"
    assert any((trackers / "tensorboard").glob("events.out.tfevents.*"))
    assert list((trackers / "wandb").glob("offline-run-*/run-*.wandb"))
    assert (trackers / "mlflow.db").is_file()
    assert not (runs["plain"] / "trackers").exists()
    assert not list(runs["tracked"].parent.glob("mlruns")) and not (runs["tracked"].parent / "wandb").exists()


def test_trackers_do_not_change_training(runs):
    assert metric_lines(runs["tracked"]) == metric_lines(runs["plain"])
    a, b = adapter_tensors(runs["tracked"]), adapter_tensors(runs["plain"])
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_wandb_offline_run_reads_back_with_wandbs_own_reader(runs):
    (folder,) = (runs["tracked"] / "trackers" / "wandb").glob("offline-run-*")
    records = wandb_records(folder)
    history = {r["history"]["step"]["num"]: r["history"]["item"] for r in records if r["type"] == "history"}
    config: dict = {}
    for r in records:
        if r["type"] == "config":
            config.update(r["config"]["update"])
    losses, accuracy = logged(runs["tracked"])
    assert {step: history[step]["train/loss"] for step in losses} == losses
    assert {step: history[step]["eval/accuracy"] for step in accuracy} == accuracy
    assert all("train/grad_norm" in history[step] and "train/lr" in history[step] for step in losses)
    assert config["training.lr"] == 0.005 and config["method.name"] == "lora"
    assert config["run_folder"] == str(runs["tracked"].resolve())
    assert config["trainable_params"] > 0 and config["total_params"] > config["trainable_params"]
    assert "final/accuracy" in history[max(history)]
    assert [r["exit"]["exit_code"] for r in records if r["type"] == "exit"] == [0]  # finished, not cut off


def test_mlflow_sqlite_store_reads_back_through_the_client(runs):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{runs['tracked'] / 'trackers' / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("tunekit").experiment_id])
    losses, accuracy = logged(runs["tracked"])
    history = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "train/loss")}
    assert history == pytest.approx(losses, abs=0)
    evals = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "eval/accuracy")}
    assert evals == accuracy
    assert run.data.params["training.lr"] == "0.005" and run.data.params["training.max_steps"] == "6"
    assert run.data.tags["tunekit.run_folder"] == str(runs["tracked"].resolve())
    assert run.info.status == "FINISHED"


def test_tensorboard_scalars_read_back_with_event_accumulator(runs):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(runs["tracked"] / "trackers" / "tensorboard"))
    events.Reload()
    losses, accuracy = logged(runs["tracked"])
    loss = {e.step: e.value for e in events.Scalars("train/loss")}
    assert loss.keys() == losses.keys() and loss == pytest.approx(losses, rel=1e-6)  # stored as float32
    assert {e.step: e.value for e in events.Scalars("eval/accuracy")} == pytest.approx(accuracy, rel=1e-6)
