"""int8 loading of SmolLM2-135M through tunekit's ``int8`` quantizer plugin vs the fp32 model.

Each variant loads in its own process (clean peak RSS); figures: ``model.get_memory_footprint()``, peak RSS,
and the median no-grad forward time of a fixed batch. The logits of the two are compared as a sanity check
(int8 rounding changes them a little, never wholesale).

    python benchmarks/bench_int8.py [--quick]
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from harness import Check, Report, child_main, log, median_time, parent_args, run_setup, value, write_reports

SCRIPT = Path(__file__).resolve()


def load_setup(p: dict[str, Any], workdir: Path) -> dict[str, Any]:
    import time

    import torch
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {}
    if p["quantize"]:
        import tunekit

        kwargs = tunekit.registries().quantizers.get(p["quantize"]).load_kwargs([])
    start = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(p["model"], **kwargs).eval()
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
    report = Report("int8", "SmolLM2-135M: tunekit `int8` quantizer (bitsandbytes LLM.int8) vs fp32",
                    {"batch": f"{shape['batch']}x{shape['length']}", "repeat": shape["repeat"],
                     "statistic": "median"})
    try:
        model = smollm2_folder()
    except Exception as exc:
        report.notes.append(f"skipped: {exc}")
        return report
    fp32 = run_setup(SCRIPT, "load", {**shape, "model": model, "quantize": None}, label="fp32")
    int8 = run_setup(SCRIPT, "load", {**shape, "model": model, "quantize": "int8"},
                     label="tunekit int8")
    report.setups = [fp32, int8]
    for key, name in (("memory_footprint_mb", "memory footprint"), ("forward_seconds", "forward time"),
                      ("peak_rss_mb", "peak RSS")):
        check = Check.ratio_at_most("int8", f"int8 / fp32 {name}", value(int8, key), value(fp32, key), float("inf"))
        check.target, check.status = "report only", "INFO" if check.ratio is not None else "N/A"
        report.checks.append(check)
    a, b = fp32.get("top1_first_tokens"), int8.get("top1_first_tokens")
    if a and b:
        agree = sum(x == y for x, y in zip(a, b, strict=True)) / len(a)
        report.notes.append(f"greedy next-token agreement int8 vs fp32 on 16 positions: {agree:.0%}")
    return report


def main() -> None:
    args = parent_args()
    write_reports("int8", [run(args.quick)])


if __name__ == "__main__":
    if "--child" in sys.argv:
        child_main(SETUPS)
    else:
        log("int8 benchmark")
        main()
