"""Run every benchmark (tunekit vs the peers, same run) and write results/all.json and results/all.md.

    make bench                               # = .venv/bin/python benchmarks/run_all.py
    .venv/bin/python benchmarks/run_all.py --quick              # tiny sizes: a smoke test of every path
    .venv/bin/python benchmarks/run_all.py --only sst2,frozen   # a subset
    .venv/bin/python benchmarks/run_all.py --scale 0.25         # smaller training sets (busy machine)

Each setup runs in its own process, one after another (never in parallel: they would share the cores).
Progress goes to stderr; stdout gets the JSON and then the Markdown table.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_frozen  # noqa: E402
import bench_inference  # noqa: E402
import bench_int8  # noqa: E402
import bench_memory  # noqa: E402
import bench_sft  # noqa: E402
import bench_sst2  # noqa: E402
from harness import log, write_reports  # noqa: E402

BENCHMARKS = {
    "sst2": lambda quick, scale: bench_sst2.run(quick, scale=scale),
    "frozen": lambda quick, scale: bench_frozen.run(quick, scale=scale),
    "sft": lambda quick, scale: bench_sft.run(quick, scale=scale),
    "inference": lambda quick, scale: bench_inference.run(quick),
    "int8": lambda quick, scale: bench_int8.run(quick),
    "memory": lambda quick, scale: bench_memory.run(quick),
}


def name_of(quick: bool) -> str:
    return "all-quick" if quick else "all"


def write_partial(name: str, reports: list) -> None:
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        write_reports(name, reports)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test of the whole path")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiply the training-set sizes (e.g. 0.25 on a busy machine); ratios stay comparable")
    parser.add_argument("--only", default="", help=f"comma-separated subset of {','.join(BENCHMARKS)}")
    args = parser.parse_args()
    chosen = [n.strip() for n in args.only.split(",") if n.strip()] or list(BENCHMARKS)
    unknown = [n for n in chosen if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    start = time.perf_counter()
    reports = []
    for name in chosen:
        log(f"[{time.strftime('%H:%M:%S')}] {name}")
        t0 = time.perf_counter()
        reports.append(BENCHMARKS[name](args.quick, args.scale))
        log(f"  {name} took {time.perf_counter() - t0:.0f} s")
        write_partial(name_of(args.quick), reports)  # what is done so far survives an interrupted run
    total = time.perf_counter() - start
    reports[0].notes.append(f"the whole set took {total:.0f} s")
    write_reports(name_of(args.quick), reports)
    log(f"done in {total:.0f} s; results in benchmarks/results/")


if __name__ == "__main__":
    main()
