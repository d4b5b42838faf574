"""Quiet by default: library advisories reach stderr only with --debug; tunekit's own lines always do.

Real ``python -m tunekit`` processes on a tiny saved BERT loaded in int8 (bitsandbytes runs on CPU): the
bitsandbytes kernels line at import, transformers' load report listing the fresh head as MISSING and the
per-call "MatMul8bitLt: inputs will be cast" lines stay away without --debug, and come back with it.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import subprocess
import sys
import warnings

import pytest

from tunekit import cli as cli_module

NOISE = ("gemm_4bit_forward", "LOAD REPORT", "MISSING", "MatMul8bitLt")


def tunekit(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if k not in ("TUNEKIT_DEBUG", "TRANSFORMERS_VERBOSITY", "PYTHONWARNINGS")}
    return subprocess.run([sys.executable, "-m", "tunekit", *args], capture_output=True, text=True, env=env,
                          timeout=600)


def _noise(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if any(word in line for word in NOISE)]


@pytest.fixture(scope="module")
def int8_run(tmp_path_factory, tiny_bert):
    pytest.importorskip("bitsandbytes")
    folder = tmp_path_factory.mktemp("quiet")
    data = folder / "train.csv"
    data.write_text("text,label\n" + "good movie,pos\nbad film,neg\n" * 4, encoding="utf-8")
    proc = tunekit("run", "--model", str(tiny_bert), "--task", "sequence-classification", "--method", "lora",
                   "--quantize", "int8", "--data", str(data), "--set", "training.max_steps=1",
                   "--set", "training.batch_size=4", "--output", str(folder / "run"))
    return folder / "run", proc


def test_run_says_fresh_head_once_and_nothing_from_the_libraries(int8_run):
    _, proc = int8_run
    assert proc.returncode == 0, proc.stderr
    assert _noise(proc.stderr) == []
    said = [line for line in proc.stderr.splitlines() if "created a fresh task head" in line]
    assert len(said) == 1 and "(classifier)" in said[0]


def test_predict_on_int8_run_is_quiet_without_debug_and_explains_with_it(int8_run):
    out, _ = int8_run
    quiet = tunekit("predict", "--run", str(out), "good movie", "bad film")
    assert quiet.returncode == 0, quiet.stderr
    assert [json.loads(line)["input"] for line in quiet.stdout.splitlines()] == ["good movie", "bad film"]
    assert quiet.stderr.strip() == ""
    loud = tunekit("--debug", "predict", "--run", str(out), "good movie", "bad film")
    assert loud.returncode == 0, loud.stderr
    assert "MatMul8bitLt: inputs will be cast" in loud.stderr
    assert "LOAD REPORT" in loud.stderr and "MISSING" in loud.stderr
    if importlib.util.find_spec("kernels") is None:  # bitsandbytes says so at import only without it
        assert "gemm_4bit_forward" in loud.stderr
    assert "created a fresh task head" not in loud.stderr  # predict loads the trained head: nothing to announce


def test_library_warnings_are_scoped_and_ours_still_show(monkeypatch):
    for name in ("TRANSFORMERS_VERBOSITY", "HF_HUB_DISABLE_PROGRESS_BARS", "HF_DATASETS_DISABLE_PROGRESS_BARS",
                 "TOKENIZERS_PARALLELISM"):
        monkeypatch.setenv(name, os.environ.get(name, ""))
    levels = {name: logging.getLogger(name).level for name in cli_module.QUIET_LOGGERS}
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            cli_module._quiet_libraries()
            warnings.warn_explicit("a library advisory", FutureWarning, "x.py", 1, module="transformers.modeling_utils")
            warnings.warn_explicit("a bnb advisory", UserWarning, "y.py", 1, module="bitsandbytes.nn.modules")
            warnings.warn_explicit("ours", UserWarning, "z.py", 1, module="tunekit.runs.runner")
            warnings.warn_explicit("a plugin's", UserWarning, "p.py", 1, module="tunekit_plugin_x")
        assert [str(w.message) for w in caught] == ["ours", "a plugin's"]
        assert logging.getLogger("bitsandbytes").getEffectiveLevel() == logging.ERROR
        assert logging.getLogger("tunekit").getEffectiveLevel() != logging.ERROR
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
