"""``tunekit run``: train from a YAML config plus command-line overrides."""

from __future__ import annotations

import dataclasses
from typing import Any

import click

from tunekit import config as config_mod
from tunekit import options as opts
from tunekit.cli import cli, console

# flag -> config key path; the command line wins over the YAML file, and --set wins over both.
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
    "save_steps": "training.save_steps",
    "eval_steps": "training.eval_steps",
    "precision": "training.precision",
}


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
    tree: dict[str, Any] = {}
    for flag, key in FLAG_KEYS.items():
        if values.get(flag) is not None:
            config_mod.set_path(tree, key, values[flag])
    if values.get("resume"):
        config_mod.set_path(tree, "training.resume", True)
    if values.get("overwrite"):
        config_mod.set_path(tree, "output.overwrite", True)
    if values.get("report_to"):
        config_mod.set_path(tree, "training.report_to", list(values["report_to"]))
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
@click.option("--method", "-m", help="Parameter-efficient method (see `tunekit methods`).")
@click.option("--model", help="Model alias, local folder or hub id (see `tunekit models`).")
@click.option("--task", "-t", help="Task (see `tunekit tasks`).")
@click.option("--data", help="Training data file or dataset name.")
@click.option("--val-data", help="Validation data file (default: carve data.val_split out of --data).")
@click.option("--output", "-o", help="Run folder (default ./runs/<method>-<task>-<time>).")
@click.option("--epochs", type=float, help="Passes over the training data.")
@click.option("--max-steps", type=int, help="Stop after this many optimiser steps.")
@click.option("--batch-size", type=int, help="Examples per batch.")
@click.option("--lr", type=float, help="Learning rate.")
@click.option("--seed", type=int, help="Random seed.")
@click.option("--quantize", help="Load the frozen base quantized (e.g. int8).")
@click.option("--precision", type=click.Choice(["fp32", "bf16"]), help="Numeric precision.")
@click.option("--resume", is_flag=True, help="Continue from the last complete checkpoint in the output folder.")
@click.option("--overwrite", is_flag=True, help="Start over in an output folder that already holds a run.")
@click.option("--save-steps", type=int, help="Checkpoint every N optimiser steps.")
@click.option("--eval-steps", type=int, help="Evaluate every N optimiser steps.")
@click.option("--report-to", multiple=True, help="Extra logger (tensorboard).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Set any config key, e.g. --set method.r=16 --set data.text_column=sentence.")
def run(config_path: str | None, sets: tuple[str, ...], **flags: Any) -> None:
    """Fine-tune a model: tokenize, train, evaluate, and write the run folder."""
    from tunekit.runs.runner import run as run_training

    cfg = config_mod.load(config_path, overrides_from_flags(flags), list(sets))
    run_training(cfg, listeners=listeners())
