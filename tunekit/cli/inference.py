"""``tunekit eval``, ``predict``, ``generate`` and ``chat``: use a finished run folder.

Every command loads the run with ``tunekit.runs.loading.load_run`` (base model + task head + trained
method weights) and talks to the restored task job, so it works for every task that implements
``encode``/``evaluate``/``predict`` (and ``generate`` for the causal-lm commands).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from tunekit.cli import cli, console
from tunekit.errors import UsageError
from tunekit.protocols import optional
from tunekit.tasks.protocol import JOB_OPTIONAL

RUN_OPTION = click.option("--run", "run_dir", required=True, type=click.Path(file_okay=False),
                          help="Run folder written by `tunekit run`.")
QUANTIZE_OPTION = click.option("--quantize", default=None,
                               help="Load the base quantized (e.g. int8); default: as the run was trained.")


def _load(run_dir: str, quantize: str | None) -> Any:
    from tunekit.runs.loading import load_run

    with console.status(f"loading {run_dir} ..."):
        return load_run(run_dir, quantize=quantize)


def _set_options(job: Any, **values: Any) -> None:
    options = optional(job, "options", JOB_OPTIONAL)
    for key, value in values.items():
        if value is None:
            continue
        if options is None or not hasattr(options, key):
            raise UsageError(f"--{key.replace('_', '-')} does not apply to this run's task; drop it.")
        setattr(options, key, value)


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return str(value)


@cli.command("eval")
@RUN_OPTION
@click.option("--data", "data_path", required=True, help="Labelled data file (or dataset name) to score.")
@click.option("--batch-size", type=int, default=None, help="Examples per batch (default: the run's batch size).")
@click.option("--max-samples", type=int, default=None, help="Score only the first N rows.")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as one JSON object.")
@QUANTIZE_OPTION
def eval_command(run_dir: str, data_path: str, batch_size: int | None, max_samples: int | None, as_json: bool,
                 quantize: str | None) -> None:
    """Score a trained run on a labelled data file with its task's metrics."""
    from tunekit.data import read_dataset
    from tunekit.tasks import rows

    if max_samples is not None and max_samples <= 0:
        raise UsageError(f"--max-samples must be positive, not {max_samples}.")
    if batch_size is not None and batch_size <= 0:
        raise UsageError(f"--batch-size must be positive, not {batch_size}.")
    loaded = _load(run_dir, quantize)
    job = loaded.job
    data = rows.limit(read_dataset(data_path, loaded.config.data), max_samples)
    encode = getattr(job, "encode", None)
    if encode is None:
        raise UsageError(f"the task {loaded.config.task_name!r} cannot score new data (its job has no encode()).")
    job.eval_dataset = encode(data)
    size = batch_size or loaded.config.training.batch_size
    features = job.eval_dataset
    batches = (job.collate([features[j] for j in range(i, min(i + size, len(features)))])
               for i in range(0, len(features), size))
    with console.status(f"evaluating {len(features)} examples ..."):
        metrics = {k: float(v) for k, v in job.evaluate(loaded.model, batches).items()}
    if as_json:
        click.echo(json.dumps(metrics, sort_keys=True))
        return
    for key, value in sorted(metrics.items()):
        console.print(f"{key:<32} {value:.4f}", highlight=False)


def _prediction_inputs(job: Any, loaded: Any, data_path: str | None, texts: tuple[str, ...],
                       context: str | None) -> list[Any]:
    if data_path and texts:
        raise UsageError("give either --data FILE or texts on the command line, not both.")
    if data_path:
        from tunekit.data import read_dataset

        return [dict(r) for r in read_dataset(data_path, loaded.config.data)]
    if not texts:
        raise UsageError("nothing to predict: give --data FILE or one or more texts.")
    if context is not None:
        if Path(context).is_file():
            try:
                context = Path(context).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                reason = "it is not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else exc.strerror
                raise UsageError(f"cannot read the --context file {context!r} ({reason}); give a UTF-8 text file.") from None
        return [(text, context) for text in texts]
    if optional(job, "needs_context", JOB_OPTIONAL):
        raise UsageError(f"{loaded.config.task_name} needs a context: add --context TEXT (or a file holding it) "
                         "to pair with each text.")
    return list(texts)


SHOWN_FIELDS = ("id", "question", "text", "sentence", "prompt", "instruction", "tokens")


def _shown_input(item: Any) -> Any:
    """What a prediction line repeats of its input: texts whole, records by their short identifying fields."""
    if isinstance(item, tuple):
        return {"question": item[0]}
    if isinstance(item, dict):
        shown = {k: item[k] for k in SHOWN_FIELDS if k in item}
        return shown or item
    return item


@cli.command("predict")
@RUN_OPTION
@click.option("--data", "data_path", default=None, help="File (or dataset name) whose rows to predict.")
@click.option("--context", default=None, help="Question answering: the context text (or a file holding it).")
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None,
              help="Write JSON lines to this file instead of the terminal.")
@QUANTIZE_OPTION
@click.argument("texts", nargs=-1)
def predict_command(run_dir: str, data_path: str | None, context: str | None, output: str | None,
                    quantize: str | None, texts: tuple[str, ...]) -> None:
    """Predict with a trained run: one JSON line per input (texts, or the rows of --data)."""
    if output and not Path(output).resolve().parent.is_dir():
        raise UsageError(f"cannot write predictions to {output!r}: its folder does not exist; choose another --output.")
    loaded = _load(run_dir, quantize)
    inputs = _prediction_inputs(loaded.job, loaded, data_path, texts, context)
    with console.status(f"predicting {len(inputs)} inputs ..."):
        predictions = loaded.job.predict(loaded.model, inputs)
    lines = []
    for item, pred in zip(inputs, predictions, strict=True):
        record = {"input": _shown_input(item)}
        record.update(pred if isinstance(pred, dict) else {"output": pred})
        lines.append(json.dumps(record, ensure_ascii=False, default=_json_default))
    if output:
        try:
            Path(output).write_text("\n".join(lines) + "\n", encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot write predictions to {output!r} ({exc.strerror}); choose another --output.") from None
        console.print(f"wrote {len(lines)} predictions to {output}", highlight=False)
    else:
        for line in lines:
            click.echo(line)


def _generator(loaded: Any) -> Any:
    job = loaded.job
    if not callable(optional(job, "generate", JOB_OPTIONAL)):
        raise UsageError(
            f"this run's task {loaded.config.task_name!r} does not generate text; generate and chat need a run of a "
            "generating task such as causal-lm or seq2seq (use `tunekit predict` for the others)."
        )
    return job


GEN_OPTIONS = [
    click.option("--max-new-tokens", type=int, default=None, help="Most tokens per answer (default: the task's)."),
    click.option("--temperature", type=float, default=None, help="Sampling temperature; 0 is greedy."),
    click.option("--top-p", type=float, default=None, help="Nucleus sampling threshold."),
]


def _gen_options(fn: Any) -> Any:
    for opt in reversed(GEN_OPTIONS):
        fn = opt(fn)
    return fn


def _check_gen(max_new_tokens: int | None, temperature: float | None, top_p: float | None) -> None:
    if max_new_tokens is not None and max_new_tokens <= 0:
        raise UsageError(f"--max-new-tokens must be positive, not {max_new_tokens}.")
    if temperature is not None and temperature < 0:
        raise UsageError(f"--temperature must not be negative, not {temperature}.")
    if top_p is not None and not 0 < top_p <= 1:
        raise UsageError(f"--top-p must be in (0, 1], not {top_p}.")


@cli.command("generate")
@RUN_OPTION
@click.option("--prompt", "-p", required=True, multiple=True, help="Prompt text (repeat for several).")
@_gen_options
@QUANTIZE_OPTION
def generate_command(run_dir: str, prompt: tuple[str, ...], max_new_tokens: int | None, temperature: float | None,
                     top_p: float | None, quantize: str | None) -> None:
    """Generate answers to prompts with a trained causal-lm or seq2seq run (same prompt layout as training)."""
    _check_gen(max_new_tokens, temperature, top_p)
    loaded = _load(run_dir, quantize)
    job = _generator(loaded)
    _set_options(job, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p)
    with console.status("generating ..."):
        answers = job.predict(loaded.model, list(prompt))
    for text in answers:
        click.echo(text)


@cli.command("chat")
@RUN_OPTION
@click.option("--system", default=None, help="System message for the conversation.")
@_gen_options
@QUANTIZE_OPTION
def chat_command(run_dir: str, system: str | None, max_new_tokens: int | None, temperature: float | None,
                 top_p: float | None, quantize: str | None) -> None:
    """Talk to a trained causal-lm run. An empty line, `exit` or Ctrl-D ends; `/reset` starts over."""
    _check_gen(max_new_tokens, temperature, top_p)
    loaded = _load(run_dir, quantize)
    job = _generator(loaded)
    _set_options(job, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p)
    start = [{"role": "system", "content": system}] if system else []
    history: list[dict[str, str]] = list(start)
    console.print("chat: type a message (empty line or `exit` ends, `/reset` clears the history)", highlight=False)
    while True:
        try:
            text = click.prompt("you", default="", show_default=False, prompt_suffix="> ")
        except (EOFError, click.exceptions.Abort):
            break
        if text.strip() in ("", "exit", "quit", "/exit"):
            break
        if text.strip() == "/reset":
            history = list(start)
            continue
        history.append({"role": "user", "content": text})
        reply = job.generate(loaded.model, [history])[0]
        history.append({"role": "assistant", "content": reply})
        console.print(f"[bold]model>[/] {reply}", highlight=False)
