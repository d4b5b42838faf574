"""``tunekit estimate`` against measured peaks: a few real LoRA training steps per setup, each in a fresh process.

Each setup writes synthetic rows long enough that every example is cut to exactly ``length`` tokens (so the
batch shape is the estimated one), runs ``tunekit.run`` for a few optimiser steps with no evaluation and no
frozen-layer cache, and reports the process's peak RSS (``ru_maxrss``). The parent computes
``tunekit.estimate.estimate`` for the same settings and prints measured, predicted and their ratio: PASS when
the prediction is within +-25% of the measurement.

    python benchmarks/bench_estimate.py [--quick]

Every setup stays well under 8 GB (length 1024 only with checkpointing).
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Any

from harness import Check, Report, child_main, log, parent_args, run_setup, value, write_reports

SCRIPT = Path(__file__).resolve()
TOLERANCE = 0.25
STEPS = 3
WORDS = ("the a of and it is was this that movie film plot good bad great story people time world "
         "water house city music light small large early late open close river mountain").split()

RUN_TASKS = {"classification": "sequence-classification", "causal-lm": "causal-lm"}
"""The estimate's task kind -> the task a run names."""

SETUPS_TABLE: list[dict[str, Any]] = [
    {"label": "minilm b16 L128", "model": "minilm-l6", "task": "classification", "batch": 16, "length": 128, "ckpt": False},
    {"label": "minilm b32 L128", "model": "minilm-l6", "task": "classification", "batch": 32, "length": 128, "ckpt": False},
    {"label": "smollm2 b4 L256", "model": "smollm2-135m", "task": "causal-lm", "batch": 4, "length": 256, "ckpt": False},
    {"label": "smollm2 b4 L256 ckpt", "model": "smollm2-135m", "task": "causal-lm", "batch": 4, "length": 256, "ckpt": True},
    {"label": "smollm2 b4 L512", "model": "smollm2-135m", "task": "causal-lm", "batch": 4, "length": 512, "ckpt": False},
    {"label": "smollm2 b4 L512 ckpt", "model": "smollm2-135m", "task": "causal-lm", "batch": 4, "length": 512, "ckpt": True},
    {"label": "smollm2 b4 L1024 ckpt", "model": "smollm2-135m", "task": "causal-lm", "batch": 4, "length": 1024, "ckpt": True},
]


def write_rows(path: Path, task: str, n: int, length: int) -> None:
    """``n`` random rows of ~2 x ``length`` words: every one is truncated to ``length`` tokens."""
    rng = random.Random(0)
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            text = " ".join(rng.choice(WORDS) for _ in range(2 * length))
            row = {"text": text, "label": i % 2} if task == "classification" else {"text": text}
            f.write(json.dumps(row) + "\n")


def config_for(p: dict[str, Any], data: Path) -> dict[str, Any]:
    """The run: LoRA defaults, ``STEPS`` steps, no evaluation, no cache, checkpointing as asked."""
    training: dict[str, Any] = {
        "batch_size": p["batch"], "max_steps": STEPS, "eval_each_epoch": False, "cache_frozen": False,
        "logging_steps": 1, "group_by_length": False, "load_best_at_end": False,
        "gradient_checkpointing": p["ckpt"],
    }
    task: dict[str, Any] = {"name": RUN_TASKS[p["task"]], "max_length": p["length"]}
    data_cfg: dict[str, Any] = {"train": str(data), "val_split": 0.1, "max_eval_samples": 2}
    if p["task"] == "classification":
        data_cfg.update(text_column="text", label_column="label")
    else:
        task["train_on_prompt"] = True
    return {"model": {"name": p["model"]}, "task": task, "method": {"name": "lora"}, "data": data_cfg,
            "training": training}


def train_setup(p: dict[str, Any], workdir: Path) -> dict[str, Any]:
    import tunekit_side

    data = workdir / "train.jsonl"
    write_rows(data, p["task"], p["batch"] * STEPS + 4, p["length"])
    out = tunekit_side.run(config_for(p, data), workdir)
    return {"steps": out.get("steps"), "trainable_params": out.get("trainable_params")}


def baseline_setup(p: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """Only the imports a run makes: the runtime overhead the estimate adds."""
    import tunekit_side

    tunekit_side.warm_up()
    return {}


SETUPS = {"train": train_setup, "baseline": baseline_setup}


def predicted_mb(p: dict[str, Any]) -> float:
    from tunekit.estimate import Settings, estimate

    settings = Settings(batch_size=p["batch"], length=p["length"], gradient_checkpointing=p["ckpt"], task=p["task"])
    return estimate(p["model"], "lora", settings).total / 2**20


def run(quick: bool = False) -> Report:
    table = SETUPS_TABLE[:3] if quick else SETUPS_TABLE
    report = Report("estimate", "tunekit estimate vs measured peak RSS of a few LoRA training steps",
                    {"steps": STEPS, "tolerance": f"+-{TOLERANCE:.0%}", "precision": "fp32"})
    baseline = run_setup(SCRIPT, "baseline", {}, label="imports only")
    report.notes.append(f"baseline RSS after imports: {value(baseline, 'peak_rss_mb')} MiB")
    rows = []
    for p in table:
        measured = run_setup(SCRIPT, "train", p, label=p["label"])
        predicted = round(predicted_mb(p), 1)
        measured["predicted_mb"] = predicted
        report.setups.append(measured)
        check = Check.ratio_at_most("estimate", f"{p['label']}: predicted / measured", predicted,
                                    value(measured, "peak_rss_mb"), 1 + TOLERANCE)
        check.target = f"within +-{TOLERANCE:.0%}"
        if check.ratio is not None:
            check.status = "PASS" if abs(check.ratio - 1) <= TOLERANCE else "FAIL"
        report.checks.append(check)
        rows.append((p["label"], value(measured, "peak_rss_mb"), predicted, check.ratio, check.status))
    log(f"{'setup':24} {'measured MiB':>13} {'predicted MiB':>14} {'ratio':>6}  status")
    for label, m, pr, ratio, status in rows:
        log(f"{label:24} {m if m is not None else 'n/a':>13} {pr:>14} {ratio if ratio is not None else 'n/a':>6}  {status}")
    return report


def main() -> None:
    args = parent_args()
    write_reports("estimate", [run(quick=args.quick)])


if __name__ == "__main__":
    if "--child" in sys.argv:
        child_main(SETUPS)
    else:
        main()
