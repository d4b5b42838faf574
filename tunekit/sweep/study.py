"""A sweep: an Optuna study whose trials are ordinary tunekit runs under ``sweeps/<name>/trial-<n>/``.

The study lives in an SQLite file in the sweep folder (``study.db``) unless ``storage`` names another
database, so stopping a sweep (Ctrl-C, SIGKILL) and running the same command again continues it: the
study counts its COMPLETE and PRUNED trials against ``trials`` and runs only the rest.

Each trial holds its run folder's lock (``tunekit.runs.locking``) from the moment it is asked for until it
is told, so a RUNNING trial whose folder lock is free belongs to a process that died; the next worker to ask
for a trial marks it FAIL first. Asking happens under one lock file per sweep folder, so K workers never
start more trials than the study still needs.
"""

from __future__ import annotations

import contextlib
import logging
import math
import multiprocessing
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock

from tunekit import config as config_mod
from tunekit.errors import ConfigError, TrainingInterrupted, TunekitError, UsageError
from tunekit.runs import locking
from tunekit.sweep.space import Space, put

log = logging.getLogger("tunekit.sweep")

STUDY_FILE = "study.db"
ASK_LOCK = ".ask.lock"
MAX_FAILURES = 3
"""A worker stops after this many trials in a row that failed with a tunekit error (a config that cannot run)."""
PROBE_EXAMPLES = 8


@dataclass
class Sweep:
    """Everything a worker needs (plain data: it is sent to spawned worker processes)."""

    name: str
    folder: Path
    base: dict[str, Any]
    """The base config tree (YAML file plus overrides)."""
    space: Space
    trials: int
    storage: str
    metric: str
    direction: str
    seed: int = 0
    timeout: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrialRecord:
    """One finished trial, as a worker reports it."""

    number: int
    state: str
    value: float | None
    params: dict[str, Any]
    folder: Path
    error: str | None = None


def default_storage(folder: Path) -> str:
    return f"sqlite:///{folder / STUDY_FILE}"


def _rdb(url: str) -> Any:
    """Optuna's RDB storage for ``url``; SQLite waits for a busy database instead of failing at once."""
    import optuna

    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
    except Exception as exc:  # sqlalchemy's ArgumentError, OperationalError, a missing driver's ImportError, ...
        detail = " ".join(str(exc).split())[:200]
        raise UsageError(f"the study storage {url!r} does not open ({type(exc).__name__}: {detail}); check the URL, "
                         "the server and its driver (docs/sweeps.md).") from None


def open_study(sweep: Sweep, worker: int = 0) -> Any:
    """The sweep's study, created on first use; each worker and each continuation samples from its own seed."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # tunekit logs each trial itself
    try:
        study = optuna.create_study(storage=_rdb(sweep.storage), study_name=sweep.name, load_if_exists=True,
                                    direction=sweep.direction, sampler=sweep.space.build_sampler(sweep.seed),
                                    pruner=sweep.space.build_pruner())
    except ValueError as exc:  # the stored study was created with another direction
        raise ConfigError(f"study {sweep.name!r} in {sweep.storage!r} cannot be continued ({exc}); use another "
                          "--name or the same objective.") from None
    existing = len(study.get_trials(deepcopy=False))
    if worker or existing:  # a continued study or another worker: a seed of its own, or it repeats earlier trials
        study.sampler = sweep.space.build_sampler(sweep.seed, (worker, existing))
    return study


def probe_metric(cfg: config_mod.RunConfig, wanted: str | None) -> tuple[str, bool]:
    """The metric the sweep optimises and whether larger is better, checked on the untrained model.

    The task's metric names are known only from its ``evaluate``, so the base config is prepared (data, tokenizer,
    model, method; nothing is written) and evaluated on a few validation examples.
    """
    import torch

    from tunekit.engine.evaluate import eval_batches, metric_sense
    from tunekit.runs.runner import prepare

    prepared = prepare(cfg)
    job = prepared.job
    name = wanted or cfg.training.metric_for_best or getattr(job, "metric_for_best", None)
    data = job.eval_dataset
    if data is None or len(data) == 0:
        raise ConfigError("the sweep needs validation data to score trials; set data.validation or data.val_split.")
    full, job.eval_dataset = data, [data[i] for i in range(min(PROBE_EXAMPLES, len(data)))]
    try:
        prepared.model.eval()
        with torch.no_grad():
            metrics = job.evaluate(prepared.model, eval_batches(job, cfg.training.batch_size, torch.device("cpu")))
    finally:
        job.eval_dataset = full
    if not name or name not in metrics:
        raise ConfigError(f"the task {cfg.task_name!r} has no metric {name!r}; set `metric:` in the space file to one "
                          f"of {', '.join(sorted(metrics))}.")
    return name, metric_sense(name, job)


def _counts(study: Any) -> tuple[int, int]:
    """(done, running) trials: done ones are COMPLETE or PRUNED."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING))
    running = sum(t.state == TrialState.RUNNING for t in trials)
    return len(trials) - running, running


def fail_stale(study: Any, folder: Path) -> list[int]:
    """Mark FAIL each RUNNING trial whose run folder no live process holds (its worker died); return their numbers."""
    from optuna.trial import TrialState

    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        try:
            locking.ensure_free(folder / f"trial-{trial.number}")
        except locking.RunFolderInUseError:
            continue  # a live worker is running it
        try:
            study.tell(trial.number, state=TrialState.FAIL)
        except ValueError:  # finished after the states were read: a worker tells the study before freeing the folder
            continue
        failed.append(trial.number)
        log.warning("trial %d was left RUNNING by a process that stopped; marked it FAIL", trial.number)
    return failed


def _claim(study: Any, sweep: Sweep, stack: contextlib.ExitStack) -> Any | None:
    """Ask for the next trial and hold its folder, or None when the study has all the trials it needs."""
    with FileLock(str(sweep.folder / ASK_LOCK)):
        fail_stale(study, sweep.folder)
        done, running = _counts(study)
        if done + running >= sweep.trials:
            return None
        trial = study.ask()
        stack.enter_context(locking.hold(sweep.folder / f"trial-{trial.number}"))
        return trial


class TrialReporter:
    """An engine listener that reports each evaluation to the Optuna trial and prunes when the pruner says so.

    Raising ``optuna.TrialPruned`` from ``on_evaluate`` ends training (the engine emits ``on_train_abort`` and
    re-raises); the run folder stays, with its config.yaml and metrics.jsonl up to the pruned evaluation.
    """

    def __init__(self, trial: Any, metric: str) -> None:
        self.trial = trial
        self.metric = metric
        self.last: float | None = None

    def on_evaluate(self, step: int, metrics: dict[str, float]) -> None:
        import optuna

        value = metrics.get(self.metric)
        if value is None or not math.isfinite(value):
            return
        self.last = float(value)
        self.trial.report(self.last, step)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at step {step} with {self.metric}={value:.4g}")


def trial_tree(sweep: Sweep, trial: Any) -> dict[str, Any]:
    """The run config of one trial: a sample from the space, written to its own folder."""
    tree = sweep.space.sample(trial, sweep.base)
    put(tree, "output.dir", str(sweep.folder / f"trial-{trial.number}"))
    put(tree, "output.overwrite", False)
    put(tree, "training.resume", False)
    if sweep.space.metric:
        put(tree, "training.metric_for_best", sweep.metric)
    return tree


def run_trial(study: Any, sweep: Sweep, trial: Any, listeners: list[Any]) -> TrialRecord:
    """Train one trial and tell the study how it went (COMPLETE with its metric, PRUNED or FAIL)."""
    import optuna
    from optuna.trial import TrialState

    from tunekit.runs.runner import run

    folder = sweep.folder / f"trial-{trial.number}"
    trial.set_user_attr("folder", str(folder))
    trial.set_user_attr("pid", os.getpid())  # which worker ran it

    def record(state: str, value: float | None = None, error: str | None = None) -> TrialRecord:
        return TrialRecord(trial.number, state, value, dict(trial.params), folder, error)

    reporter = TrialReporter(trial, sweep.metric)
    try:
        result = run(trial_tree(sweep, trial), listeners=[reporter, *listeners])
    except optuna.TrialPruned:
        study.tell(trial, state=TrialState.PRUNED)  # Optuna records the last reported value
        return record("PRUNED", reporter.last)
    except TrainingInterrupted:
        study.tell(trial, state=TrialState.FAIL)
        raise TrainingInterrupted(f"the sweep was stopped during trial {trial.number}, now marked FAIL; run the same "
                                  "command again to continue the study with the trials still missing.") from None
    except TunekitError as exc:
        trial.set_user_attr("error", str(exc))
        study.tell(trial, state=TrialState.FAIL)
        log.warning("trial %d failed: %s", trial.number, exc)
        return record("FAIL", error=str(exc))
    except BaseException:
        study.tell(trial, state=TrialState.FAIL)
        raise
    summary = result.summary
    value = float(summary["final_metrics"][sweep.metric])
    for key in ("trainable_params", "train_seconds", "peak_memory_mb"):
        if key in summary:
            trial.set_user_attr(key, summary[key])
    study.tell(trial, value)
    return record("COMPLETE", value)


def work(sweep: Sweep, worker: int = 0, listeners: Callable[[], list[Any]] | None = None,
         on_trial: Callable[[TrialRecord], None] | None = None) -> int:
    """Run trials until the study has ``sweep.trials`` done ones (or the timeout passes); return how many ran.

    ``listeners()`` gives the engine listeners of one trial (a fresh progress display each time).
    """
    study = open_study(sweep, worker)
    deadline = time.monotonic() + sweep.timeout if sweep.timeout else None
    ran = failures = 0
    while deadline is None or time.monotonic() < deadline:
        with contextlib.ExitStack() as stack:
            trial = _claim(study, sweep, stack)
            if trial is None:
                break
            rec = run_trial(study, sweep, trial, listeners() if listeners else [])
        ran += 1
        failures = failures + 1 if rec.state == "FAIL" else 0
        log.info("trial %d %s%s", rec.number, rec.state, f" {sweep.metric}={rec.value:.4f}" if rec.value is not None else "")
        if on_trial is not None:
            on_trial(rec)
        if failures >= MAX_FAILURES:
            log.warning("worker %d stops after %d failed trials in a row; fix the space or the config", worker, failures)
            break
    return ran


def share_cores(workers: int) -> int | None:
    """Give this process its share of the CPU cores for torch's threads; return the thread count set (None: unset).

    Each torch process otherwise starts one thread per core, and K workers on one machine then fight over the
    cores: measured with LoRA on MiniLM beside other busy processes on 2 cores, one run took 249 s with the
    default threads and 52 s with one thread. An explicit ``OMP_NUM_THREADS`` is left alone.
    """
    if workers < 2 or os.environ.get("OMP_NUM_THREADS"):
        return None
    import torch

    threads = max(1, (os.cpu_count() or 1) // workers)
    torch.set_num_threads(threads)
    return threads


def _worker_main(sweep: Sweep, worker: int, initializer: Callable[[], None] | None, workers: int = 1) -> None:
    """Entry point of a spawned worker process."""
    if initializer is not None:
        initializer()
    share_cores(workers)
    try:
        work(sweep, worker)
    except (KeyboardInterrupt, TrainingInterrupted):
        raise SystemExit(130) from None  # the parent reports the interruption once
    except TunekitError as exc:
        log.error("worker %d: %s", worker, exc)
        raise SystemExit(exc.exit_code) from None


def run_workers(sweep: Sweep, workers: int, initializer: Callable[[], None] | None = None) -> None:
    """Run ``workers`` processes on the study and wait for them; a worker that fails is reported.

    ``initializer`` runs first in each worker (the CLI quietens the libraries there as it does at home).
    """
    ctx = multiprocessing.get_context("spawn")  # fresh interpreters: no forked torch or SQLite state
    procs = [ctx.Process(target=_worker_main, args=(sweep, i, initializer, workers), name=f"tunekit-sweep-{i}")
             for i in range(workers)]
    for proc in procs:
        proc.start()
    try:
        for proc in procs:
            proc.join()
    except KeyboardInterrupt:
        for proc in procs:
            proc.join(timeout=60)
        raise
    bad = [(p.name, p.exitcode) for p in procs if p.exitcode != 0]
    if bad:
        raise TunekitError(f"sweep worker {bad[0][0]} exited with code {bad[0][1]}; see its log above, then run the "
                           "same command again to continue the study.")


def resolve(name: str, folder: Path, base: Mapping[str, Any], space: Space, trials: int,
            storage: str | None = None, timeout: float | None = None) -> Sweep:
    """Check everything a sweep needs before anything is written: the storage URL opens and the metric exists."""
    if trials < 1:
        raise UsageError(f"--trials must be at least 1, not {trials}.")
    if timeout is not None and timeout <= 0:
        raise UsageError(f"--timeout must be positive, not {timeout}.")
    if storage:
        _rdb(storage)
    cfg = config_mod.from_dict(base)
    metric, greater = probe_metric(cfg, space.metric)
    direction = space.direction or ("maximize" if greater else "minimize")
    return Sweep(name, folder, dict(base), space, trials, storage or default_storage(folder), metric, direction,
                 seed=cfg.training.seed, timeout=timeout)


def start(sweep: Sweep, workers: int = 1, listeners: Callable[[], list[Any]] | None = None,
          on_trial: Callable[[TrialRecord], None] | None = None, initializer: Callable[[], None] | None = None) -> Any:
    """Create the sweep folder, run the trials (in this process, or in ``workers`` processes) and return the study."""
    if workers < 1:
        raise UsageError(f"--workers must be at least 1, not {workers}.")
    sweep.folder.mkdir(parents=True, exist_ok=True)
    study = open_study(sweep)  # created here once, before workers race to create it
    with FileLock(str(sweep.folder / ASK_LOCK)):
        fail_stale(study, sweep.folder)
    if workers == 1:
        work(sweep, 0, listeners, on_trial)
    else:
        run_workers(sweep, workers, initializer)
    return study
