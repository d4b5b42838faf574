"""The one owner of the run-folder policy: whether a run may use a folder (creatable, writable, not silently
reusing another run) and, with ``output.overwrite``, what of the previous run is deleted before it starts over."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from tunekit import config as config_mod
from tunekit.config import RunConfig
from tunekit.errors import CheckpointError, UsageError
from tunekit.runs.heldout import HELDOUT_FILE

ADAPTER_DIR = "adapter"
SUMMARY_FILE = "summary.json"


def not_writable(folder: Path) -> str | None:
    """Why nothing can be created in ``folder``, or None when something can.

    A real probe (a folder made and removed) rather than ``os.access``, which says yes to root and on
    read-only or pseudo file systems where creating a folder then fails.
    """
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".tunekit-probe-", dir=folder))
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    return None


def check_output_dir(out: Path, cfg: RunConfig) -> None:
    """Refuse an output folder that cannot be written or that holds a run this config may not reuse."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"output path {str(out)!r} is a file; choose a folder with --output.")
    if not out.exists():
        probe = out.parent if str(out.parent) else Path(".")
        while not probe.exists() and not probe.is_symlink():
            probe = probe.parent
        if not probe.is_dir():
            raise UsageError(
                f"cannot create the output folder {str(out)!r}: {str(probe)!r} is not a folder; "
                "choose another --output.")
        reason = not_writable(probe)
        if reason:
            raise UsageError(
                f"cannot create the output folder {str(out)!r}: {str(probe)!r} is not writable ({reason}); "
                "choose another --output.")
        return
    reason = not_writable(out)
    if reason:
        raise UsageError(f"output folder {str(out)!r} is not writable ({reason}); choose another with --output.")
    has_run = (out / SUMMARY_FILE).exists() or (out / "checkpoints").is_dir()
    if has_run and not cfg.training.resume and not cfg.output.overwrite:
        raise CheckpointError(
            f"output folder {str(out)!r} already holds a run; pass --resume to continue it, "
            "or --overwrite to start over."
        )
    if cfg.training.resume and not cfg.output.overwrite and (out / SUMMARY_FILE).exists():
        from tunekit.engine import find_last_checkpoint

        if find_last_checkpoint(out) is None:  # resuming would silently train the finished run again from step 0
            raise CheckpointError(
                f"output folder {str(out)!r} holds a finished run without step checkpoints, so there is nothing "
                "to resume; pass --overwrite to train it again, or choose a new --output."
            )
    if cfg.training.resume and (out / "config.yaml").is_file():
        previous = config_mod.from_dict(config_mod.read_yaml(out / "config.yaml"))
        if _fingerprint(previous) != _fingerprint(cfg):
            raise CheckpointError(
                f"output folder {str(out)!r} was made by a different configuration; resume with the same "
                "settings, or choose a new --output."
            )




def clear_previous_run(out: Path) -> None:
    """Delete the previous run's results, checkpoints and metrics from ``out`` (``output.overwrite``, not resuming).

    What is left (config.yaml, the tokenizer, the task's state) is rewritten by the new run before it trains.
    """
    from tunekit.engine.checkpoint import clear_training_files
    from tunekit.report import EVAL_DETAILS_FILE, REPORT_FILE
    from tunekit.runs.trackers import TRACKERS_DIR

    clear_training_files(out)
    for name in (ADAPTER_DIR, SUMMARY_FILE, HELDOUT_FILE, TRACKERS_DIR, EVAL_DETAILS_FILE, REPORT_FILE):
        target = out / name
        shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)


def _fingerprint(cfg: RunConfig) -> str:
    from tunekit.engine import config_fingerprint

    return config_fingerprint(cfg.to_dict())
