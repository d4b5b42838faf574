"""The evidence behind each built-in method's default learning rate and schedule (docs/defaults.md).

For every built-in method, on SST-2 (sentence classification, accuracy) and CoNLL-2003 (NER, entity F1) with
MiniLM-L6, train the same small budget at the method's default rate times 0.3, 1 and 3 (the default linear
decay), then further out (0.1 or 10) when the best of those is at an end, and at the default rate with a
constant schedule and with a 10% warm-up. One seed: read differences below about 0.01 as noise.

    python scripts/lr_defaults.py [--methods lora,full] [--datasets sst2] [--out results.json]

Needs ``../shared/data`` and the ``minilm-l6`` model package; about 80 short runs (an hour or more on 2 cores).
Each run goes through ``tunekit.run`` in a fresh subprocess, so one run's memory never carries into the next.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
MULTIPLIERS = (0.3, 1.0, 3.0)
FURTHER = {0.3: 0.1, 3.0: 10.0}  # where to look next when the best multiplier is at an end
METHODS = ("feature-extraction", "freeze", "full", "houlsby", "pfeiffer", "lora", "prefix-tuning")
DATASETS: dict[str, dict[str, Any]] = {
    "sst2": {
        "task": {"name": "sequence-classification", "max_length": 64},
        "data": {"train": str(DATA / "sst2/train.tsv"), "validation": str(DATA / "sst2/dev.tsv"),
                 "max_train_samples": 2000, "max_eval_samples": 500},
        "metric": "eval_accuracy",
    },
    "conll": {
        "task": {"name": "token-classification", "max_length": 128},
        "data": {"train": str(DATA / "conll2003/eng.train"), "validation": str(DATA / "conll2003/eng.testa"),
                 "max_train_samples": 2000, "max_eval_samples": 500},
        "metric": "eval_f1",
    },
}
CHILD = """
import json, sys, tunekit
result = tunekit.run(json.loads(sys.argv[1]))
print(json.dumps({"metrics": result.summary["final_metrics"], "seconds": result.summary.get("train_seconds")}))
"""


def default_lr(method: str) -> float:
    """The method's registered default learning rate (what ``tunekit run`` uses without ``training.lr``)."""
    from tunekit.methods.protocol import METHOD_OPTIONAL
    from tunekit.plugins import registries
    from tunekit.protocols import optional

    return float(optional(registries().methods.get(method), "default_lr", METHOD_OPTIONAL))


def rates(lr: float, multipliers: tuple[float, ...]) -> list[tuple[str, dict[str, Any]]]:
    """(label, training overrides) of the linear-decay runs at ``lr`` times each multiplier."""
    return [(f"{m:g}x linear", {"lr": lr * m}) for m in multipliers]


def settings(lr: float, multipliers: tuple[float, ...] = MULTIPLIERS) -> list[tuple[str, dict[str, Any]]]:
    """(label, training overrides) of the runs for one method: the rates, then the two schedules at ``lr``."""
    return [*rates(lr, multipliers), ("1x constant", {"lr": lr, "scheduler": "constant"}),
            ("1x linear, 10% warm-up", {"lr": lr, "warmup_ratio": 0.1})]


def further(results: list[dict[str, Any]], dataset: str, method: str) -> list[float]:
    """The multiplier beyond the best one when that is at an end of MULTIPLIERS (nothing when it is inside)."""
    values = {r["setting"]: r.get("value") for r in results if (r["dataset"], r["method"]) == (dataset, method)}
    scored = [(values.get(f"{m:g}x linear"), m) for m in MULTIPLIERS]
    scored = [(v, m) for v, m in scored if v is not None]
    if not scored:
        return []
    best = max(scored)[1]
    return [FURTHER[best]] if best in FURTHER else []


def train(dataset: str, method: str, training: dict[str, Any], folder: Path) -> dict[str, Any]:
    spec = DATASETS[dataset]
    config = {"model": {"name": "minilm-l6"}, "task": spec["task"], "data": spec["data"], "method": {"name": method},
              "training": {"epochs": 1, "batch_size": 32, "seed": 42, "report_to": [], **training},
              "output": {"dir": str(folder), "overwrite": True}}
    done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(config)], capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["failed"])[-1]}
    out = json.loads(done.stdout.strip().splitlines()[-1])
    return {"value": out["metrics"].get(spec["metric"]), "seconds": out["seconds"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--out", type=Path, default=Path("lr_defaults.json"))
    args = parser.parse_args()
    results: list[dict[str, Any]] = json.loads(args.out.read_text()) if args.out.exists() else []
    done = {(r["dataset"], r["method"], r["setting"]) for r in results}
    with tempfile.TemporaryDirectory() as tmp:
        for dataset in args.datasets.split(","):
            for method in args.methods.split(","):
                lr = default_lr(method)
                plan = settings(lr)
                while plan:
                    label, training = plan.pop(0)
                    if (dataset, method, label) not in done:  # a rerun continues where an interrupted one stopped
                        row = {"dataset": dataset, "method": method, "default_lr": lr, "setting": label,
                               **training, **train(dataset, method, training, Path(tmp) / "run")}
                        results.append(row)
                        args.out.write_text(json.dumps(results, indent=1))
                        print(json.dumps(row), flush=True)
                    if label == f"{MULTIPLIERS[-1]:g}x linear":
                        plan = rates(lr, tuple(further(results, dataset, method))) + plan
    print(table(results))


def table(results: list[dict[str, Any]]) -> str:
    """One markdown row per (dataset, method): the metric under each setting, the best one in bold."""
    labels = [label for label, _ in settings(1.0, tuple(sorted((*MULTIPLIERS, *FURTHER.values()))))]
    lines = ["| dataset | method | default lr | " + " | ".join(labels) + " |", "|---" * (len(labels) + 3) + "|"]
    keys = dict.fromkeys((r["dataset"], r["method"]) for r in results)
    for dataset, method in keys:
        rows = {r["setting"]: r for r in results if (r["dataset"], r["method"]) == (dataset, method)}
        values = {k: r.get("value") for k, r in rows.items() if r.get("value") is not None}
        best = max(values.values(), default=None)
        cells = []
        for label in labels:
            value = values.get(label)
            text = "failed" if label in rows and value is None else ("" if value is None else f"{value:.4f}")
            cells.append(f"**{text}**" if value is not None and value == best else text)
        lr = next(iter(rows.values()))["default_lr"]
        lines.append(f"| {dataset} | {method} | {lr:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
