"""The environment of a ``tunekit`` subprocess that tracks offline: W&B offline and silent, its settings and caches
under ``home``, and no tracker setting inherited from the environment (so every store lands in the run folder)."""

from __future__ import annotations

from pathlib import Path

from tests.tinyrun import env

TRACKER_ENV = ("WANDB_DIR", "WANDB_PROJECT", "MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID",
               "MLFLOW_TAGS")


def offline_env(home: Path) -> dict[str, str]:
    base = {k: v for k, v in env().items() if k not in TRACKER_ENV}
    return {**base, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_CONFIG_DIR": str(home / "wandb-config"),
            "WANDB_CACHE_DIR": str(home / "wandb-cache"), "WANDB_DATA_DIR": str(home / "wandb-data")}


def wandb_records(folder: Path) -> list[dict]:
    """The records of a W&B run folder, read by wandb's own reader of the .wandb transaction log
    (`wandb leet inspect --json`)."""
    import json
    import os
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "wandb", "leet", "inspect", "--json", str(folder)],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "WANDB_SILENT": "true"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
