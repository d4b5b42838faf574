"""scripts/gpu_check.py: its CPU smoke mode trains every setup with the packages the GPU machine lacks hidden,
and without CUDA the real check exits 0 with a skip line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.py"
ABSENT = ("datasets", "bitsandbytes", "gguf", "pandas", "pyarrow", "matplotlib", "tensorboard")
"""What the GPU machine's python3 does not have (datasets, bitsandbytes, gguf) or may not have."""

# Runs the script as __main__ with ABSENT hidden from the path finder, so `import datasets` raises
# ModuleNotFoundError and importlib.util.find_spec returns None, as on a machine without them.
HIDING_RUNNER = """
import runpy, sys
from importlib.machinery import PathFinder
ABSENT = set(sys.argv[1].split(","))

class Hide:
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        return None if name.partition(".")[0] in ABSENT else PathFinder.find_spec(name, path, target)

    @classmethod
    def find_distributions(cls, context=None, **kwargs):  # importlib.metadata asks meta-path finders too
        from importlib.metadata import DistributionFinder
        context = context or DistributionFinder.Context(**kwargs)
        if context.name and context.name.replace("-", "_").lower() in ABSENT:
            return iter(())
        return PathFinder.find_distributions(context)

    @classmethod
    def invalidate_caches(cls):
        PathFinder.invalidate_caches()

sys.meta_path[:] = [Hide if finder is PathFinder else finder for finder in sys.meta_path]
script = sys.argv[2]
sys.argv = sys.argv[2:]
runpy.run_path(script, run_name="__main__")
"""


def run_hidden(*args: str, **extra_env: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1",
           **extra_env}
    env.pop("OUT", None)
    cmd = [sys.executable, "-c", HIDING_RUNNER, ",".join(ABSENT), str(SCRIPT), *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)


def test_the_hiding_runner_hides_the_packages(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("import importlib.util, importlib.metadata as md\nprint(importlib.util.find_spec('datasets'))\n"
                     "print(md.version('torch') != '')\nimport datasets\n")
    proc = subprocess.run([sys.executable, "-c", HIDING_RUNNER, "datasets", str(probe)],
                          capture_output=True, text=True, timeout=60)
    assert proc.stdout.split() == ["None", "True"]
    assert "No module named 'datasets'" in proc.stderr


def test_cpu_smoke_trains_every_setup_without_the_missing_packages(tmp_path):
    out = tmp_path / "result.json"
    proc = run_hidden("--cpu-smoke", "--json", str(out))
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    report = json.loads(out.read_text())
    records = {r["setup"]: r for r in report["results"]["tiny"]}
    assert list(records) == ["baseline", "gradient-checkpointing", "packing", "prefix-tuning", "nf4"]
    assert report["environment"]["datasets"] is False and report["environment"]["bitsandbytes"] is False
    assert records["nf4"] == {"setup": "nf4", "status": "skipped", "reason": "no bitsandbytes"}
    assert "skipped: no bitsandbytes" in proc.stdout
    for name in ("baseline", "gradient-checkpointing", "packing", "prefix-tuning"):
        record = records[name]
        assert record["status"] == "ok", record
        assert record["steps"] == report["plan"]["steps"]
        assert record["tokens_per_second"] > 0
        assert record["peak_cuda_mb"] is None  # no CUDA in the smoke run
    assert records["prefix-tuning"]["generation"]["prompts"] == 4


def test_without_cuda_the_check_is_skipped_with_exit_0(tmp_path):
    proc = run_hidden(CUDA_VISIBLE_DEVICES="")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "skipped: no CUDA device" in proc.stdout
