"""`tunekit sweep` and `tunekit compare` end to end on a tiny random BERT: pruning, the outputs, resume after
SIGKILL, two workers on one SQLite study, best.yaml reproducing the best trial, and the bad inputs."""

from __future__ import annotations

import csv
import json
import signal
from pathlib import Path

import optuna
import pytest

from tests.tinyrun import make_data, make_model, popen, tunekit, wait_for
from tunekit.cli import main

PRUNING_SPACE = """
metric: eval_loss
pruner: {type: median, n_startup_trials: 1}
sampler: {type: random, seed: 0}
params:
  training.lr: {choices: [0.05, 1.0e-7]}
  method.name: [lora, pfeiffer]
  method.r: {low: 2, high: 8, when: {method.name: lora}}
"""
PLAIN_SPACE = """
metric: eval_loss
sampler: {type: random, seed: 0}
params:
  training.lr: {low: 1e-3, high: 5e-2, log: true}
"""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sweep")
    model, data = make_model(folder / "model"), make_data(folder / "train.tsv")
    base = folder / "base.yaml"
    base.write_text(f"model: {{name: {model}}}\ntask: {{name: sequence-classification}}\ndata: {{train: {data}}}\n"
                    "method: {name: lora}\ntraining: {max_steps: 12, eval_steps: 4, batch_size: 8, seed: 3}\n")
    return folder


def space_file(folder: Path, text: str, name: str = "space") -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def sweep_args(tiny: Path, space: Path, root: Path, trials: int, *extra: str) -> list[str]:
    return ["sweep", "--config", str(tiny / "base.yaml"), "--space", str(space), "--trials", str(trials),
            "--root", str(root), *extra]


def states(folder: Path, name: str) -> dict[int, str]:
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{folder / 'study.db'}")
    return {t.number: t.state.name for t in study.get_trials()}


def test_sweep_prunes_writes_outputs_and_best_yaml_reproduces(tiny, tmp_path):
    root = tmp_path / "sweeps"
    proc = tunekit(*sweep_args(tiny, space_file(tmp_path, PRUNING_SPACE, "prune"), root, 4))
    assert proc.returncode == 0, proc.stderr[-3000:]
    folder = root / "prune"
    found = states(folder, "prune")
    assert sorted(found) == [0, 1, 2, 3]
    assert "PRUNED" in found.values() and "COMPLETE" in found.values(), found
    for number, state in found.items():
        run = folder / f"trial-{number}"
        assert (run / "config.yaml").is_file()  # every trial is an ordinary run folder
        assert (run / "summary.json").is_file() == (state == "COMPLETE")
    assert "PRUNED" in proc.stdout and "best: trial" in proc.stdout
    rows = list(csv.DictReader((folder / "trials.csv").open()))
    assert [r["state"] for r in rows] == [found[i] for i in range(4)]
    assert {"training.lr", "method.name", "method.r", "trainable_params"} <= set(rows[0])
    for plot in ("history.png", "importances.png", "metric_vs_params.png"):
        assert (folder / plot).stat().st_size > 0
    # best.yaml is the best trial's config: a new process trains the same run and gets the same metric
    complete = {r["number"]: float(r["value"]) for r in rows if r["state"] == "COMPLETE"}
    best = min(complete, key=complete.get)  # eval_loss: smaller is better
    best_summary = json.loads((folder / f"trial-{best}" / "summary.json").read_text())
    rerun = tunekit("run", "--config", str(folder / "best.yaml"), "--output", str(tmp_path / "rerun"))
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    again = json.loads((tmp_path / "rerun" / "summary.json").read_text())
    assert again["final_metrics"] == best_summary["final_metrics"]
    assert again["final_metrics"]["eval_loss"] == complete[best]


def test_sigkill_then_the_same_command_continues_the_study(tiny, tmp_path):
    root, space = tmp_path / "sweeps", space_file(tmp_path, PLAIN_SPACE)
    # trials long enough that the kill lands inside the second one
    args = sweep_args(tiny, space, root, 3, "--set", "training.max_steps=200", "--set", "training.eval_steps=100")
    folder = root / "space"
    proc = popen(*args)
    try:
        wait_for(proc, lambda: (folder / "trial-1").is_dir(), "the second trial")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert states(folder, "space")[1] == "RUNNING"  # killed mid-trial
    again = tunekit(*args)
    assert again.returncode == 0, again.stderr[-3000:]
    found = states(folder, "space")
    assert found == {0: "COMPLETE", 1: "FAIL", 2: "COMPLETE", 3: "COMPLETE"}, found
    assert "trial 0:" not in again.stdout and "trial 2: COMPLETE" in again.stdout  # only the rest ran
    # a finished study runs nothing more
    done = tunekit(*args)
    assert done.returncode == 0 and "trial 4" not in done.stdout and len(states(folder, "space")) == 4


def test_two_workers_share_one_sqlite_study(tiny, tmp_path):
    root = tmp_path / "sweeps"
    # trials long next to a worker's start-up, so the second worker gets some before the first ends them all
    args = sweep_args(tiny, space_file(tmp_path, PLAIN_SPACE), root, 4, "--workers", "2",
                      "--set", "training.max_steps=200", "--set", "training.eval_steps=100")
    proc = tunekit(*args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    folder = root / "space"
    assert states(folder, "space") == {i: "COMPLETE" for i in range(4)}  # no more trials than asked, none lost
    study = optuna.load_study(study_name="space", storage=f"sqlite:///{folder / 'study.db'}")
    pids = {t.user_attrs["pid"] for t in study.get_trials()}
    assert len(pids) == 2, pids  # both worker processes ran trials
    assert sorted(p.name for p in folder.glob("trial-*")) == [f"trial-{i}" for i in range(4)]


def test_compare_three_methods(tiny, tmp_path):
    out = tmp_path / "cmp"
    proc = tunekit("compare", "--methods", "lora,pfeiffer,feature-extraction", "--config", str(tiny / "base.yaml"),
                   "--output", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {r["method"]: r for r in json.loads((out / "compare.json").read_text())}
    assert list(rows) == ["lora", "pfeiffer", "feature-extraction"]
    for method, row in rows.items():
        run = out / method / "seed-3"
        summary = json.loads((run / "summary.json").read_text())
        assert row["metric"] == "eval_accuracy" and row["values"] == [summary["final_metrics"]["eval_accuracy"]]
        assert row["trainable_params"] == summary["trainable_params"] and row["std"] == 0.0
        assert row["adapter_bytes"] == sum(p.stat().st_size for p in (run / "adapter").rglob("*") if p.is_file())
        assert row["peak_memory_mb"] > 0 and row["train_seconds"] > 0
        assert method in proc.stdout
    assert rows["feature-extraction"]["trainable_params"] < rows["lora"]["trainable_params"]
    assert len(list(csv.DictReader((out / "compare.csv").open()))) == 3
    assert (out / "compare.png").stat().st_size > 0


def run_cli(capsys, *args: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    return int(exit_info.value.code), capsys.readouterr().err


@pytest.mark.parametrize(("space", "extra", "needle"), [
    ("params:\n  training.lrr: {low: 0.001, high: 0.01}\n", (), "unknown option training.lrr"),
    ("params:\n  training.lr: {low: 0.01, high: 0.001}\n", (), "empty range"),
    ("metric: eval_bleu\nparams:\n  training.lr: [0.01]\n", (), "has no metric 'eval_bleu'"),
    ("params:\n  training.lr: [0.01]\n", ("--storage", "sqlite:////no/such/folder/study.db"), "does not open"),
    ("params:\n  training.lr: [0.01]\n", ("--storage", "postgresql://nobody@127.0.0.1:1/none"), "does not open"),
    ("params:\n  training.lr: [0.01]\n", ("--output", "x"), "no such option '--output'"),
])
def test_bad_input_is_one_line_and_writes_nothing(tiny, tmp_path, capsys, space, extra, needle):
    root = tmp_path / "sweeps"
    code, err = run_cli(capsys, *sweep_args(tiny, space_file(tmp_path, space), root, 2, *extra))
    assert code == 2, err
    assert needle in err and "Traceback" not in err
    assert [line for line in err.splitlines() if line.startswith("error:")] == [err.strip().splitlines()[-1]]
    assert not root.exists()


def test_compare_refuses_an_unknown_method_before_training(tiny, tmp_path, capsys):
    out = tmp_path / "cmp"
    code, err = run_cli(capsys, "compare", "--methods", "lora,lorra", "--config", str(tiny / "base.yaml"),
                        "--output", str(out))
    assert code == 2 and "lorra" in err and "Traceback" not in err
    assert not out.exists()  # the first method did not train either


def test_fail_stale_leaves_a_trial_that_finished_after_it_was_read(tmp_path):
    """A worker tells the study, then frees the trial's folder: another worker that read the trial as RUNNING just
    before must not try to fail it (optuna refuses to tell a finished trial)."""
    from tunekit.sweep.study import fail_stale

    study = optuna.create_study(study_name="s", storage=f"sqlite:///{tmp_path / 's.db'}")
    trial = study.ask()
    snapshot = study.get_trials(deepcopy=True)  # what the other worker read: trial 0 RUNNING
    study.tell(trial, 1.0)  # its own worker finishes it, then frees trial-0/
    study.get_trials = lambda **kwargs: snapshot
    assert fail_stale(study, tmp_path) == []
    stale = study.ask()  # a trial whose worker died: RUNNING with a free folder
    study.get_trials = lambda **kwargs: [t for t in optuna.load_study(
        study_name="s", storage=f"sqlite:///{tmp_path / 's.db'}").get_trials() if t.number == stale.number]
    assert fail_stale(study, tmp_path) == [stale.number]


def test_compare_table_shows_a_spread_only_over_several_seeds():
    from rich.console import Console

    from tunekit.cli.compare import compare_table
    from tunekit.sweep.compare import MethodRow

    def text(rows):
        console = Console(width=200, record=True)
        console.print(compare_table(rows))
        return console.export_text()

    one = text([MethodRow("lora", "eval_accuracy", [0.75]), MethodRow("full", "eval_accuracy", [0.8])])
    assert "±" not in one and "0.7500" in one
    two = text([MethodRow("lora", "eval_accuracy", [0.7, 0.8]), MethodRow("full", "eval_accuracy", [0.8])])
    assert "0.7500 ± 0.0707" in two and "(mean ± std)" in two
