"""A run killed with SIGKILL at an arbitrary moment, then resumed, ends with the same weights as one
that was never interrupted."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

from tinyjob import FullApplied, max_diff, tiny_bert, weights
from train_script import SCRIPT, job, training_config

from tunekit.engine import find_last_checkpoint, train


def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path):
    out = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, str(SCRIPT), str(out)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while find_last_checkpoint(out) is None:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.02)
        time.sleep(random.uniform(0.0, 0.5))  # an arbitrary moment after the first checkpoint
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    killed_at = find_last_checkpoint(out)
    assert not (out / "final.safetensors").exists()

    # resume in this process (same library, one thread, as in the script): it must pick up the checkpoint
    resumed = tiny_bert()
    result = train(resumed, job(), training_config(100, 10, 8, resume=True), out, applied=FullApplied(resumed),
                   config_fingerprint="script")
    assert result.resumed_from == killed_at and result.steps == 100

    model = tiny_bert()
    train(model, job(), training_config(100, None, 8), tmp_path / "straight", applied=FullApplied(model),
          config_fingerprint="script")
    diff = max_diff(weights(model), weights(resumed))
    print(f"\nkilled after {killed_at.name}; max |w_resumed - w_uninterrupted| = {diff:.3g}")
    assert diff <= 1e-6
