"""``tunekit export``: write a run as one standalone transformers model folder (adapter merged in)."""

from __future__ import annotations

from pathlib import Path

import click

from tunekit.cli import cli, console
from tunekit.errors import MethodError, UsageError


@cli.command()
@click.option("--run", "run_dir", required=True, type=click.Path(file_okay=False), help="Run folder to export.")
@click.option("--output", "-o", required=True, type=click.Path(), help="Folder to write the merged model into.")
@click.option("--dequantize", is_flag=True,
              help="For a run trained on an int8 base: dequantize the base, add the adapter, save a float model.")
def export(run_dir: str, output: str, dequantize: bool) -> None:
    """Merge a run's adapter into its base weights and save a plain model folder (loads without tunekit)."""
    from tunekit.merge import merged_float_model
    from tunekit.models import save_plain_folder
    from tunekit.plugins import registries
    from tunekit.runner import load_run

    out = Path(output)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"export folder {output!r} already exists and is not empty; choose a new --output.")
    loaded = load_run(run_dir)
    if loaded.config.model.quantize and not dequantize:
        raise MethodError(
            f"run {run_dir!r} was trained on a {loaded.config.model.quantize} base; merging into quantized weights "
            "would round the adapter away, so pass --dequantize to write a merged float model instead."
        )
    method = registries().methods.get(loaded.config.method_name)
    # A method that trains the base weights (full fine-tuning) has nothing to merge.
    model = loaded.model if getattr(method, "trains_base_weights", False) else merged_float_model(loaded.model, loaded.applied)
    save_plain_folder(model, loaded.tokenizer, out)  # the weights are float now
    console.print(f"wrote a merged model to {out}", highlight=False)
