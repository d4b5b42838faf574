"""Listing commands: methods, tasks, datasets, models, quantizers, plugins."""

from __future__ import annotations

from collections.abc import Callable

import click
from rich.markup import escape
from rich.table import Table

from tunekit import options as opts
from tunekit.cli import cli, console
from tunekit.methods.protocol import METHOD_OPTIONAL
from tunekit.plugins import registries
from tunekit.protocols import optional
from tunekit.registry import Entry


def _options_cell(entry: Entry) -> str:
    cls = getattr(entry.obj, "options_class", None)
    rows = opts.describe(cls) if cls is not None else []
    return "\n".join(f"{name} = {default}" for name, default, _help in rows) or "-"


def _extensions_cell(entry: Entry) -> str:
    return ", ".join(getattr(entry.obj, "extensions", ())) or "-"


def _table(title: str, registry, extra: dict[str, Callable[[Entry], str]] | None = None) -> Table:
    """A table of registry entries: name, provider, description, plus ``extra`` columns."""
    table = Table(title=title, title_justify="left", show_lines=bool(extra))
    table.add_column("name", style="bold cyan", no_wrap=True)
    table.add_column("provider", no_wrap=True)
    table.add_column("description")
    for column in extra or {}:
        table.add_column(column)
    for entry in registry:
        cells = [entry.name, str(entry.provider), entry.description, *(f(entry) for f in (extra or {}).values())]
        table.add_row(*map(escape, cells))  # plugin text is shown verbatim, never read as rich markup
    return table


@cli.command()
@click.option("--verbose", "-v", is_flag=True, help="Also show each option's help text.")
def methods(verbose: bool) -> None:
    """List the parameter-efficient methods, their providers and options."""
    regs = registries()
    console.print(_table("methods", regs.methods, {"options (default)": _options_cell}))
    if verbose:
        for entry in regs.methods:
            cls = getattr(entry.obj, "options_class", None)
            if cls is None:
                continue
            lr = optional(entry.obj, "default_lr", METHOD_OPTIONAL)
            console.print(f"\n[bold]{escape(entry.name)}[/]" + (f"  (default training.lr {lr:g})" if lr else ""))
            for name, default, help_text in opts.describe(cls):
                # Help text is shown verbatim: "[query, intermediate]" is not rich markup.
                console.print(escape(f"  --set method.{name}=...  (default {default})  {help_text}"), highlight=False)


@cli.command()
def tasks() -> None:
    """List the tasks (heads, preprocessing, metrics)."""
    console.print(_table("tasks", registries().tasks, {"options (default)": _options_cell}))


@cli.command()
def datasets() -> None:
    """List the dataset formats tunekit can read."""
    regs = registries()
    console.print(_table("dataset formats", regs.dataset_formats, {"extensions": _extensions_cell}))


@cli.command()
def models() -> None:
    """List model aliases and quantizers (any local folder or hub id works too)."""
    regs = registries()
    console.print(_table("model aliases", regs.model_sources))
    console.print(_table("quantizers (--quantize)", regs.quantizers))


@cli.command()
@click.pass_context
def plugins(ctx: click.Context) -> None:
    """List plugins: loaded, failed (with the error) and blocked; --debug adds each failure's traceback."""
    table = Table(title="plugins", title_justify="left")
    for col in ("plugin", "distribution", "version", "state", "detail"):
        table.add_column(col)
    styles = {"loaded": "green", "failed": "bold red", "blocked": "yellow"}
    for p in registries().plugins:
        detail = p.error or ("built-in" if p.builtin else "")
        table.add_row(escape(p.name), escape(p.distribution), escape(p.version), f"[{styles[p.state]}]{p.state}[/]",
                      escape(detail))
    console.print(table)
    if (ctx.find_root().obj or {}).get("debug"):
        for p in registries().failures:
            console.print(f"\n[bold red]{escape(p.name)}[/] ({escape(p.distribution)}) failed:")
            console.print(escape(p.traceback or p.error), highlight=False, soft_wrap=True)
