"""Turning read run and sweep folders into one self-contained HTML page (jinja2; charts inline as SVG)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import yaml

from tunekit.report import charts
from tunekit.report.load import RunData, SweepData

TEMPLATE = "report.html.j2"


def number(value: Any) -> str:
    """A figure for people: integers with thousands separators, floats with four significant digits."""
    if isinstance(value, bool) or value is None:
        return "—" if value is None else ("yes" if value else "no")
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
            return f"{value:.3e}"
        return f"{value:,.4g}" if abs(value) >= 1000 else f"{value:.4g}"
    return str(value)


def shade(value: Any, top: Any) -> str:
    """A background for a matrix cell: stronger for larger counts."""
    try:
        share = float(value) / float(top) if float(top) > 0 else 0.0
    except (TypeError, ValueError):
        share = 0.0
    return f"background: rgba(37, 99, 235, {0.08 + 0.77 * share:.2f}); color: {'#fff' if share > 0.55 else '#111'}"


def _environment() -> Any:
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("tunekit.report", "templates"),
                             autoescape=jinja2.select_autoescape(["html", "j2"]), trim_blocks=True, lstrip_blocks=True,
                             undefined=jinja2.StrictUndefined)
    env.filters["num"] = number
    env.filters["shade"] = shade
    env.filters["matrix_max"] = lambda values: max((max(row) for row in values if row), default=0)
    return env


def _percent(part: Any, whole: Any) -> str:
    if not isinstance(part, (int, float)) or not isinstance(whole, (int, float)) or not whole:
        return ""
    return f"{100 * part / whole:.3g}%"


def overview(run: RunData) -> list[tuple[str, str]]:
    """What the run did, as (label, value) rows."""
    s, cfg = run.summary, run.config
    model = s.get("model") or (cfg.get("model") or {}).get("name")
    rows = [("model", model), ("task", s.get("task") or (cfg.get("task") or {}).get("name")),
            ("method", s.get("method") or (cfg.get("method") or {}).get("name")),
            ("quantization", s.get("quantize") or (cfg.get("model") or {}).get("quantize") or "none")]
    if "trainable_params" in s:
        rows.append(("trainable parameters", f"{number(s['trainable_params'])} of {number(s.get('total_params'))} "
                                             f"({_percent(s['trainable_params'], s.get('total_params'))})"))
    sizes = s.get("data_sizes") or {}
    for split in ("train", "eval"):
        if split in sizes:
            rows.append((f"{'training' if split == 'train' else 'evaluation'} items", number(sizes[split])))
    data = cfg.get("data") or {}
    rows += [("training data", data.get("train")), ("validation data", data.get("validation"))]
    for key, label in (("steps", "steps"), ("epochs", "epochs"), ("train_seconds", "training time (s)"),
                       ("tokens_per_second", "tokens per second"), ("peak_memory_mb", "peak memory (MB)"),
                       ("best_step", "best step"), ("stopped_early", "stopped early")):
        if key in s:
            rows.append((label, number(s[key])))
    return [(label, value if isinstance(value, str) else number(value)) for label, value in rows if value is not None]


def metric_rows(run: RunData) -> list[tuple[str, Any, Any]]:
    """(metric, final, best) for every evaluation metric of the run."""
    final = run.summary.get("final_metrics") or {}
    best = run.summary.get("best_metrics") or {}
    if not final and run.records:  # an unfinished run: its last evaluation
        final = next((r for r in reversed(run.records) if any(k.startswith("eval_") for k in r)), {})
    keys = [k for k in [*final, *best] if k.startswith("eval_") or k not in ("step", "epoch")]
    rows = [(k, final.get(k), best.get(k)) for k in dict.fromkeys(keys)]
    for key in ("heldout_accuracy", "base_heldout_accuracy"):
        if key in run.summary:
            rows.append((key, run.summary[key], None))
    return rows


def providers(run: RunData) -> list[tuple[str, str]]:
    """Who provided the method and the task (name, distribution and version), and which tunekit drew the report."""
    found = run.summary.get("providers") or run.providers
    rows = [(kind, f"{p.get('name', '?')} from {p.get('distribution', '?')} {p.get('version', '')}".strip())
            for kind, p in found.items() if isinstance(p, dict)]
    try:
        rows.append(("report written by", f"tunekit {version('tunekit')}"))
    except PackageNotFoundError:
        pass
    return rows


def comparison(runs: Sequence[RunData]) -> list[dict[str, Any]]:
    """One row per run: method, trainable parameters, main metric, training time, peak memory."""
    out = []
    for run in runs:
        s = run.summary
        metric = run.metric
        final = s.get("final_metrics") or {}
        out.append({"run": run.name, "task": s.get("task", ""), "method": s.get("method", ""),
                    "model": s.get("model", ""), "trainable": s.get("trainable_params"),
                    "percent": _percent(s.get("trainable_params"), s.get("total_params")),
                    "metric": metric or "", "value": final.get(metric) if metric else None,
                    "seconds": s.get("train_seconds"), "memory": s.get("peak_memory_mb")})
    return out


def run_view(run: RunData, with_charts: bool) -> dict[str, Any]:
    """Everything the template shows for one run."""
    blank = {"prompt": "", "expected": "", "keywords": [], "base_answer": "", "tuned_answer": "", "base_correct": False,
             "tuned_correct": False}
    heldout = [{**blank, **record} for record in run.heldout]
    return {"run": run, "overview": overview(run), "metrics": metric_rows(run), "providers": providers(run),
            "charts": charts.curves([run]) if with_charts else [], "details": run.details, "heldout": heldout,
            "config": yaml.safe_dump(run.config, sort_keys=False) if run.config else "", "notes": run.notes}


def render(runs: Sequence[RunData], sweeps: Sequence[SweepData] = (), title: str | None = None) -> str:
    """The HTML page for ``runs`` (one view each, a comparison when several) and ``sweeps``."""
    with_charts = charts.available()
    views = [run_view(run, with_charts) for run in runs]
    sweep_views = []
    for sweep in sweeps:
        sweep_views.append({"sweep": sweep, "comparison": comparison(sweep.trials),
                            "charts": charts.curves(sweep.trials) if with_charts and sweep.trials else []})
    names = [r.name for r in runs] + [s.name for s in sweeps]
    page_title = title or ("tunekit report: " + ", ".join(names[:3]) + (" ..." if len(names) > 3 else ""))
    return _environment().get_template(TEMPLATE).render(
        title=page_title, views=views, sweeps=sweep_views, with_charts=with_charts, plots_hint=charts.PLOTS_HINT,
        comparison=comparison(runs) if len(runs) > 1 else [],
        overlay=charts.curves(runs) if with_charts and len(runs) > 1 else [])
