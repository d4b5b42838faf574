"""SST-2 on MiniLM-L6: tunekit's methods against PEFT + Trainer and AdapterHub ``adapters``.

Same 4,000 training sentences (the first ones of train.tsv), 1 epoch, batch 32, dynamic padding, max length
256, dev set of 872; time and dev accuracy. Each setup runs in its own process.

    python benchmarks/bench_sst2.py [--quick]
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import bench_data
from harness import Check, Report, child_main, log, parent_args, run_setup, value, write_reports

SCRIPT = Path(__file__).resolve()
LORA = {"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": ["query", "value"]}
# (tunekit method name, its options, learning rate, label, the peer setup it is compared with)
TUNEKIT_SETUPS = [
    ("lora", LORA, 5e-4, "tunekit-lora", "peft-lora"),
    ("houlsby", {"reduction_factor": 16}, 1e-3, "tunekit-houlsby", "adapters-houlsby"),
    ("pfeiffer", {"reduction_factor": 16}, 1e-3, "tunekit-pfeiffer", "adapters-pfeiffer"),
    # compared with recomputing the frozen backbone in bench_frozen.py (3 epochs, where caching pays)
    ("feature-extraction", {}, 1e-3, "tunekit-feature-extraction", None),
    ("freeze", {"trainable_layers": 2}, 5e-5, "tunekit-freeze", None),
    ("full", {}, 5e-5, "tunekit-full", "hf-full"),
]
PEER_LR = {"peft-lora": 5e-4, "hf-full": 5e-5, "adapters-houlsby": 1e-3,
           "adapters-pfeiffer": 1e-3}
ADAPTER_CONFIGS = {"adapters-houlsby": "double_seq_bn", "adapters-pfeiffer": "seq_bn"}


def sizes(quick: bool, scale: float = 1.0) -> dict[str, Any]:
    return {"train": 64, "dev": 64, "batch_size": 32, "epochs": 1} if quick else \
        {"train": round(4000 * scale), "dev": 872, "batch_size": 32, "epochs": 1}


# --- child setups ------------------------------------------------------------------------------------

def _rows(p: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    return bench_data.sst2(p["train"], p["dev"])


def tunekit_setup(p: dict[str, Any], workdir: Path) -> dict[str, Any]:
    import tunekit_side

    train, dev = _rows(p)
    config = {
        "model": {"name": p["model"]},
        "task": {"name": "sequence-classification", "max_length": 256},
        "data": {"train": str(bench_data.write_tsv(train, workdir / "train.tsv")),
                 "validation": str(bench_data.write_tsv(dev, workdir / "dev.tsv"))},
        "method": {"name": p["method"], **p["options"]},
        "training": {"epochs": p["epochs"], "batch_size": p["batch_size"], "lr": p["lr"],
                     "seed": 42, **p.get("training", {})},
    }
    return tunekit_side.run(config, workdir)


def hf_setup(p: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """PEFT LoRA, full fine-tuning, a frozen backbone or partial freezing, with the Trainer.

    The frozen kinds train what tunekit's methods train: the head (pooler + classifier; the MiniLM
    checkpoint's pooler was never trained) and, for partial freezing, the top blocks.
    """
    import time

    import peers
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, set_seed

    train, dev = _rows(p)
    start = time.perf_counter()
    set_seed(peers.SEED)
    tokenizer = AutoTokenizer.from_pretrained(p["model"])
    model = AutoModelForSequenceClassification.from_pretrained(p["model"], num_labels=2)
    if p["kind"] == "peft-lora":
        from peft import LoraConfig, TaskType, get_peft_model

        model = get_peft_model(model, LoraConfig(task_type=TaskType.SEQ_CLS, r=8, lora_alpha=16, lora_dropout=0.0,
                                                 target_modules=["query", "value"]))
    elif p["kind"] in ("hf-frozen", "hf-partial"):
        for param in model.base_model.parameters():  # the frozen part is recomputed every batch
            param.requires_grad_(False)
        if getattr(model.base_model, "pooler", None) is not None:
            model.base_model.pooler.requires_grad_(True)
        if p["kind"] == "hf-partial":  # the top blocks train again (embeddings and lower blocks stay frozen)
            for block in model.base_model.encoder.layer[-p["trainable_layers"]:]:
                block.requires_grad_(True)
    result = peers.train_classifier(model, tokenizer, train, dev, lr=p["lr"], batch_size=p["batch_size"],
                                    epochs=p["epochs"], workdir=workdir)
    result["trainable_params"] = peers.count_trainable(model)
    result["run_seconds"] = round(time.perf_counter() - start, 3)
    return result


def adapters_setup(p: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """AdapterHub: AutoAdapterModel + add_adapter + a classification head, trained with AdapterTrainer."""
    import time

    import adapters
    import peers
    from adapters import AdapterTrainer, AutoAdapterModel
    from transformers import AutoTokenizer, set_seed

    train, dev = _rows(p)
    start = time.perf_counter()
    set_seed(peers.SEED)
    tokenizer = AutoTokenizer.from_pretrained(p["model"])
    model = AutoAdapterModel.from_pretrained(p["model"])
    model.add_adapter("sst2", config=p["adapter_config"])
    model.add_classification_head("sst2", num_labels=2)
    model.train_adapter("sst2")
    result = peers.train_classifier(model, tokenizer, train, dev, lr=p["lr"], batch_size=p["batch_size"],
                                    epochs=p["epochs"], workdir=workdir, trainer_class=AdapterTrainer)
    result["trainable_params"] = peers.count_trainable(model)
    result["run_seconds"] = round(time.perf_counter() - start, 3)
    result["adapters_version"] = adapters.__version__
    return result


SETUPS = {"tunekit": tunekit_setup, "hf": hf_setup, "adapters": adapters_setup}


# --- parent ------------------------------------------------------------------------------------------

def run(quick: bool = False, only: set[str] | None = None, scale: float = 1.0) -> Report:
    import peer_envs

    params = sizes(quick, scale)
    report = Report("sst2", "MiniLM-L6 on SST-2, 1 epoch: tunekit vs PEFT/Trainer and AdapterHub adapters",
                    {"train_sentences": params["train"], "dev_sentences": params["dev"],
                     "batch_size": params["batch_size"], "epochs": params["epochs"], "max_length": 256,
                     "lora": "r=8 alpha=16 query,value"})
    try:
        model = str(bench_data.minilm_folder())
        bench_data.sst2(1, 1)
    except bench_data.MissingData as exc:
        report.notes.append(f"skipped: {exc}")
        return report
    base = {**params, "model": model}
    results: dict[str, dict[str, Any]] = {}
    adapters_python, why = peer_envs.adapters_python()
    report.notes.append(f"AdapterHub `adapters`: {why}" if adapters_python is None
                        else f"AdapterHub `adapters` ran in its own venv ({why}).")
    # Each tunekit setup runs right after the peer setup it is compared with, so load drift hits both alike.
    for method, options, lr, label, peer in TUNEKIT_SETUPS:
        if peer is not None and (only is None or peer in only):
            results[peer] = run_peer(peer, base, adapters_python, why)
        if only is None or label in only:
            results[label] = run_setup(SCRIPT, "tunekit", {**base, "method": method, "options": options, "lr": lr},
                                       label=label)
    report.setups = list(results.values())
    add_checks(report, results)
    return report


def run_peer(label: str, base: dict[str, Any], adapters_python: str | None, why: str) -> dict[str, Any]:
    if label in ADAPTER_CONFIGS:
        if adapters_python is None:
            return {"setup": label, "error": f"AdapterHub adapters unavailable: {why}"}
        return run_setup(SCRIPT, "adapters", {**base, "adapter_config": ADAPTER_CONFIGS[label], "lr": PEER_LR[label]},
                         python=adapters_python, label=label)
    return run_setup(SCRIPT, "hf", {**base, "kind": label, "lr": PEER_LR[label]}, label=label)


def add_checks(report: Report, results: dict[str, dict[str, Any]]) -> None:
    def acc(label: str) -> float | None:
        return value(results.get(label), "accuracy")

    def seconds(label: str) -> float | None:
        return value(results.get(label), "train_seconds")

    targets = {"tunekit-lora": 0.7, "tunekit-houlsby": 1.0, "tunekit-pfeiffer": 1.0}
    for _method, _options, _lr, label, peer in TUNEKIT_SETUPS:
        if peer is None or (label not in results and peer not in results):
            continue
        limit = targets.get(label)
        a_t, a_p = acc(label), acc(peer)
        accuracy_ok = a_t is not None and a_p is not None and a_t >= a_p - 0.01
        note = f"dev accuracy {a_t if a_t is not None else '—'} vs {a_p if a_p is not None else '—'}"
        if limit is None:
            check = Check.ratio_at_most("sst2", f"{label} / {peer} epoch time", seconds(label), seconds(peer),
                                        float("inf"), note=note)
            check.report_only()
        else:
            check = Check.ratio_at_most("sst2", f"{label} / {peer} epoch time", seconds(label), seconds(peer),
                                        limit, extra_ok=accuracy_ok or limit == 1.0,
                                        note=note + (" (needs >= peer - 0.01)" if limit < 1.0 else ""))
        report.checks.append(check)


def main() -> None:
    args = parent_args()
    write_reports("sst2", [run(args.quick)])


if __name__ == "__main__":
    if "--child" in sys.argv:
        child_main(SETUPS)
    else:
        log("SST-2 benchmark")
        main()
