"""Feature extraction and partial freezing over 3 epochs on SST-2 / MiniLM-L6.

tunekit (its defaults, which cache the outputs of frozen layers when the engine supports it) against the
transformers Trainer recomputing the frozen backbone every batch. Same sentences, batch 32, 3 epochs, one
dev evaluation at the end (tunekit's per-epoch evaluation is switched off so both do the same work).

    python benchmarks/bench_frozen.py [--quick]
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import bench_data
from bench_sst2 import hf_setup, tunekit_setup
from harness import Check, Report, child_main, log, parent_args, run_setup, value, write_reports

SCRIPT = Path(__file__).resolve()
EPOCHS = 3
TRAINABLE_LAYERS = 2
# (label, tunekit method, options, peer kind, lr)
PAIRS = [
    ("feature-extraction", "feature-extraction", {}, "hf-frozen", 1e-3),
    ("partial freezing (top 2 of 6 blocks)", "freeze", {"trainable_layers": TRAINABLE_LAYERS}, "hf-partial", 1e-4),
]


def sizes(quick: bool, scale: float = 1.0) -> dict[str, Any]:
    return {"train": 64, "dev": 64, "batch_size": 32, "epochs": EPOCHS} if quick else \
        {"train": round(700 * scale), "dev": 872, "batch_size": 32, "epochs": EPOCHS}


SETUPS = {"tunekit": tunekit_setup, "hf": hf_setup}


def run(quick: bool = False, only: set[str] | None = None, scale: float = 1.0) -> Report:
    params = sizes(quick, scale)
    report = Report("frozen", f"MiniLM-L6 on SST-2 over {EPOCHS} epochs: tunekit vs recomputing the frozen backbone",
                    {"train_sentences": params["train"], "dev_sentences": params["dev"],
                     "batch_size": params["batch_size"], "epochs": EPOCHS})
    try:
        model = str(bench_data.minilm_folder())
        bench_data.sst2(1, 1)
    except bench_data.MissingData as exc:
        report.notes.append(f"skipped: {exc}")
        return report
    base = {**params, "model": model}
    for label, method, options, kind, lr in PAIRS:
        if only is not None and method not in only:
            continue
        peer = run_setup(SCRIPT, "hf", {**base, "kind": kind, "lr": lr, "trainable_layers": TRAINABLE_LAYERS},
                         label=f"{kind} (recompute)")
        tk = run_setup(SCRIPT, "tunekit", {**base, "method": method, "options": options, "lr": lr,
                                           "training": {"eval_each_epoch": False}}, label=f"tunekit-{method}")
        report.setups += [peer, tk]
        a_t, a_p = value(tk, "accuracy"), value(peer, "accuracy")
        same = a_t is not None and a_p is not None and abs(a_t - a_p) <= 0.01
        limit = 0.4 if method == "feature-extraction" else float("inf")
        check = Check.ratio_at_most("frozen", f"{label}, {EPOCHS} epochs", value(tk, "train_seconds"),
                                    value(peer, "train_seconds"), limit, extra_ok=same,
                                    note=f"dev accuracy {a_t} vs {a_p} (needs ±0.01)")
        if limit == float("inf"):
            check.report_only()
        report.checks.append(check)
    return report


def main() -> None:
    args = parent_args()
    write_reports("frozen", [run(args.quick)])


if __name__ == "__main__":
    if "--child" in sys.argv:
        child_main(SETUPS)
    else:
        log("Frozen-backbone benchmark")
        main()
