"""A run folder is held by one process at a time; a lock left by a killed process blocks nothing."""

from __future__ import annotations

import os
import signal

import pytest

from tests.tinyrun import make_data, make_model, popen, run_args, tunekit, wait_for
from tunekit.runs import locking


def snapshot(folder):
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.stat().st_size) if p.is_file() else None
            for p in folder.rglob("*")}


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1] if text.strip() else ""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lock")
    return make_model(folder / "model"), make_data(folder / "train.tsv")


def test_a_folder_in_use_is_refused_and_a_killed_holder_blocks_nothing(tiny, tmp_path):
    model, data = tiny
    out = tmp_path / "run"
    args = run_args(model, data, out, "--max-steps", "300", "--save-steps", "10")
    first = popen(*args)
    try:
        wait_for(first, lambda: any((out / "checkpoints").glob("step-*/COMPLETE")), "the first checkpoint")
        os.kill(first.pid, signal.SIGSTOP)  # hold it still, so that any write seen below is the refused one's
        before = snapshot(out)
        message = f"is in use by another tunekit process (pid {first.pid})"
        for attempt in (args, [*args, "--resume"], [*args, "--overwrite"],
                        ["eval", "--run", str(out), "--data", str(data)], ["predict", "--run", str(out), "good"]):
            proc = tunekit(*attempt)
            assert proc.returncode == 1, (attempt, proc.stderr[-2000:])
            assert message in last_line(proc.stderr), proc.stderr[-2000:]
            assert "Traceback" not in proc.stderr
        assert snapshot(out) == before, "a refused process wrote into the run folder"
        first.send_signal(signal.SIGKILL)
        first.wait(30)
    finally:
        if first.poll() is None:
            first.kill()
    assert (out / locking.LOCK_FILE).exists()  # left behind by the killed process ...
    resumed = tunekit(*args, "--resume")  # ... and it does not stand in the way
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert (out / "adapter").is_dir() and (out / "summary.json").is_file()
    proc = tunekit("predict", "--run", str(out), "good movie")
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_holding_is_reentrant_in_one_process_and_a_free_folder_passes(tmp_path):
    folder = tmp_path / "new" / "run"
    locking.ensure_free(folder)  # never held: free, and nothing is created
    assert not folder.parent.exists()
    with locking.hold(folder):
        assert locking.is_held_here(folder)
        with locking.hold(folder):  # nested in the same process
            locking.ensure_free(folder)
        assert locking.is_held_here(folder)
        assert (folder / locking.LOCK_FILE).read_text().strip() == str(os.getpid())
    assert not locking.is_held_here(folder)
    locking.ensure_free(folder)
