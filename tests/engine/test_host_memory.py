"""Freed CPU tensors leave the process (tunekit.engine.host_memory), in real subprocesses (the malloc setting is
process-wide and cannot be undone inside the test process)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="the setting is glibc's (Linux)"
)

PROBE = textwrap.dedent("""
    import os, sys, torch
    from tunekit.engine.host_memory import return_freed_memory
    in_force = return_freed_memory() if sys.argv[1] == "call" else False
    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    x = torch.ones(2**21); del x  # free one 8 MiB mapping: glibc's default raises its threshold past 4 MiB
    keep, big = [], []
    for _ in range(64):  # 64 x 4 MiB, each followed by a small long-lived tensor that pins the heap above it
        big.append(torch.ones(2**20)); keep.append(torch.ones(16))
    before = rss(); del big
    print(in_force, (before - rss()) / 2**20)
""")


def _released(*args: str, env: dict[str, str] | None = None) -> tuple[str, float]:
    out = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, check=True,
                         env={**os.environ, **(env or {})}).stdout.split()
    return out[0], float(out[1])


def test_freed_activations_return_to_the_system() -> None:
    in_force, released = _released("call")
    _, by_default = _released("none")
    assert in_force == "True"
    assert released > 200, f"only {released:.0f} of 256 MiB freed left the process (without the setting: {by_default:.0f})"


def test_a_threshold_set_by_the_user_is_left_alone() -> None:
    in_force, _ = _released("call", env={"MALLOC_MMAP_THRESHOLD_": "33554432"})
    assert in_force == "False"


RUN = textwrap.dedent("""
    import sys
    sys.path.insert(0, sys.argv[2])
    import torch
    from tinyjob import FullApplied, TinyJob, tiny_bert
    from tunekit.config import TrainingConfig
    from tunekit.engine import host_memory, train
    torch.set_num_threads(1)
    model = tiny_bert()
    cfg = TrainingConfig(max_steps=2, batch_size=4, lr=1e-3, eval_each_epoch=False, load_best_at_end=False,
                         gradient_checkpointing=sys.argv[1] == "on")
    train(model, TinyJob(n_train=16, n_eval=0), cfg, sys.argv[3], applied=FullApplied(model))
    print(host_memory._done)
""")


@pytest.mark.parametrize(("checkpointing", "expected"), [("on", "True"), ("off", "False")])
def test_only_a_run_with_checkpointing_returns_freed_memory(tmp_path, checkpointing: str, expected: str) -> None:
    """Fresh mappings cost page faults (about a third of the run time measured on SmolLM2): a run that is not
    short of memory keeps glibc's default."""
    here = os.path.dirname(os.path.abspath(__file__))
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_MMAP_THRESHOLD_"}
    out = subprocess.run([sys.executable, "-c", RUN, checkpointing, here, str(tmp_path / "run")], capture_output=True, text=True,
                         env=env, check=True).stdout.split()
    assert out[-1] == expected
