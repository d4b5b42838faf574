"""``tunekit export``: write a run as one standalone transformers model folder.

A method that merges (``supports_merge``) is folded into the base weights; a method that trains in place
(``trains_in_place`` or ``trains_base_weights``: it only unfreezes modules) is written as the model it is.
"""

from __future__ import annotations

from pathlib import Path

import click

from tunekit.cli import cli, console
from tunekit.errors import MethodError, UsageError


@cli.command()
@click.option("--run", "run_dir", required=True, type=click.Path(file_okay=False), help="Run folder to export.")
@click.option("--output", "-o", required=True, type=click.Path(), help="Folder to write the merged model into.")
@click.option("--dequantize", is_flag=True,
              help="For a run trained on a quantized base (int8, nf4, fp4): dequantize it, add the adapter, save a float model.")
def export(run_dir: str, output: str, dequantize: bool) -> None:
    """Save a run as a plain model folder (adapter merged in, or the model as trained); loads without tunekit."""
    from tunekit.methods.merge import dequantize_model, merged_float_model
    from tunekit.methods.protocol import trains_in_place
    from tunekit.models import save_plain_folder
    from tunekit.plugins import registries
    from tunekit.runs.runner import load_run

    out = Path(output)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"export folder {output!r} already exists and is not empty; choose a new --output.")
    loaded = load_run(run_dir)
    if loaded.config.model.quantize and not dequantize:
        raise MethodError(
            f"run {run_dir!r} was trained on a {loaded.config.model.quantize} base; a plain folder of quantized "
            "weights would lose the training, so pass --dequantize to write a float model instead."
        )
    method = registries().methods.get(loaded.config.method_name)
    if trains_in_place(method):  # nothing separate to merge: the trained model is the result
        model = dequantize_model(loaded.model)
        what = "the trained model"
    else:
        model = merged_float_model(loaded.model, loaded.applied)
        what = "a merged model"
    save_plain_folder(model, loaded.tokenizer, out)  # the weights are float now
    console.print(f"wrote {what} to {out}", highlight=False)
