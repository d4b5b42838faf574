"""``tunekit estimate``: predicted peak training memory of a model, method and batch shape (no weights read)."""

from __future__ import annotations

import json

import click
from rich.table import Table

from tunekit.cli import cli, console
from tunekit.errors import UsageError


def _mib(n: int) -> str:
    return f"{n / 2**20:,.0f} MiB"


def _method_options(pairs: tuple[str, ...]) -> dict[str, object]:
    """``--option r=16`` pairs as a mapping; values are read as YAML scalars (16, 0.1, true, query,value)."""
    import yaml

    out: dict[str, object] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--option takes KEY=VALUE, not {pair!r}; e.g. --option r=16.")
        out[key.strip()] = yaml.safe_load(raw)
    return out


@cli.command()
@click.option("--model", "-m", required=True,
              help="Model alias (see `tunekit models`), model folder, or a config.json (no weights needed).")
@click.option("--method", default="lora", show_default=True, help="Method name (see `tunekit methods`).")
@click.option("--option", "options", multiple=True, metavar="KEY=VALUE", help="A method option, e.g. r=16 (repeatable).")
@click.option("--task", type=click.Choice(["causal-lm", "classification"]), default=None,
              help="What the head computes; default: causal-lm for decoders, classification for encoders.")
@click.option("--quantize", default="none", show_default=True, help="Base storage: none, int8, nf4 or fp4.")
@click.option("--batch-size", "-b", type=int, default=16, show_default=True, help="Examples per batch.")
@click.option("--length", "-l", type=int, default=256, show_default=True, help="Tokens per example.")
@click.option("--gradient-checkpointing/--no-gradient-checkpointing", default=None,
              help="Recompute each block in backward (training.gradient_checkpointing); default: what a run does "
                   "by itself, on from batch x length >= 4096 tokens.")
@click.option("--precision", type=click.Choice(["fp32", "bf16"]), default="fp32", show_default=True,
              help="training.precision.")
@click.option("--full-logits", is_flag=True, help="Model a loss that holds the whole batch's logits (no chunking).")
@click.option("--json", "as_json", is_flag=True, help="Print the estimate as JSON.")
def estimate(model: str, method: str, options: tuple[str, ...], task: str | None, quantize: str, batch_size: int,
             length: int, gradient_checkpointing: bool | None, precision: str, full_logits: bool, as_json: bool) -> None:
    """Predict the peak memory of training MODEL with METHOD, split into weights, optimiser state, activations."""
    from tunekit import estimate as est
    from tunekit.engine.memory import AUTO_TOKENS

    if gradient_checkpointing is None:  # the run's own rule (training.gradient_checkpointing: null)
        gradient_checkpointing = batch_size * length >= AUTO_TOKENS

    settings = est.Settings(batch_size=batch_size, length=length, gradient_checkpointing=gradient_checkpointing,
                            precision=precision, quantize=quantize, task=task,
                            logits_chunk=None if full_logits else est.LOSS_CHUNK_TOKENS)
    result = est.estimate(model, method, settings, _method_options(options))
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
        return
    table = Table(title=f"{method} on {model}: batch {batch_size} x {length} tokens, {precision}, "
                        f"quantize {quantize}, checkpointing {'on' if gradient_checkpointing else 'off'}",
                  title_justify="left")
    table.add_column("part")
    table.add_column("memory", justify="right")
    table.add_column("what")
    q = f", {result.quantized_params:,} of them quantized" if result.quantized_params else ""
    rows = [
        ("weights", result.weights, f"{result.total_params - result.trainable_params:,} frozen parameters{q}"),
        ("trainable state", result.trainable_state, f"{result.trainable_params:,} parameters x (param, grad, 2 AdamW moments)"),
        ("activations", result.activations, f"{result.details['elements_per_token']:,} elements per token kept for backward"),
        ("allocator", result.allocator, "freed temporaries the CPU heap keeps (zero with checkpointing)"),
        ("logits", result.logits, "causal-LM loss (log-softmax and its gradients)" if result.logits else "none (small head)"),
        ("runtime", result.overhead, "python, torch, transformers, tokenizer and data"),
    ]
    for part, size, what in rows:
        table.add_row(part, _mib(size), what)
    table.add_row("[bold]peak[/]", f"[bold]{_mib(result.total)}[/]", f"about {result.total / 1e9:.1f} GB")
    console.print(table)
