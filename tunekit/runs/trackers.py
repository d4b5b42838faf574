"""Experiment trackers (TensorBoard, W&B, MLflow and every other one accelerate knows) fed from the engine's events.

accelerate's tracker classes (``accelerate.tracking``) talk to each service; this module picks them from
``training.report_to``, points their local stores into the run folder and turns the engine's events
(``tunekit.engine.events``) into their ``store_init_configuration`` / ``log`` / ``finish`` calls:

- the whole configuration, flattened (``training.lr``, ``method.r``, ...), the trainable and total parameter
  counts and the run folder, once, when training starts;
- ``train/loss``, ``train/lr``, ``train/grad_norm``, ``train/tokens_per_second``, ``train/epoch`` at every log step;
- ``eval/<metric>`` at every evaluation; ``final/<metric>``, ``best/<metric>`` and the timings at the end.

Where each writes, unless the environment says otherwise::

    <run>/trackers/tensorboard/   TensorBoard event files
    <run>/trackers/wandb/         W&B run folders (offline runs included); WANDB_DIR moves them
    <run>/trackers/mlflow.db      MLflow's SQLite store, artifacts in <run>/trackers/mlartifacts/;
                                  MLFLOW_TRACKING_URI (or mlflow.set_tracking_uri) points elsewhere
    <run>/trackers/<name>/        the logging folder of any other tracker that asks for one

Trackers start on ``on_train_begin`` and are finished on ``on_train_end`` and on ``on_train_abort`` (an error or
Ctrl-C), so an interrupted run is still complete in its tracker, marked as not ended well where the tracker
records that. Nothing they do draws from the run's random generators: every call runs with the generators'
states saved and put back.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import random
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from tunekit.errors import ConfigError, TrainingInterrupted

log = logging.getLogger("tunekit.run")

ALL = "all"
"""``report_to: [all]``: every tracker whose package is installed (accelerate's own rule for ``log_with="all"``)."""
EXTRAS = ("tensorboard", "wandb", "mlflow")
"""Trackers with a tunekit extra in pyproject.toml; any other one installs under its own name."""
TRACKERS_DIR = "trackers"
PROJECT = "tunekit"
"""The W&B project, MLflow experiment and default project name of the other trackers."""
RUN_FOLDER_TAG = "tunekit.run_folder"


def known_trackers() -> list[str]:
    """The tracker names accelerate knows (its built-in ones and any registered with ``register_tracker_class``)."""
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS

    return sorted(LOGGER_TYPE_TO_CLASS)


def check_names(names: list[str]) -> None:
    """Raise ConfigError for a ``training.report_to`` entry that names no tracker accelerate knows."""
    known = known_trackers()
    for name in names:
        if name != ALL and name not in known:
            raise ConfigError(f"training.report_to: unknown tracker {name!r}; known: {', '.join([*known, ALL])}.")


def install_hint(name: str) -> str:
    """The pip command that installs tracker ``name``."""
    return f"pip install 'tunekit[{name}]'" if name in EXTRAS else f"pip install {name}"


def is_installed(name: str) -> bool:
    """Whether the package tracker ``name`` imports is there (TensorBoard's writer also works with tensorboardX)."""
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS

    if name == "tensorboard":
        return any(importlib.util.find_spec(m) is not None for m in ("tensorboard", "tensorboardX"))
    if name not in EXTRAS and LOGGER_TYPE_TO_CLASS[name].__module__ != "accelerate.tracking":
        return True  # a tracker class registered by the user: its package is already imported
    return importlib.util.find_spec(name) is not None


def resolve(names: list[str]) -> list[str]:
    """The trackers to start: ``all`` expanded, repeats dropped; a missing package raises ConfigError."""
    check_names(names)
    chosen: list[str] = []
    for name in names:
        chosen += [n for n in known_trackers() if is_installed(n)] if name == ALL else [name]
    chosen = list(dict.fromkeys(chosen))
    if ALL in names and not chosen:
        raise ConfigError(f"training.report_to=all but no tracker package is installed; install one, e.g. "
                          f"{install_hint('tensorboard')}.")
    for name in chosen:
        if not is_installed(name):
            raise ConfigError(f"training.report_to asks for {name} but its package is not installed; "
                              f"{install_hint(name)} or remove {name} from training.report_to.")
    return chosen


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"training": {"lr": 0.1}}`` -> ``{"training.lr": 0.1}``; values other than numbers, text and
    booleans become JSON text (every tracker stores those as hyperparameters)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{name}."))
        elif isinstance(value, (bool, int, float, str)):
            out[name] = value
        else:
            out[name] = json.dumps(value, default=str)
    return out


@contextlib.contextmanager
def rng_kept() -> Iterator[None]:
    """Run the block and put Python's, NumPy's and torch's generator states back, so a tracker cannot change
    what the run draws next (dropout, data order)."""
    import numpy as np
    import torch

    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)


def _mlflow_store(store: Path) -> tuple[dict[str, Any], bool]:
    """The MLflowTracker arguments; sets the run folder's SQLite store when none was chosen (returns True then)."""
    import mlflow

    try:  # MLFLOW_TRACKING_URI or mlflow.set_tracking_uri: the user's store (mlflow has no public test for both)
        from mlflow.tracking._tracking_service.utils import is_tracking_uri_set
    except ImportError:
        def is_tracking_uri_set() -> bool:
            return bool(os.environ.get("MLFLOW_TRACKING_URI"))
    if is_tracking_uri_set():
        return {}, False
    mlflow.set_tracking_uri(f"sqlite:///{(store / 'mlflow.db').resolve()}")
    return {"logging_dir": str((store / "mlartifacts").resolve())}, True


def make_tracker(name: str, out: Path, tags: dict[str, str]) -> tuple[Any, bool]:
    """accelerate's tracker ``name`` for run folder ``out``; the flag says an MLflow store URI was set."""
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS

    cls, store, run_name = LOGGER_TYPE_TO_CLASS[name], out / TRACKERS_DIR, out.resolve().name
    store.mkdir(parents=True, exist_ok=True)
    if name == "tensorboard":
        return cls("tensorboard", str(store)), False
    if name == "wandb":
        where = {} if os.environ.get("WANDB_DIR") else {"dir": str(store.resolve())}
        return cls(os.environ.get("WANDB_PROJECT") or PROJECT, name=run_name, **where), False
    if name == "mlflow":
        kwargs, uri_set = _mlflow_store(store)
        return cls(experiment_name=PROJECT, run_name=run_name, tags=tags, **kwargs), uri_set
    if cls.requires_logging_directory:
        return cls(PROJECT, str(store / name)), False
    return cls(PROJECT), False


def finish(tracker: Any, error: BaseException | None) -> None:
    """accelerate's ``finish``; after a training error, the trackers that record how a run ended are told so
    through their own library (W&B: the exit code, 130 for Ctrl-C; MLflow: status KILLED or FAILED)."""
    if error is not None and tracker.name == "wandb":
        tracker.tracker.finish(exit_code=getattr(error, "exit_code", 1))
    elif error is not None and tracker.name == "mlflow":
        import mlflow

        stopped = isinstance(error, (TrainingInterrupted, KeyboardInterrupt))
        mlflow.end_run(status="KILLED" if stopped else "FAILED")
    else:
        tracker.finish()


class TrackerListener:
    """An engine listener that logs the run to accelerate's trackers (see the module docstring)."""

    def __init__(self, names: list[str], out: Path, config: Mapping[str, Any]) -> None:
        self.names = list(names)
        self.out = Path(out)
        self.config = {**flatten(config), "run_folder": str(self.out.resolve())}
        self.trackers: list[Any] = []
        self._mlflow_uri_set = False

    def on_method_applied(self, report: Any) -> None:
        self.config.update(trainable_params=report.trainable_params, total_params=report.total_params,
                           trainable_percent=round(report.trainable_percent, 4))

    def on_train_begin(self, total_steps: int, start_step: int) -> None:
        with rng_kept():
            for name in self.names:
                tracker, uri_set = make_tracker(name, self.out, {RUN_FOLDER_TAG: self.config["run_folder"]})
                self._mlflow_uri_set |= uri_set
                tracker.start()
                self.trackers.append(tracker)
            values = {**self.config, "total_steps": total_steps, "start_step": start_step}
            for tracker in self.trackers:
                tracker.store_init_configuration(values)

    def on_log(self, step: int, metrics: dict[str, float]) -> None:
        self._log({f"train/{k}": v for k, v in metrics.items() if k != "step"}, step)

    def on_evaluate(self, step: int, metrics: dict[str, float]) -> None:
        self._log({f"eval/{k.removeprefix('eval_')}": v for k, v in metrics.items()}, step)

    def on_train_end(self, result: Any) -> None:
        values = {f"final/{k.removeprefix('eval_')}": v for k, v in (result.final_metrics or {}).items()}
        values.update({f"best/{k.removeprefix('eval_')}": v for k, v in (result.best_metrics or {}).items()})
        for name in ("train_loss", "train_seconds", "tokens_per_second", "peak_memory_mb", "epochs"):
            values[f"final/{name}"] = getattr(result, name, None)
        self._log(values, result.steps)
        self._finish(None)

    def on_train_abort(self, error: BaseException) -> None:
        self._finish(error)

    def _log(self, values: dict[str, Any], step: int) -> None:
        numbers = {k: v for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        with rng_kept():
            for tracker in self.trackers:
                tracker.log(numbers, step=step)

    def _finish(self, error: BaseException | None) -> None:
        """Finish every started tracker, even when one of them fails; the first failure is raised after an
        ordinary end and logged after an abort (``error``: the training error matters more)."""
        failures: list[BaseException] = []
        with rng_kept():
            for tracker in self.trackers:
                try:
                    finish(tracker, error)
                except Exception as exc:  # one tracker's failure must not leave the others open
                    failures.append(exc)
                    log.warning("tracker %s did not finish cleanly: %s", tracker.name, exc)
        self.trackers = []
        if self._mlflow_uri_set:
            import mlflow

            mlflow.set_tracking_uri(None)  # back to the user's default store for anything after this run
            self._mlflow_uri_set = False
        if failures and error is None:
            raise failures[0]


def listeners(config: Any, out: Path) -> list[TrackerListener]:
    """The tracker listener for a run (none when ``training.report_to`` is empty); checks the packages now,
    before anything is written."""
    names = resolve(list(config.training.report_to))
    return [TrackerListener(names, out, config.to_dict())] if names else []
