"""``tunekit export``: write a run as a transformers folder, a GGUF file (llama.cpp, ollama) or an ONNX model.

The work is done in ``tunekit.exports``; this command only reads the options and prints what was written.
"""

from __future__ import annotations

import click

from tunekit.cli import cli, console


@cli.command()
@click.option("--run", "run_dir", required=True, type=click.Path(file_okay=False), help="Run folder to export.")
@click.option("--output", "-o", required=True, type=click.Path(), help="Folder to write the export into (new or empty).")
@click.option("--format", "fmt", default="hf", show_default=True,
              help="hf: a transformers folder; gguf: model.gguf for llama.cpp / ollama (Llama causal-LM runs); "
                   "onnx: model.onnx for ONNX Runtime (classification, token-classification, QA runs).")
@click.option("--dtype", default="f16", show_default=True,
              help="GGUF weight type: f32, f16 or q8_0 (norms stay f32); ignored by the other formats.")
@click.option("--dequantize", is_flag=True,
              help="For a run trained on a quantized base (int8, nf4, fp4): dequantize it, add the adapter, save a float model.")
def export(run_dir: str, output: str, fmt: str, dtype: str, dequantize: bool) -> None:
    """Save a run as a standalone model (adapter merged in, or the model as trained); loads without tunekit."""
    from tunekit.exports import export_run

    what = export_run(run_dir, output, fmt, dtype=dtype, dequantize=dequantize)
    console.print(f"wrote {what}", highlight=False)
