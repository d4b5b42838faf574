"""Inference cost of LoRA on SmolLM2-135M: base forward vs unmerged and merged LoRA (tunekit and PEFT).

All variants live in one process and are timed in interleaved rounds (base, tunekit unmerged, tunekit merged,
tunekit unloaded, PEFT unmerged, PEFT merged), so background load hits them alike; the figure is the median
no-grad forward time of a fixed batch (4 x 64 tokens). The LoRA weights are set to small random values
first, so merging really changes the base weights, and the merged and unmerged logits are compared.

    python benchmarks/bench_inference.py [--quick]
"""

from __future__ import annotations

import copy
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from harness import Check, Report, child_main, log, parent_args, run_setup, value, write_reports

SCRIPT = Path(__file__).resolve()
TARGETS = ["q_proj", "v_proj"]


def _randomise_lora(model: Any, seed: int) -> None:
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.02)


def forward_setup(p: dict[str, Any], workdir: Path) -> dict[str, Any]:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    import tunekit

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(p["model"]).eval()
    batch = torch.randint(0, base.config.vocab_size, (p["batch"], p["length"]))

    def with_lora(action: str | None) -> Any:
        model = copy.deepcopy(base)
        report = tunekit.apply_method(model, "lora", r=8, alpha=16, target_modules=TARGETS)
        _randomise_lora(model, 1)  # the same seed: every copy holds the same LoRA weights
        if action:
            getattr(report.applied, action)()
        return model

    unmerged, merged, unloaded = with_lora(None), with_lora("merge"), with_lora("unload")

    peft_unmerged = get_peft_model(copy.deepcopy(base), LoraConfig(r=8, lora_alpha=16, target_modules=TARGETS))
    _randomise_lora(peft_unmerged, 1)
    peft_merged = copy.deepcopy(peft_unmerged).merge_and_unload()

    variants = {"base": base, "tunekit-unmerged": unmerged, "tunekit-merged": merged,
                "tunekit-unloaded": unloaded, "peft-unmerged": peft_unmerged, "peft-merged": peft_merged}
    for model in variants.values():
        model.eval()
    times: dict[str, list[float]] = {name: [] for name in variants}
    logits: dict[str, Any] = {}
    with torch.no_grad():
        for name, model in variants.items():  # warm-up, and the outputs to compare
            logits[name] = model(input_ids=batch).logits
        for _ in range(p["rounds"]):
            for name, model in variants.items():
                start = time.perf_counter()
                model(input_ids=batch)
                times[name].append(time.perf_counter() - start)
    result: dict[str, Any] = {"rounds": p["rounds"], "batch": f"{p['batch']}x{p['length']}"}
    for name in variants:
        result[f"{name}_seconds"] = round(statistics.median(times[name]), 4)
    result["tunekit_merged_vs_unmerged_max_abs_diff"] = float((logits["tunekit-merged"]
                                                               - logits["tunekit-unmerged"]).abs().max())
    result["tunekit_vs_peft_unmerged_max_abs_diff"] = float((logits["tunekit-unmerged"]
                                                            - logits["peft-unmerged"]).abs().max())
    result["lora_changes_output"] = float((logits["tunekit-unmerged"] - logits["base"]).abs().max())
    return result


SETUPS = {"forward": forward_setup}
VARIANTS = ("base", "tunekit-unmerged", "tunekit-merged", "tunekit-unloaded", "peft-unmerged", "peft-merged")


def run(quick: bool = False) -> Report:
    from bench_sft import smollm2_folder

    params = {"batch": 2, "length": 32, "rounds": 2} if quick else {"batch": 4, "length": 64, "rounds": 7}
    report = Report("inference", "SmolLM2-135M forward (no grad), base vs LoRA q/v r=8 unmerged / merged",
                    {"batch": f"{params['batch']}x{params['length']}", "rounds": params["rounds"],
                     "statistic": "median, interleaved rounds"})
    try:
        params["model"] = smollm2_folder()
    except Exception as exc:
        report.notes.append(f"skipped: {exc}")
        return report
    result = run_setup(SCRIPT, "forward", params, label="forward timings")
    report.setups = [result] if "error" in result else [
        {"setup": name, "forward_seconds": result[f"{name}_seconds"],
         **({"peak_rss_mb": result["peak_rss_mb"]} if name == "base" else {})}
        for name in VARIANTS]
    if "error" not in result:
        report.notes.append(
            f"max |logits| difference: tunekit merged vs unmerged {result['tunekit_merged_vs_unmerged_max_abs_diff']:.2e}, "
            f"tunekit vs PEFT unmerged {result['tunekit_vs_peft_unmerged_max_abs_diff']:.2e}; the random LoRA weights "
            f"move the logits by up to {result['lora_changes_output']:.2e} (peak RSS is the one process holding all "
            "six models)")
    base = value(result, "base_seconds")
    report.checks.append(Check.ratio_at_most("inference", "tunekit merged LoRA / base forward",
                                             value(result, "tunekit-merged_seconds"), base, 1.02,
                                             note="the merged wrapper skips the low-rank path"))
    for name, note in (("tunekit-unloaded", "wrappers removed after merging"),
                       ("tunekit-unmerged", "unmerged overhead"), ("peft-unmerged", "PEFT's unmerged overhead"),
                       ("peft-merged", "PEFT merge_and_unload")):
        check = Check.ratio_at_most("inference", f"{name} / base forward", value(result, f"{name}_seconds"), base,
                                    float("inf"), note=note)
        check.report_only()
        report.checks.append(check)
    return report


def main() -> None:
    args = parent_args()
    write_reports("inference", [run(args.quick)])


if __name__ == "__main__":
    if "--child" in sys.argv:
        child_main(SETUPS)
    else:
        log("Inference benchmark")
        main()
