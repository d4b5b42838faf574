"""int8 and nf4 loading of SmolLM2-135M through tunekit's ``int8`` / ``nf4`` quantizer plugins vs the fp32 model.

Each variant loads in its own process (clean peak RSS); figures: ``model.get_memory_footprint()``, peak RSS,
and the median no-grad forward time of a fixed batch. The logits of the two are compared as a sanity check
(int8 rounding changes them a little, never wholesale). Target: the nf4 footprint <= 0.35 of fp32.

    python benchmarks/bench_int8.py [--quick]
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from harness import Check, Report, child_main, log, median_time, parent_args, run_setup, value, write_reports

SCRIPT = Path(__file__).resolve()
NF4_TARGET = 0.35
QUANTIZERS = ("int8", "nf4")


def load_setup(p: dict[str, Any], workdir: Path) -> dict[str, Any]:
    import time

    import torch
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {}
    quantizer = None
    if p["quantize"]:
        import tunekit

        quantizer = tunekit.registries().quantizers.get(p["quantize"])
        kwargs = quantizer.load_kwargs([])  # each quantizer's defaults (nf4: double quantization on)
    start = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(p["model"], **kwargs).eval()
    if hasattr(quantizer, "after_load"):
        quantizer.after_load(model)  # what a run does after loading (4-bit: the kernel that trains)
    load_seconds = time.perf_counter() - start
    gen = torch.Generator().manual_seed(0)
    batch = torch.randint(0, model.config.vocab_size, (p["batch"], p["length"]), generator=gen)
    with torch.no_grad():
        seconds = median_time(lambda: model(input_ids=batch), repeat=p["repeat"])
        logits = model(input_ids=batch[:1, :16]).logits[0]
    return {
        "load_seconds": round(load_seconds, 2),
        "memory_footprint_mb": round(model.get_memory_footprint() / 2**20, 1),
        "forward_seconds": round(seconds, 4),
        "top1_first_tokens": logits.argmax(-1).tolist(),
    }


SETUPS = {"load": load_setup}


def run(quick: bool = False) -> Report:
    from bench_sft import smollm2_folder

    shape = {"batch": 2, "length": 32, "repeat": 2} if quick else {"batch": 4, "length": 64, "repeat": 5}
    report = Report("int8", "SmolLM2-135M: tunekit `int8` (bitsandbytes LLM.int8) and `nf4` quantizers vs fp32",
                    {"batch": f"{shape['batch']}x{shape['length']}", "repeat": shape["repeat"],
                     "statistic": "median"})
    try:
        model = smollm2_folder()
    except Exception as exc:
        report.notes.append(f"skipped: {exc}")
        return report
    fp32 = run_setup(SCRIPT, "load", {**shape, "model": model, "quantize": None}, label="fp32")
    report.setups = [fp32]
    for quant in QUANTIZERS:
        loaded = run_setup(SCRIPT, "load", {**shape, "model": model, "quantize": quant}, label=f"tunekit {quant}")
        report.setups.append(loaded)
        report.checks += compare(quant, loaded, fp32)
        a, b = fp32.get("top1_first_tokens"), loaded.get("top1_first_tokens")
        if a and b:
            agree = sum(x == y for x, y in zip(a, b, strict=True)) / len(a)
            report.notes.append(f"greedy next-token agreement {quant} vs fp32 on 16 positions: {agree:.0%}")
    return report


def compare(quant: str, loaded: dict[str, Any], fp32: dict[str, Any]) -> list[Check]:
    """quantized / fp32 ratios: the nf4 footprint against its target, everything else report-only."""
    checks = []
    for key, name in (("memory_footprint_mb", "memory footprint"), ("forward_seconds", "forward time"),
                      ("peak_rss_mb", "peak RSS")):
        target = NF4_TARGET if (quant, key) == ("nf4", "memory_footprint_mb") else float("inf")
        check = Check.ratio_at_most("int8", f"{quant} / fp32 {name}", value(loaded, key), value(fp32, key), target)
        if target == float("inf"):
            check.report_only()
        checks.append(check)
    return checks


def main() -> None:
    args = parent_args()
    write_reports("int8", [run(args.quick)])


if __name__ == "__main__":
    if "--child" in sys.argv:
        child_main(SETUPS)
    else:
        log("int8 benchmark")
        main()
