"""A tiny random BERT folder, a small labelled TSV, and ``tunekit`` in real subprocesses.

For the tests that need separate processes: reproducibility, kill/resume, run-folder locks, provenance.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

WORDS = ("good bad great awful movie film plot acting fun boring love hate nice terrible fine excellent "
         "the a of and it is was this that").split()
TIMING = ("tokens_per_second", "train_seconds", "peak_memory_mb", "elapsed_seconds")


def make_model(folder: Path) -> Path:
    """Save a 2-layer BERT encoder (hidden 32, dropout 0.1) with a word-level tokenizer into ``folder``."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    tokenizer = BertTokenizerFast(vocab={t: i for i, t in enumerate(vocab)}, do_lower_case=True)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def make_data(path: Path, n: int = 96, seed: int = 0) -> Path:
    """A TSV of ``n`` random sentences labelled 1 when they hold a positive word."""
    rng = random.Random(seed)
    positive = {"good", "great", "fun", "love", "nice", "fine", "excellent"}
    lines = ["sentence\tlabel"]
    for _ in range(n):
        words = [rng.choice(WORDS) for _ in range(rng.randint(3, 12))]
        lines.append(f"{' '.join(words)}\t{int(bool(positive & set(words)))}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def env(**extra: str) -> dict[str, str]:
    """The environment of a tunekit subprocess: one thread, offline, and a different hash seed each time."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1",
            "PYTHONHASHSEED": str(random.randint(1, 10**6)), **extra}


def run_args(model: Path, data: Path, out: Path, *extra: str, method: str = "lora") -> list[str]:
    return ["run", "--method", method, "--task", "sequence-classification", "--model", str(model),
            "--data", str(data), "--output", str(out), "--batch-size", "8", "--lr", "5e-3", "--seed", "3", *extra]


def tunekit(*args: str, timeout: int = 600, **extra_env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tunekit", *args], capture_output=True, text=True,
                          timeout=timeout, env=env(**extra_env))


def popen(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tunekit", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env())


def wait_for(proc: subprocess.Popen, ready: Callable[[], bool], what: str, limit: float = 300) -> None:
    """Poll until ``ready()``; fail with the process's stderr if it exits first."""
    deadline = time.monotonic() + limit
    while not ready():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before {what}: {proc.stderr.read().decode()[-2000:]}")
        assert time.monotonic() < deadline, f"no {what} within {limit}s"
        time.sleep(0.01)


def adapter_tensors(run: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    files = sorted((run / "adapter").glob("*.safetensors"))
    assert files, f"no adapter weights in {run}"
    out: dict[str, Any] = {}
    for f in files:
        out.update({f"{f.name}:{k}": v for k, v in load_file(str(f)).items()})
    return out


def max_abs_diff(a: dict[str, Any], b: dict[str, Any]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


def metric_lines(run: Path) -> list[dict[str, Any]]:
    """metrics.jsonl without its timing fields."""
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [{k: v for k, v in line.items() if k not in TIMING} for line in lines]


def summary_metrics(run: Path) -> dict[str, Any]:
    summary = json.loads((run / "summary.json").read_text())
    return {k: summary[k] for k in ("final_metrics", "best_metrics", "steps", "trainable_params")}
