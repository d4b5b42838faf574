"""``tunekit new-plugin NAME``: scaffold a method-plugin package (see ``tunekit.scaffold``)."""

from __future__ import annotations

import click

from tunekit.cli import cli, console
from tunekit.scaffold import PluginNames, scaffold_plugin


@cli.command("new-plugin")
@click.argument("name")
@click.option("--dir", "directory", default=".", show_default=True, type=click.Path(file_okay=False),
              help="Folder in which the package folder tunekit-NAME is created.")
def new_plugin(name: str, directory: str) -> None:
    """Create tunekit-NAME/: a method plugin with pyproject entry point, README and a passing test."""
    root = scaffold_plugin(name, directory)
    names = PluginNames.of(name)
    console.print(f"created {root}/ (distribution {names.distribution}, package {names.package})", highlight=False)
    console.print("next:", highlight=False)
    console.print(f"  pip install -e {root}", highlight=False)
    console.print(f"  tunekit methods            # lists {names.method}", highlight=False)
    console.print(f"  pytest {root}/tests", highlight=False)
