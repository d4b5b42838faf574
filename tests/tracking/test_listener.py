"""tunekit.runs.trackers without a real service: names, missing packages, where stores go, closing on Ctrl-C, and
trackers that draw random numbers leaving the run's generators alone."""

from __future__ import annotations

import random
import subprocess
import sys

import numpy as np
import pytest
import torch
from accelerate.tracking import LOGGER_TYPE_TO_CLASS, GeneralTracker

from tests.engine.tinyjob import FullApplied, TinyJob, tiny_bert
from tests.tinyrun import env
from tunekit.config import TrainingConfig
from tunekit.engine import train
from tunekit.errors import ConfigError, TrainingInterrupted
from tunekit.runs import trackers


class FakeTracker(GeneralTracker):
    """Records its calls and draws from every global generator, as a careless tracker might."""

    name = "fake"
    requires_logging_directory = False
    made: list[FakeTracker] = []

    def __init__(self, project: str, **kwargs):
        super().__init__()
        self.calls: list[tuple] = []
        FakeTracker.made.append(self)

    @property
    def tracker(self):
        return self

    def _draw(self) -> None:
        random.random(), np.random.rand(), torch.rand(1)

    def start(self):
        self._draw()
        self.calls.append(("start",))

    def store_init_configuration(self, values):
        self.calls.append(("config", dict(values)))

    def log(self, values, step=None, **kwargs):
        self._draw()
        self.calls.append(("log", step, dict(values)))

    def finish(self):
        self._draw()
        self.calls.append(("finish",))


@pytest.fixture
def fake(monkeypatch):
    monkeypatch.setitem(LOGGER_TYPE_TO_CLASS, "fake", FakeTracker)
    FakeTracker.made.clear()
    return FakeTracker.made


def tunekit_cli(tmp_path, *args: str, hide: str = "") -> subprocess.CompletedProcess:
    """``tunekit`` in a subprocess, with module ``hide`` made unimportable (as if its package were not installed)."""
    code = (f"import sys; sys.modules.update({{{hide!r}: None}} if {hide!r} else {{}}); "
            f"from tunekit.cli import main; main({['-q', *args]!r})")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env(),
                          cwd=tmp_path)


def assert_one_line_error(proc: subprocess.CompletedProcess, needle: str) -> None:
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], proc.stderr[-2000:]


def test_unknown_tracker_is_one_config_error_naming_the_known_ones(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown tracker 'wandbb'; known: .*mlflow.*tensorboard.*wandb.*all\."):
        TrainingConfig(report_to=["wandbb"]).validate()
    proc = tunekit_cli(tmp_path, "run", "--report-to", "tensorboard,nonsense", "--output", str(tmp_path / "out"))
    assert_one_line_error(proc, "unknown tracker 'nonsense'")
    assert proc.returncode == 2 and not (tmp_path / "out").exists()


def test_missing_tracker_package_names_the_extra_and_writes_nothing(tmp_path):
    proc = tunekit_cli(tmp_path, "run", "--report-to", "wandb", "--output", str(tmp_path / "out"), hide="wandb")
    assert_one_line_error(proc, "pip install 'tunekit[wandb]'")
    assert not (tmp_path / "out").exists() and not (tmp_path / "wandb").exists()


def test_a_tracker_without_an_extra_names_its_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "aim", None)
    with pytest.raises(ConfigError, match=r"asks for aim but its package is not installed; pip install aim or"):
        trackers.resolve(["aim"])


def test_all_means_every_installed_tracker(monkeypatch, fake):
    monkeypatch.setitem(sys.modules, "wandb", None)
    chosen = trackers.resolve(["all", "fake"])
    assert "fake" in chosen and "wandb" not in chosen and len(chosen) == len(set(chosen))
    assert all(trackers.is_installed(name) for name in chosen)


def test_stores_go_under_the_run_folder_unless_the_environment_says_otherwise(tmp_path, monkeypatch):
    import mlflow

    for name in ("WANDB_DIR", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)
    wandb, _ = trackers.make_tracker("wandb", tmp_path / "run", {})
    assert wandb.init_kwargs["dir"] == str((tmp_path / "run" / "trackers").resolve())
    tensorboard, _ = trackers.make_tracker("tensorboard", tmp_path / "run", {})
    assert tensorboard.logging_dir_param == str(tmp_path / "run" / "trackers")
    try:
        ml, uri_set = trackers.make_tracker("mlflow", tmp_path / "run", {trackers.RUN_FOLDER_TAG: "x"})
        assert uri_set and mlflow.get_tracking_uri() == f"sqlite:///{(tmp_path / 'run/trackers/mlflow.db').resolve()}"
        assert ml.tags == {trackers.RUN_FOLDER_TAG: "x"}
    finally:
        mlflow.set_tracking_uri(None)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mine.db'}")
    assert "dir" not in trackers.make_tracker("wandb", tmp_path / "run", {})[0].init_kwargs
    ml, uri_set = trackers.make_tracker("mlflow", tmp_path / "run", {})
    assert not uri_set and ml.logging_dir is None


def test_a_tracker_drawing_random_numbers_changes_nothing_the_run_draws(tmp_path, fake):
    listener = trackers.TrackerListener(["fake"], tmp_path, {"training": {"lr": 0.1, "report_to": ["fake"]}})
    torch.manual_seed(0), random.seed(0), np.random.seed(0)
    listener.on_train_begin(10, 0)
    listener.on_log(1, {"step": 1, "loss": 0.5, "lr": 0.1})
    listener.on_evaluate(1, {"eval_accuracy": 0.75})
    drawn = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    torch.manual_seed(0), random.seed(0), np.random.seed(0)
    assert drawn == (random.random(), float(np.random.rand()), float(torch.rand(1)))
    (tracker,) = fake
    config = tracker.calls[1][1]
    assert config["training.lr"] == 0.1 and config["training.report_to"] == '["fake"]'
    assert config["run_folder"] == str(tmp_path.resolve()) and config["total_steps"] == 10
    assert tracker.calls[2:] == [("log", 1, {"train/loss": 0.5, "train/lr": 0.1}), ("log", 1, {"eval/accuracy": 0.75})]


class CtrlC:
    def on_log(self, step, metrics):
        if step == 2:
            raise KeyboardInterrupt


def test_trackers_are_finished_on_ctrl_c_and_on_success(tmp_path, fake):
    training = TrainingConfig(max_steps=3, batch_size=8, lr=1e-3, logging_steps=1, max_grad_norm=None,
                              report_to=["fake"])
    model = tiny_bert()
    listener = trackers.TrackerListener(["fake"], tmp_path / "a", {})
    with pytest.raises(TrainingInterrupted):
        train(model, TinyJob(), training, tmp_path / "a", applied=FullApplied(model), listeners=[listener, CtrlC()])
    assert fake[0].calls[-1] == ("finish",) and listener.trackers == []
    steps = [c[1] for c in fake[0].calls if c[0] == "log"]
    assert steps == [1, 2]  # logged up to the interrupt; without clipping the norm is still measured for it
    assert all("train/grad_norm" in c[2] for c in fake[0].calls if c[0] == "log")
    listener = trackers.TrackerListener(["fake"], tmp_path / "b", {})
    result = train(model, TinyJob(), training, tmp_path / "b", applied=FullApplied(model), listeners=[listener])
    final = fake[1].calls[-2]
    assert fake[1].calls[-1] == ("finish",) and final[1] == result.steps
    assert final[2]["final/train_loss"] == pytest.approx(result.train_loss)


def test_overwrite_clears_the_previous_runs_tracker_stores(tmp_path):
    from tunekit.runs.output_folder import clear_previous_run

    (tmp_path / "trackers" / "tensorboard").mkdir(parents=True)
    (tmp_path / "trackers" / "mlflow.db").write_text("old run")
    (tmp_path / "config.yaml").write_text("kept")
    clear_previous_run(tmp_path)
    assert not (tmp_path / "trackers").exists() and (tmp_path / "config.yaml").is_file()


def test_report_to_flag_takes_a_comma_list_and_repeats():
    from tunekit.cli.run import overrides_from_flags

    tree = overrides_from_flags({"report_to": ("wandb, mlflow", "tensorboard")})
    assert tree == {"training": {"report_to": ["wandb", "mlflow", "tensorboard"]}}
