"""``tunekit report``: one self-contained HTML page for run folders (compared when several) and sweep folders."""

from __future__ import annotations

import click

from tunekit.cli import cli, console


@cli.command()
@click.argument("folders", nargs=-1, required=True, type=click.Path(file_okay=False))
@click.option("-o", "--output", type=click.Path(), default=None,
              help="The HTML file to write; default: FOLDER/report.html for one folder, ./report.html for several.")
def report(folders: tuple[str, ...], output: str | None) -> None:
    """Write one HTML report of run folders and sweep folders (no network needed to read it): what each run did, its curves, metrics and task details; several runs get one comparison table and overlaid curves."""
    from tunekit.report import write_report

    path = write_report(list(folders), output)
    console.print(f"wrote {path}", highlight=False, soft_wrap=True)
