"""Ctrl-C and SIGKILL during `tunekit run`, through the real command in a subprocess.

One flow: start training; Ctrl-C (SIGINT) once a checkpoint exists -> exit 130 with a message saying how
to resume; `--resume` again and SIGKILL it after it wrote a newer checkpoint; `--resume` once more ->
the run finishes normally (this last part in-process, to save a process start-up). The engine's own
tests check that the resumed weights are exact.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tunekit.engine.checkpoint import list_checkpoints

STEPS = 20


def _start(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    env.pop("TUNEKIT_DEBUG", None)
    return subprocess.Popen([sys.executable, "-m", "tunekit", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def _wait_for_checkpoint(proc: subprocess.Popen, out: Path, newer_than: int, timeout: float = 240) -> int:
    """Poll until a complete checkpoint later than step ``newer_than`` exists; return its step."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        steps = [step for step, _ in list_checkpoints(out)]
        if steps and steps[-1] > newer_than:
            return steps[-1]
        if proc.poll() is not None:
            _, err = proc.communicate()
            pytest.fail(f"tunekit exited ({proc.returncode}) before writing a checkpoint:\n{err}")
        time.sleep(0.05)
    proc.kill()
    pytest.fail("no checkpoint appeared in time")


def test_ctrl_c_then_kill_then_resume(models, data, tmp_path, cli):
    out = tmp_path / "run"
    args = ["run", "--task", "sequence-classification", "--method", "lora", "--model", str(models["bert"]),
            "--data", str(data / "train.csv"), "--batch-size", "4", "--max-steps", str(STEPS),
            "--save-steps", "1", "--set", "training.eval_each_epoch=false", "--output", str(out)]

    # 1. Ctrl-C: a checkpoint at the next step boundary, exit 130, and how to resume.
    proc = _start(args)
    first = _wait_for_checkpoint(proc, out, newer_than=0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    error_lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and "rerun the same command with --resume" in error_lines[0], err  # as in the docs
    interrupted_at = list_checkpoints(out)[-1][0]
    assert first <= interrupted_at < STEPS, "training finished before the interrupt arrived"
    assert not (out / "summary.json").exists() and not (out / "adapter").exists()

    # 2. Resume, then SIGKILL once it wrote a newer checkpoint: the last complete checkpoint survives.
    proc = _start([*args, "--resume"])
    _wait_for_checkpoint(proc, out, newer_than=interrupted_at)
    proc.kill()
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    killed_at = list_checkpoints(out)[-1][0]
    assert killed_at > interrupted_at

    # 3. Resume again (in-process, the same CLI entry point): no error, and the run finishes.
    result = cli(*args, "--resume")
    assert result.code == 0, result.stderr
    assert "Traceback" not in result.stderr and not result.error_lines
    assert (out / "summary.json").is_file() and (out / "adapter" / "adapter_model.safetensors").is_file()
    assert "done" in result.stdout
    assert f"step {killed_at}" in result.stderr  # it continued from the checkpoint the kill left
