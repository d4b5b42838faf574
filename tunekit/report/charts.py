"""The report's charts: matplotlib figures saved as inline SVG (no image files, nothing fetched).

matplotlib is optional (the ``plots`` extra); without it :func:`available` is False and the report shows its
tables with a line saying how to get the charts.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tunekit.report.load import RunData

PLOTS_HINT = "charts need matplotlib: pip install 'tunekit[plots]'"
MAX_EVAL_PANELS = 6
TRAIN_KEYS = (("loss", "training loss"), ("lr", "learning rate"), ("grad_norm", "gradient norm"))
_PROLOG = re.compile(r"<\?xml[^>]*>\s*|<!DOCTYPE[^>]*>\s*|<metadata>.*?</metadata>\s*", re.DOTALL)


@dataclass
class Chart:
    """One drawn chart: its title and its ``<svg>`` element."""

    title: str
    svg: str


def available() -> bool:
    """Whether matplotlib can be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _series(run: RunData, key: str) -> tuple[list[float], list[float]]:
    points = [(r["step"], r[key]) for r in run.records
              if isinstance(r.get(key), (int, float)) and not isinstance(r.get(key), bool)
              and isinstance(r.get("step"), (int, float)) and math.isfinite(r[key])]
    return [float(s) for s, _ in points], [float(v) for _, v in points]


def to_svg(fig: Any) -> str:
    """The figure as an ``<svg>`` element to inline in HTML (no XML prolog, no metadata with its URIs)."""
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": "tunekit", "svg.fonttype": "none"}):
        fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    return _PROLOG.sub("", buffer.getvalue()).strip()


def _figure() -> tuple[Any, Any]:
    from matplotlib.figure import Figure  # a bare Figure draws with Agg and leaves pyplot alone

    fig = Figure(figsize=(4.4, 2.7), dpi=100)
    ax = fig.subplots()
    from matplotlib.ticker import MaxNLocator

    ax.grid(alpha=0.3)
    ax.set_xlabel("step")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return fig, ax


def _panel(title: str, runs: Sequence[RunData], keys: Sequence[tuple[str, str]]) -> Chart | None:
    """One chart: each (key, line label) of each run as a line; None when no run logged any of them."""
    fig, ax = _figure()
    drawn = 0
    colours = [f"C{i % 10}" for i in range(len(runs))]
    for run, colour in zip(runs, colours, strict=True):
        drawn_run = False
        for index, (key, label) in enumerate(keys):
            xs, ys = _series(run, key)
            if not xs:
                continue
            name = label if len(runs) == 1 else run.name if index == 0 or not drawn_run else None
            style = {"marker": "o", "markersize": 3} if key.startswith("eval_") else {}
            ax.plot(xs, ys, color=colour, linestyle="-" if index == 0 else "--", label=name, **style)
            drawn += 1
            drawn_run = True
    if not drawn:
        return None
    if len(runs) > 1 and len(keys) > 1:
        title = f"{title} (solid: {keys[0][1]}, dashed: {keys[1][1]})"
    ax.set_title(title, fontsize=10)
    if drawn > 1 or len(runs) > 1:
        ax.legend(fontsize=7, framealpha=0.7)
    fig.subplots_adjust(left=0.17, right=0.97, bottom=0.18, top=0.89)  # fixed margins: tight_layout costs 3x the drawing
    return Chart(title, to_svg(fig))


def eval_keys(runs: Sequence[RunData]) -> list[str]:
    """The evaluation metrics to chart (besides eval_loss): each run's main metric first."""
    keys: list[str] = []
    for run in runs:
        if run.metric and run.metric != "eval_loss":
            keys.append(run.metric)
    for run in runs:
        for record in run.records:
            keys.extend(k for k in record if k.startswith("eval_") and k != "eval_loss"
                        and isinstance(record[k], (int, float)))
    return list(dict.fromkeys(keys))[:MAX_EVAL_PANELS]


def curves(runs: Sequence[RunData]) -> list[Chart]:
    """Training and evaluation curves of one run, or of several overlaid (one colour per run)."""
    charts = [_panel("loss", runs, [("loss", "train"), ("eval_loss", "eval")])]
    charts += [_panel(key.removeprefix("eval_"), runs, [(key, "")]) for key in eval_keys(runs)]
    charts += [_panel(title, runs, [(key, "")]) for key, title in TRAIN_KEYS[1:]]
    return [c for c in charts if c is not None]
