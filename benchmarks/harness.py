"""Shared benchmark harness: one fresh subprocess per setup, timing, peak RSS, ratios, JSON and Markdown.

Standard library only, so that a peer's own virtual environment (which has no tunekit) can import it too.

A benchmark script defines *setups* (functions ``fn(params, workdir) -> dict``) and calls
``child_main(SETUPS)`` when started with ``--child``. The parent side calls ``run_setup`` for each one:
the setup runs in a new Python process, so its peak resident memory (``ru_maxrss``) is its own.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
SHARED_DATA = REPO.parent / "shared" / "data"
RESULTS = BENCH_DIR / "results"
PEER_VENVS = Path(os.environ.get("TUNEKIT_PEER_VENVS", str(REPO.parent / "peer-venvs")))
CHILD_TIMEOUT = 20 * 60

Setup = Callable[[dict[str, Any], Path], dict[str, Any]]


# --- child side ---------------------------------------------------------------------------------

def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class Timer:
    """``with Timer() as t: ...`` then ``t.seconds``."""

    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start


def median_time(fn: Callable[[], Any], repeat: int, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` over ``repeat`` calls after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def child_main(setups: dict[str, Setup]) -> None:
    """Entry point of a benchmark script started with ``--child NAME --params JSON --out FILE``."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", required=True, choices=sorted(setups))
    parser.add_argument("--params", default="{}")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    params = json.loads(args.params)
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-{args.child}-"))
    start = time.perf_counter()
    try:
        result = setups[args.child](params, workdir)
    except Exception as exc:  # the parent reports the failure next to the other figures
        result = {"error": f"{type(exc).__name__}: {exc}".strip()[:600], "traceback": traceback.format_exc()[-3000:]}
    finally:
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)
    result.setdefault("process_seconds", round(time.perf_counter() - start, 3))
    result["peak_rss_mb"] = round(peak_rss_mb(), 1)
    Path(args.out).write_text(json.dumps(result, indent=2, default=float), encoding="utf-8")


# --- parent side --------------------------------------------------------------------------------

def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    env.setdefault("HF_DATASETS_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_VERBOSITY", "error")
    env.setdefault("PYTHONWARNINGS", "ignore")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(BENCH_DIR), env.get("PYTHONPATH", "")) if p)
    return env


def run_setup(script: str | Path, setup: str, params: dict[str, Any] | None = None,
              python: str | None = None, label: str | None = None) -> dict[str, Any]:
    """Run one setup of ``script`` in a fresh process and return its result dict (``error`` on failure)."""
    label = label or setup
    log(f"  {label} ...")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = [python or sys.executable, str(script), "--child", setup,
               "--params", json.dumps(params or {}), "--out", str(out)]
        start = time.perf_counter()
        try:
            proc = subprocess.run(cmd, cwd=REPO, env=child_env(), capture_output=True, text=True,
                                  timeout=CHILD_TIMEOUT)
        except subprocess.TimeoutExpired:
            result = {"error": f"timed out after {CHILD_TIMEOUT} s"}
        else:
            if out.is_file():
                result = json.loads(out.read_text(encoding="utf-8"))
            else:
                tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-5:]
                result = {"error": f"exit code {proc.returncode}: " + " | ".join(tail)}
        result["wall_process_seconds"] = round(time.perf_counter() - start, 2)
    result["setup"] = label
    if "error" in result:
        log(f"  {label}: FAILED: {result['error']}")
    else:
        shown = {k: v for k, v in result.items() if k in SHOWN_KEYS}
        log(f"  {label}: {shown}")
    return result


SHOWN_KEYS = ("train_seconds", "run_seconds", "eval_loss", "accuracy", "peak_rss_mb", "forward_seconds",
              "memory_footprint_mb", "tokens_per_second", "train_peak_rss_mb")


def log(message: str) -> None:
    """Progress goes to stderr so that stdout carries only the JSON and the Markdown table."""
    print(message, file=sys.stderr, flush=True)


# --- comparisons --------------------------------------------------------------------------------

@dataclass
class Check:
    """One ratio tunekit / peer against its target; ``status`` is PASS, MISS or N/A (a side failed)."""

    benchmark: str
    name: str
    tunekit: float | None
    peer: float | None
    target: str
    ratio: float | None = None
    status: str = "N/A"
    note: str = ""

    @classmethod
    def ratio_at_most(cls, benchmark: str, name: str, tunekit: float | None, peer: float | None,
                      limit: float, extra_ok: bool = True, note: str = "") -> Check:
        """PASS when tunekit / peer <= limit and the extra quality condition holds."""
        check = cls(benchmark, name, tunekit, peer, f"<= {limit:g}", note=note)
        if tunekit is not None and peer:
            check.ratio = round(tunekit / peer, 3)
            check.status = "PASS" if check.ratio <= limit and extra_ok else "MISS"
        return check

    def report_only(self) -> Check:
        """Mark this ratio as reported without a target: INFO, or N/A when a side failed."""
        self.target, self.status = "report only", "INFO" if self.ratio is not None else "N/A"
        return self


def value(result: dict[str, Any] | None, key: str) -> float | None:
    if not result or "error" in result:
        return None
    v = result.get(key)
    return float(v) if isinstance(v, (int, float)) else None


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {"python": platform.python_version(), "cpus": os.cpu_count(),
                            "platform": platform.platform(),
                            "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    try:
        info["load_average_at_start"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    return info


@dataclass
class Report:
    """What one benchmark script produces: every setup's raw figures and the checks against the targets."""

    benchmark: str
    description: str
    params: dict[str, Any]
    setups: list[dict[str, Any]] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    machine: dict[str, Any] = field(default_factory=machine_info)

    def to_dict(self) -> dict[str, Any]:
        tree = asdict(self)
        for setup in tree["setups"]:
            setup.pop("traceback", None) if "error" not in setup else None
        return tree


def fmt(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        if abs(v) >= 100:
            return f"{v:,.1f}"
        return f"{v:.4g}" if abs(v) < 1 else f"{v:.3g}" if abs(v) < 10 else f"{v:.1f}"
    return str(v)


def markdown(reports: Sequence[Report], columns: Sequence[str]) -> str:
    """The checks table, then one table of raw figures per benchmark."""
    lines = ["## Targets (ratio tunekit / peer, same run)", "",
             "| benchmark | check | tunekit | peer | ratio | target | status | note |",
             "|---|---|---|---|---|---|---|---|"]
    for report in reports:
        for c in report.checks:
            lines.append(f"| {c.benchmark} | {c.name} | {fmt(c.tunekit)} | {fmt(c.peer)} | {fmt(c.ratio)} | "
                         f"{c.target} | **{c.status}** | {c.note} |")
    for report in reports:
        lines += ["", f"## {report.benchmark}: {report.description}", ""]
        if report.params:
            lines.append("Parameters: " + ", ".join(f"{k}={v}" for k, v in report.params.items()))
            lines.append("")
        present = [c for c in columns if any(c in s for s in report.setups)]
        lines.append("| setup | " + " | ".join(present) + " | error |")
        lines.append("|---|" + "---|" * (len(present) + 1))
        for s in report.setups:
            cells = [fmt(s.get(c)) for c in present]
            lines.append(f"| {s['setup']} | " + " | ".join(cells) + f" | {s.get('error', '')[:160]} |")
        for note in report.notes:
            lines.append(f"\n- {note}")
    return "\n".join(lines) + "\n"


COLUMNS = ("run_seconds", "train_seconds", "eval_seconds", "tokens_per_second", "eval_loss", "accuracy",
           "forward_seconds", "memory_footprint_mb", "train_peak_rss_mb", "predicted_mb", "peak_rss_mb", "trainable_params",
           "max_abs_diff")


def write_reports(name: str, reports: Sequence[Report]) -> tuple[Path, Path]:
    """Write ``results/<name>.json`` and ``.md``; print both (JSON first) to stdout."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    tree = [r.to_dict() for r in reports]
    md = f"# tunekit benchmarks: {name}\n\n" + markdown(reports, COLUMNS)
    json_path, md_path = RESULTS / f"{name}.json", RESULTS / f"{name}.md"
    json_path.write_text(json.dumps(tree, indent=2, default=float), encoding="utf-8")
    md_path.write_text(md, encoding="utf-8")
    print(json.dumps(tree, indent=2, default=float))
    print()
    print(md)
    return json_path, md_path


def parent_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test of the whole path")
    return parser.parse_args(argv)
