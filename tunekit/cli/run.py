"""``tunekit run``: train from a YAML config plus command-line overrides."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from tunekit import config as config_mod
from tunekit import options as opts
from tunekit.cli import cli, console

# flag -> config key path; the command line wins over the YAML file, and --set wins over both.
# Each flag's help, type and choices come from the config field it sets: one help string per key.
FLAG_KEYS = {
    "method": "method.name",
    "model": "model.name",
    "task": "task.name",
    "data": "data.train",
    "val_data": "data.validation",
    "output": "output.dir",
    "epochs": "training.epochs",
    "max_steps": "training.max_steps",
    "batch_size": "training.batch_size",
    "lr": "training.lr",
    "seed": "training.seed",
    "quantize": "model.quantize",
    "init_from": "model.init_from",
    "precision": "training.precision",
    "resume": "training.resume",
    "overwrite": "output.overwrite",
    "save_steps": "training.save_steps",
    "eval_steps": "training.eval_steps",
    "report_to": "training.report_to",
    "gradient_checkpointing": "training.gradient_checkpointing",
}
SHORT_FLAGS = {"method": "-m", "task": "-t", "output": "-o"}


def _optional_bool(tp: Any) -> bool:
    """``bool | None``: a three-way setting (unset, ``--flag``, ``--no-flag``)."""
    return typing.get_origin(tp) in (typing.Union, types.UnionType) and set(typing.get_args(tp)) == {bool, type(None)}


def _click_kind(tp: Any) -> dict[str, Any]:
    """click.option keyword arguments for a config field annotated ``tp`` (``X | None`` counts as ``X``)."""
    if _optional_bool(tp):
        return {"is_flag": True, "default": None}
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and len(args) == 1:
        tp = args[0]
    if tp is bool:
        return {"is_flag": True}
    if typing.get_origin(tp) is typing.Literal:
        return {"type": click.Choice([str(a) for a in typing.get_args(tp)])}
    if typing.get_origin(tp) is list:
        return {"multiple": True}
    return {"type": tp} if tp in (int, float) else {}


def config_flags(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add one option per ``FLAG_KEYS`` entry to ``command``, its help and type taken from the config field."""
    for flag, key in reversed(FLAG_KEYS.items()):
        tp, help_text = config_mod.key_field(key)
        name = flag.replace("_", "-")
        names = [f"--{name}/--no-{name}" if _optional_bool(tp) else f"--{name}",
                 *([SHORT_FLAGS[flag]] if flag in SHORT_FLAGS else [])]
        command = click.option(*names, help=f"{help_text} [{key}]", **_click_kind(tp))(command)
    return command


def _config_reference() -> str:
    """Every config key with its help text, for the epilog of ``tunekit run --help``."""
    lines = ["\b", "Config keys (YAML sections, or --set SECTION.KEY=VALUE):"]
    for f in dataclasses.fields(config_mod.RunConfig):
        if f.name in ("method", "task"):
            lines.append(f"  {f.name}.name, plus the {f.name}'s own options (see `tunekit {f.name}s`)")
            continue
        for name, default, help_text in opts.describe(f.default_factory):  # type: ignore[arg-type]
            lines.append(f"  {f.name}.{name} = {default}: {help_text}")
    return "\n".join(lines)


def overrides_from_flags(values: dict[str, Any]) -> dict[str, Any]:
    """The config tree the given flags set; an unset flag (None, no values, or False for an on/off flag without
    a ``--no-`` form) sets nothing."""
    tree: dict[str, Any] = {}
    for flag, key in FLAG_KEYS.items():
        value = values.get(flag)
        unset_false = value is False and not _optional_bool(config_mod.key_field(key)[0])
        if value is not None and not unset_false and value != ():
            if isinstance(value, tuple):  # a repeatable flag: --report-to a --report-to b, or --report-to a,b
                value = [part.strip() for item in value for part in str(item).split(",") if part.strip()]
            config_mod.set_path(tree, key, value)
    return tree


class ProgressListener:
    """Prints the method report and the summary (the engine's progress bar is added by the engine's listener)."""

    def on_method_applied(self, report: Any) -> None:
        console.print(report.line(), highlight=False)

    def on_heldout(self, records: list[dict[str, Any]], summary: dict[str, Any], shown: int = 4) -> None:
        from rich.table import Table

        table = Table(title="held-out questions (never seen in training)", title_justify="left", show_lines=True)
        for col in ("question", "base model", "tuned model", "expected"):
            table.add_column(col, overflow="fold")
        mark = {True: "[green]✓[/] ", False: "[red]✗[/] "}
        def clip(text: str, limit: int = 160) -> str:
            return text if len(text) <= limit else text[:limit].rstrip() + " …"

        for r in records[:shown]:
            table.add_row(r["prompt"], mark[r["base_correct"]] + clip(r["base_answer"]),
                          mark[r["tuned_correct"]] + clip(r["tuned_answer"]), r["expected"])
        console.print(table)
        console.print(
            f"held-out accuracy: base {summary['base_heldout_accuracy']:.1%} -> tuned "
            f"{summary['heldout_accuracy']:.1%} ({summary['heldout_examples']} questions)", highlight=False)

    def on_run_end(self, summary: dict[str, Any]) -> None:
        metrics = {k: v for k, v in summary.items() if k.startswith("eval_") and isinstance(v, (int, float))}
        shown = "  ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items()))
        console.print(f"[bold green]done[/] {shown}", highlight=False)
        console.print(f"run folder: {summary['output_dir']}", highlight=False)
        report = Path(summary["output_dir"]) / "report.html"
        if report.is_file():
            console.print(f"report: {report}", highlight=False, soft_wrap=True)


def listeners() -> list[Any]:
    out: list[Any] = [ProgressListener()]
    try:
        from tunekit.cli.progress import progress_listener
    except ImportError:
        return out
    out.append(progress_listener())
    return out


@cli.command(epilog=_config_reference())
@click.option("--config", "-c", "config_path", type=click.Path(dir_okay=False), help="YAML config file.")
@config_flags
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Set any config key, e.g. --set method.r=16 --set data.text_column=sentence.")
def run(config_path: str | None, sets: tuple[str, ...], **flags: Any) -> None:
    """Fine-tune a model: tokenize, train, evaluate, and write the run folder."""
    from tunekit.runs.runner import run as run_training

    cfg = config_mod.load(config_path, overrides_from_flags(flags), list(sets))
    run_training(cfg, listeners=listeners())
