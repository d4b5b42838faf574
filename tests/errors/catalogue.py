"""The catalogue of bad inputs: what the user did, the command, the exit code, the message and the fix.

``test_error_catalogue.py`` runs every case through the CLI (and, where the input is not a command-line
flag, through ``tunekit.run``); ``docs/troubleshooting.md`` is generated from the same table
(``python -m tests.errors.catalogue``), and a test keeps the two identical.

Placeholders in ``args``: ``{bert}``, ``{gpt2}``, ``{llama}``, ``{distilbert}`` (tiny model folders),
``{noweights}``, ``{badconfig}``, ``{smallvocab}`` (broken model folders),
``{data}`` (the folder of test files), ``{out}`` (the output folder of the case).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tunekit.errors import CheckpointError, ConfigError, DataError, MethodError, UnknownNameError, UsageError

DOC = Path(__file__).resolve().parents[2] / "docs" / "troubleshooting.md"


@dataclass(frozen=True)
class Case:
    id: str
    section: str
    title: str
    """What the user did, as they would describe it."""
    args: tuple[str, ...]
    code: int
    phrase: str
    """A part of the one-line message that must appear (case-insensitive)."""
    fix: str
    error: type | None = None
    """The tunekit error class the Python API raises (None: a command-line-only mistake)."""
    needs_task: str | None = None
    setup: str | None = None
    """``finished`` (the output folder is a copy of a finished run with checkpoints),
    ``finished_without_checkpoints``, ``corrupt`` (a damaged newest checkpoint), ``damaged_adapter``, ``not_root`` (skip when
    running as root), ``proc`` (needs /proc)."""
    subprocess: bool = False
    """Also run through ``python -m tunekit`` in a subprocess."""


def seqcls(*extra: str) -> tuple[str, ...]:
    return ("run", "--task", "sequence-classification", "--model", "{bert}", "--max-steps", "1",
            "--batch-size", "4", *extra)


def trained(*extra: str) -> tuple[str, ...]:
    """The arguments of the session's finished run (see the ``finished_run`` fixture) plus ``extra``."""
    return ("run", "--task", "sequence-classification", "--method", "lora", "--model", "{bert}",
            "--data", "{data}/train.csv", "--max-steps", "2", "--save-steps", "1", "--batch-size", "4",
            "--set", "training.eval_each_epoch=false", *extra)


TRAIN = ("--data", "{data}/train.csv")

DATA = "Data files"
NAMES = "Names of plugins"
OPTIONS = "Method and training options"
OUTPUT = "Output folder, resume and checkpoints"
CONFIG = "Configuration files and flags"

CASES: list[Case] = [
    # ---- data files
    Case("data-missing", DATA, "The data file does not exist", seqcls("--data", "{data}/nope.csv"), 2,
         "does not exist", "Check the path given to `--data` / `--val-data` (relative paths start in the "
         "current folder).", DataError),
    Case("data-empty", DATA, "The data file is empty", seqcls("--data", "{data}/empty.csv"), 2, "is empty",
         "Give a file with at least one row.", DataError),
    Case("data-header-only", DATA, "The data file has a header but no rows", seqcls("--data", "{data}/header_only.csv"),
         2, "no rows", "Add data rows under the header.", DataError),
    Case("data-folder", DATA, "`--data` names a folder that is not a saved dataset", seqcls("--data", "{data}/a_folder.csv"),
         2, "not a saved Hugging Face dataset", "Point `--data` at a file, or at a folder written by "
         "`Dataset.save_to_disk`.", DataError),
    Case("data-broken-symlink", DATA, "`--data` is a symbolic link to nothing", seqcls("--data", "{data}/broken.csv"),
         2, "does not exist", "Fix the link or point at the real file.", DataError),
    Case("data-unreadable", DATA, "The data file cannot be read (permissions)", seqcls("--data", "{data}/unreadable.csv"),
         2, "cannot be read", "Make the file readable (`chmod u+r FILE`).", DataError, setup="not_root"),
    Case("data-not-utf8", DATA, "The data file is not UTF-8 text", seqcls("--data", "{data}/latin1.csv"), 2,
         "is not UTF-8 text", "Save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`).", DataError, subprocess=True),
    Case("csv-wrong-delimiter", DATA, "A .csv file separated by semicolons", seqcls("--data", "{data}/semicolon.csv"), 2,
         "look separated by ';'", "Save it with commas, or tabs as a .tsv file.", DataError),
    Case("tsv-wrong-delimiter", DATA, "A .tsv file separated by commas", seqcls("--data", "{data}/commas.tsv"), 2,
         "look separated by ','", "Rename it to .csv, or save it with tabs.", DataError),
    Case("column-not-found", DATA, "No column looks like the text column",
         seqcls("--data", "{data}/other_columns.csv"), 2, "could not tell which column holds the text",
         "Name the columns with `--set data.text_column=NAME` (and `data.label_column`).", DataError),
    Case("column-named-absent", DATA, "`data.text_column` names a column the file does not have",
         seqcls(*TRAIN, "--set", "data.text_column=review"), 2, "has no text column 'review'",
         "Use one of the column names the message lists.", DataError),
    Case("validation-columns", DATA, "The validation file has other columns than the training file",
         seqcls(*TRAIN, "--val-data", "{data}/val_other_columns.csv"), 2, "validation data has no column",
         "Give the validation file the same columns as the training file.", DataError),
    Case("validation-new-label", DATA, "The validation file has a label the training set never had",
         seqcls(*TRAIN, "--val-data", "{data}/val_new_label.csv"), 2, "which the training data never had",
         "Fix the label, or add training examples of it.", DataError),
    Case("single-class", DATA, "Every training label is the same", seqcls("--data", "{data}/one_class.csv"), 2,
         "only one class", "Classification needs two or more labels; check `data.label_column`.", DataError),
    Case("json-not-records", DATA, "A JSON file that is not a list of records",
         seqcls("--data", "{data}/not_records.json"), 2, "is not a JSON list of records",
         "Write `[{...}, {...}]`, one object per example.", DataError),
    Case("jsonl-bad-line", DATA, "A JSON-lines file with a broken line", seqcls("--data", "{data}/bad_line.jsonl"), 2,
         "line 2 is not valid JSON", "Fix or remove the line the message names.", DataError),
    Case("parquet-garbage", DATA, "A .parquet file that is not Parquet", seqcls("--data", "{data}/garbage.parquet"), 2,
         "is not a readable Parquet file", "Write the table again with pandas or pyarrow.", DataError),
    Case("qa-not-squad", DATA, "Question answering on a JSON file that is not SQuAD",
         ("run", "--task", "question-answering", "--model", "{bert}", "--max-steps", "1", "--data",
          "{data}/not_squad.json"), 2, "no answers column",
         "Give a SQuAD JSON file, or records with question, context and answers.", DataError,
         needs_task="question-answering"),
    Case("conll-ragged", DATA, "A CoNLL file with a line that has no label column",
         ("run", "--task", "token-classification", "--model", "{bert}", "--max-steps", "1", "--data",
          "{data}/ragged.conll"), 2, "line 2 has a token but no label column",
         "Write `TOKEN ... LABEL` on every line, with a blank line between sentences.", DataError,
         needs_task="token-classification"),
    Case("causal-lm-shape", DATA, "Causal-LM records with no prompt, response, chat or text field",
         ("run", "--task", "causal-lm", "--model", "{llama}", "--max-steps", "1", "--data", "{data}/no_text.json"),
         2, "cannot tell the record shape", "Rename the fields (instruction/output, prompt/response, messages, "
         "text) or set `data.text_column` and `data.label_column`.", DataError),
    # ---- names
    Case("unknown-method", NAMES, "A misspelt method name", seqcls(*TRAIN, "--method", "lorra"), 2,
         "did you mean 'lora'", "Use a name from `tunekit methods`.", UnknownNameError),
    Case("unknown-task", NAMES, "A misspelt task name",
         ("run", "--task", "sequence-clasification", "--model", "{bert}", *TRAIN), 2,
         "did you mean 'sequence-classification'", "Use a name from `tunekit tasks`.", UnknownNameError),
    Case("unknown-model", NAMES, "A model alias that does not exist (and is no folder)",
         ("run", "--task", "sequence-classification", "--model", "minilm", *TRAIN), 2, "did you mean 'minilm-l6'",
         "Use an alias from `tunekit models`, a model folder, or a hub id `org/name`.", UsageError),
    Case("model-folder-without-config", NAMES, "`--model` is a folder without config.json",
         ("run", "--task", "sequence-classification", "--model", "{data}", *TRAIN), 2, "has no config.json",
         "Point `--model` at a Hugging Face model folder.", UsageError),
    Case("model-folder-without-weights", NAMES, "`--model` is a folder without weights",
         ("run", "--task", "sequence-classification", "--model", "{noweights}", *TRAIN), 2, "cannot load the weights",
         "Point `--model` at a complete model folder (config.json, model.safetensors, tokenizer files).", UsageError),
    Case("model-config-not-json", NAMES, "The model folder's config.json is not valid JSON",
         ("run", "--task", "sequence-classification", "--model", "{badconfig}", *TRAIN), 2, "cannot load the",
         "Repair or re-download the model folder.", UsageError),
    Case("tokenizer-not-the-models", NAMES, "The model folder's tokenizer does not belong to its weights",
         ("run", "--task", "sequence-classification", "--model", "{smallvocab}", *TRAIN), 2,
         "the tokenizer does not belong to these weights", "Use the tokenizer saved with the model.", UsageError),
    Case("unknown-format", NAMES, "A misspelt dataset format", seqcls(*TRAIN, "--set", "data.format=cvs"), 2,
         "did you mean 'csv'", "Use a format listed by `tunekit datasets`, or leave `data.format` out to pick by extension.",
         UnknownNameError),
    Case("unknown-quantizer", NAMES, "A quantizer that does not exist", seqcls(*TRAIN, "--quantize", "int4"), 2,
         "did you mean 'int8'", "Use a quantizer listed by `tunekit plugins`.", UnknownNameError),
    Case("unknown-command", NAMES, "A misspelt command", ("runn",), 2, "no such command 'runn'",
         "Run `tunekit --help` for the commands."),
    Case("unknown-tracker", NAMES, "A tracker name accelerate does not know", seqcls(*TRAIN, "--report-to", "wandbb"), 2,
         "unknown tracker 'wandbb'", "Use a name the message lists (`all`: every installed one).", ConfigError),
    # ---- options
    Case("lora-rank-zero", OPTIONS, "LoRA with rank 0", seqcls(*TRAIN, "--method", "lora", "--set", "method.r=0"), 2,
         "method.r must be at least 1", "Give a rank of 1 or more (8 is the usual start).", ConfigError),
    Case("lora-rank-text", OPTIONS, "A rank that is not a number",
         seqcls(*TRAIN, "--method", "lora", "--set", "method.r=eight"), 2, "method.r must be a whole number",
         "Write the number: `--set method.r=8`.", ConfigError),
    Case("unknown-method-option", OPTIONS, "An option the method does not have",
         seqcls(*TRAIN, "--method", "lora", "--set", "method.rank=4"), 2, "unknown option method.rank",
         "Use an option listed by the message (or `tunekit methods`).", ConfigError),
    Case("reduction-too-large", OPTIONS, "A bottleneck reduction factor larger than the hidden size",
         seqcls(*TRAIN, "--method", "pfeiffer", "--set", "method.reduction_factor=64"), 2, "leaves no bottleneck",
         "Use a reduction factor of at most the model's hidden size (16 is usual).", MethodError),
    Case("reduction-too-large-gpt2", OPTIONS, "Houlsby adapters on GPT-2 with a reduction factor above its width",
         ("run", "--task", "sequence-classification", "--model", "{gpt2}", *TRAIN, "--method", "houlsby",
          "--set", "method.reduction_factor=33"), 2, "leaves no bottleneck",
         "Use a reduction factor of at most the model's hidden size.", MethodError),
    Case("learning-rate-negative", OPTIONS, "A negative learning rate", seqcls(*TRAIN, "--lr", "-0.001"), 2,
         "training.lr must be positive", "Give a positive learning rate, e.g. `--lr 2e-4`.", ConfigError),
    Case("learning-rate-text", OPTIONS, "A learning rate that is not a number",
         seqcls(*TRAIN, "--set", "training.lr=fast"), 2, "training.lr must be a number",
         "Write a number such as `2e-4`.", ConfigError),
    Case("learning-rate-infinite", OPTIONS, "An infinite or NaN learning rate",
         seqcls(*TRAIN, "--set", "training.lr=.inf"), 2, "training.lr must be a finite number",
         "Write a finite number such as `2e-4`.", ConfigError),
    Case("epochs-zero", OPTIONS, "Zero epochs", ("run", "--task", "sequence-classification", "--model", "{bert}",
                                                 *TRAIN, "--epochs", "0"), 2, "training.epochs must be positive",
         "Give a positive number of epochs (fractions such as 0.5 work).", ConfigError),
    Case("epochs-text", OPTIONS, "`--epochs` that is not a number", ("run", *TRAIN, "--epochs", "three"), 2,
         "invalid value for '--epochs'", "Write a number: `--epochs 3`.", subprocess=True),
    Case("metric-for-best-unknown", OPTIONS, "`training.metric_for_best` names a metric the task does not report "
         "(found at the first evaluation, after the run folder was made: it is removed again)",
         seqcls(*TRAIN, "--set", "training.metric_for_best=eval_bogus", "--eval-steps", "1"), 2,
         "is not among the evaluation metrics", "Use one of the metrics the message lists.", ConfigError),
    Case("heldout-not-prompts", DATA, "`data.heldout` is a file without prompt/keywords records",
         seqcls(*TRAIN, "--set", "data.heldout={data}/train.csv"), 2, "needs a `prompt` string",
         "Give a JSON-lines file of {prompt, response, keywords} records.", DataError),
    Case("batch-size-zero", OPTIONS, "A batch size of zero", seqcls(*TRAIN, "--set", "training.batch_size=0"), 2,
         "training.batch_size must be positive", "Give a batch size of 1 or more.", ConfigError),
    Case("target-modules-none", OPTIONS, "LoRA target modules that match no layer (BERT names on Llama)",
         ("run", "--task", "causal-lm", "--model", "{llama}", "--data", "{data}/chat.jsonl", "--max-steps", "1",
          "--method", "lora", "--set", "method.target_modules=query,value"), 2, "matches no linear layer",
         "Use layer names of this model; the message lists some (Llama: q_proj, v_proj, ...).", MethodError),
    Case("target-modules-bad-regex", OPTIONS, "LoRA target modules given as a broken regex",
         seqcls(*TRAIN, "--method", "lora", "--set", "method.target_modules=(query"), 2, "is invalid",
         "Fix the regular expression (it must match the full module name).", MethodError),
    Case("prefix-unsupported-model", OPTIONS, "Prefix tuning on an architecture it cannot handle (DistilBERT)",
         ("run", "--task", "sequence-classification", "--model", "{distilbert}", *TRAIN, "--max-steps", "1",
          "--method", "prefix-tuning"), 2, "do not know the 'distilbert' architecture",
         "Use a BERT/RoBERTa, GPT-2 or Llama-family model, or another method.", MethodError),
    Case("int8-full", OPTIONS, "8-bit quantization with full fine-tuning",
         seqcls(*TRAIN, "--method", "full", "--quantize", "int8"), 2, "cannot be trained in int8",
         "Drop `--quantize`, or use a method that freezes the base (lora, houlsby, ...).", UsageError),
    Case("nf4-full", OPTIONS, "4-bit quantization with full fine-tuning",
         seqcls(*TRAIN, "--method", "full", "--quantize", "nf4"), 2, "cannot be trained in nf4",
         "Drop `--quantize`, or use a method that freezes the base (lora, houlsby, ...).", UsageError),
    Case("quantize-option-unknown", OPTIONS, "A quantizer option that does not exist",
         seqcls(*TRAIN, "--quantize", "nf4", "--set", "model.quantize_options.dtype=bfloat16"), 2,
         "unknown option model.quantize_options.dtype", "Use `compute_dtype` or `double_quant` (see "
         "docs/training.md); `int8` takes no options.", ConfigError),
    # ---- output, resume, checkpoints
    Case("output-is-file", OUTPUT, "`--output` is an existing file", seqcls(*TRAIN, "--output", "{data}/train.csv"), 2,
         "is a file", "Choose a folder with `--output`.", UsageError),
    Case("output-under-file", OUTPUT, "`--output` lies inside a file", seqcls(*TRAIN, "--output", "{data}/a_file/run"),
         2, "is not a folder", "Choose an output path whose parents are folders.", UsageError),
    Case("output-not-writable", OUTPUT, "`--output` cannot be created (read-only or pseudo file system)",
         seqcls(*TRAIN, "--output", "/proc/tunekit-run"), 2, "is not writable",
         "Choose an output folder you can write to.", UsageError, setup="proc"),
    Case("output-holds-run", OUTPUT, "Training again into a folder that holds a run", trained(), 1,
         "already holds a run", "Pass `--resume` to continue it, `--overwrite` to start over, or a new `--output`.",
         CheckpointError, setup="finished", subprocess=True),
    Case("resume-other-config", OUTPUT, "Resuming a folder made by a different configuration",
         trained("--resume", "--lr", "0.05"), 1, "different configuration",
         "Resume with the settings the folder was made with (see its config.yaml), or choose a new `--output`.",
         CheckpointError, setup="finished"),
    Case("resume-finished-run", OUTPUT, "`--resume` on a finished run that kept no step checkpoints",
         trained("--resume"), 1, "nothing to resume",
         "Pass `--overwrite` to train it again, or choose a new `--output`; keep checkpoints with `--save-steps`.",
         CheckpointError, setup="finished_without_checkpoints"),
    Case("resume-corrupt-checkpoint", OUTPUT, "Resuming from a damaged checkpoint", trained("--resume"), 1,
         "no readable trainable.safetensors",
         "Delete the damaged `checkpoints/step-N` folder; `--resume` then continues from the one before.",
         CheckpointError, setup="corrupt"),
    Case("predict-output-missing-folder", OUTPUT, "`tunekit predict --output` in a folder that does not exist",
         ("predict", "--run", "{out}", "--output", "{data}/a_file/predictions.jsonl", "the good movie"), 2,
         "cannot write predictions", "Choose an `--output` file in an existing folder.", setup="finished"),
    Case("predict-not-a-run", OUTPUT, "`tunekit predict --run` on a folder that is not a run folder",
         ("predict", "--run", "{data}", "the good movie"), 2, "is not a tunekit run folder",
         "Pass the folder `tunekit run` wrote (it holds config.yaml and adapter/)."),
    Case("predict-context-not-text", OUTPUT, "`tunekit predict --context` names a file that is not UTF-8 text",
         ("predict", "--run", "{out}", "--context", "{data}/latin1.csv", "who?"), 2, "cannot read the --context file",
         "Save the context as UTF-8 text, or pass the text itself.", setup="finished"),
    Case("eval-damaged-adapter", OUTPUT, "`tunekit eval` on a run whose adapter file is damaged",
         ("eval", "--run", "{out}", "--data", "{data}/train.csv"), 1, "is not a readable safetensors file",
         "Copy the run folder again, or train the run again.", setup="damaged_adapter"),
    Case("init-from-not-a-run", OUTPUT, "`--init-from` names a folder that is not a run",
         seqcls(*TRAIN, "--init-from", "{data}"), 2, "is not a tunekit run folder",
         "Pass the folder a finished `tunekit run` wrote.", UsageError),
    Case("report-not-a-run", OUTPUT, "`tunekit report` on a folder that is not a run", ("report", "{data}"), 2,
         "is not a tunekit run folder", "Pass run folders (or a sweep folder) that `tunekit run` / `tunekit sweep` wrote."),
    # ---- configuration
    Case("yaml-syntax", CONFIG, "A config file that is not valid YAML", ("run", "--config", "{data}/bad_syntax.yaml"),
         2, "is not valid YAML at line", "Fix the YAML syntax at the line named.", ConfigError),
    Case("yaml-unknown-section", CONFIG, "A config file with an unknown section",
         ("run", "--config", "{data}/unknown_section.yaml"), 2, "unknown config section 'modle'",
         "Use the sections model, task, data, method, training, output.", ConfigError),
    Case("yaml-unknown-key", CONFIG, "A config file with an unknown key", ("run", "--config", "{data}/unknown_key.yaml"),
         2, "did you mean training.lr", "Use a key from `tunekit run --help` (docs/configuration.md).", ConfigError),
    Case("yaml-python-tag", CONFIG, "A config file with a Python object tag", ("run", "--config", "{data}/python_tag.yaml"),
         2, "YAML tag tunekit does not accept", "Write plain values; tunekit never builds objects from YAML.",
         ConfigError),
    Case("yaml-not-mapping", CONFIG, "A config file that is a list, not sections", ("run", "--config", "{data}/list.yaml"),
         2, "must hold a mapping of sections", "Write `model:`, `task:`, ... sections at the top level.", ConfigError),
    Case("config-missing", CONFIG, "`--config` names a file that does not exist", ("run", "--config", "{data}/nope.yaml"),
         2, "does not exist", "Check the path given to `--config`.", ConfigError),
    Case("set-without-value", CONFIG, "`--set` without `=VALUE`", seqcls(*TRAIN, "--set", "method.r"), 2,
         "write it as KEY=VALUE", "Write `--set section.key=value`."),
    Case("set-unknown-section", CONFIG, "`--set` with a key outside the config sections",
         seqcls(*TRAIN, "--set", "lora.r=4"), 2, "keys look like SECTION.KEY", "Start the key with a section, e.g. "
         "`method.r=4`."),
    Case("unknown-flag", CONFIG, "A flag `tunekit run` does not have", seqcls(*TRAIN, "--rank", "4"), 2,
         "no such option '--rank'", "See `tunekit run --help`; method options go through `--set method.KEY=VALUE`."),
]


def render() -> str:
    """docs/troubleshooting.md, generated from CASES."""
    lines = [
        "# Troubleshooting",
        "",
        "<!-- Generated from tests/errors/catalogue.py by `python -m tests.errors.catalogue`; do not edit by hand. -->",
        "",
        "Every mistake tunekit can detect ends with one line on stderr that starts with `error:` and says what",
        "is wrong and how to fix it. There is no traceback unless you pass `--debug` (or set `TUNEKIT_DEBUG=1`).",
        "",
        "Exit codes: **2** — the input cannot work (a bad name, option, file or combination; nothing was",
        "trained); **1** — a failure while running (an existing run folder, a damaged checkpoint, ...);",
        "**130** — interrupted with Ctrl-C. In the Python API the same problems raise `tunekit.UsageError`",
        "(and its subclasses `ConfigError`, `UnknownNameError`, `DataError`, `MethodError`) or",
        "`tunekit.TunekitError` (`CheckpointError`, ...); `exc.exit_code` is the code above.",
        "",
        "A run that fails before its first checkpoint leaves no output folder behind; a run that already",
        "had checkpoints keeps them, so `--resume` can continue it.",
        "",
        "Each entry below is a case of the test suite (`tests/errors`), so the messages quoted are the ones",
        "tunekit prints.",
        "",
        "## Interrupting a run",
        "",
        "| what happened | exit | message contains | what to do |",
        "|---|---|---|---|",
        "| Ctrl-C (SIGINT) during training | 130 | `rerun the same command with --resume` | The run wrote a "
        "checkpoint at the next step boundary; run the same command with `--resume`. A second Ctrl-C quits "
        "at once, without a new checkpoint. |",
        "| The process was killed (SIGKILL, out of memory, power loss) | — | — | Checkpoints are written "
        "atomically; `--resume` continues from the last complete one. |",
        "",
    ]
    sections: dict[str, list[Case]] = {}
    for case in CASES:
        sections.setdefault(case.section, []).append(case)
    for section, cases in sections.items():
        lines += [f"## {section}", "", "| what happened | exit | message contains | what to do |", "|---|---|---|---|"]
        for case in cases:
            phrase = case.phrase.replace("|", "\\|")
            lines.append(f"| {case.title} | {case.code} | `{phrase}` | {case.fix} |")
        lines.append("")
    lines += [
        "## Files from other people",
        "",
        "- Weights and adapters are read only from safetensors files; tunekit never unpickles a file you give it",
        "  (its own optimiser state is read back with `weights_only=True`).",
        "- `adapter_config.json` and run folders are validated before use: unknown keys, names that are not",
        "  modules, or `target_modules` that are neither a string nor a list end with `error:` and exit 1.",
        "- Config files are read with `yaml.safe_load`: tags such as `!!python/object` are refused.",
        "- `model.trust_remote_code` is off unless you set it yourself; a run folder cannot turn it on for",
        "  `tunekit eval` / `predict`.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    DOC.write_text(render(), encoding="utf-8")
    print(f"wrote {DOC}")
