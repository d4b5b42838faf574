"""The ``seq2seq`` task: summarisation and translation with encoder-decoder models (T5, BART, mT5, Marian).

The source text (with an optional ``task.source_prefix`` such as ``"summarize: "``) goes through the encoder;
the target text is learned by teacher forcing, the loss counting target tokens only (padding -> -100) and the
decoder's first input set by the model family. Evaluation reports ``eval_loss`` and scores generated outputs
(greedy or beam search) with ROUGE-1/2/L, BLEU, chrF and exact match (``tunekit.tasks.text_metrics``);
``task.metric`` picks the one that keeps the best checkpoint. ``predict`` and ``generate`` produce outputs for
new source texts from a run folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tunekit.builtins.tasks.seq2seq import columns
from tunekit.builtins.tasks.seq2seq.job import TASK_NAME, Seq2SeqJob
from tunekit.errors import DataError
from tunekit.hookspecs import hookimpl
from tunekit.options import check, option
from tunekit.tasks import pieces, rows, text_metrics
from tunekit.tasks.protocol import TaskContext

__all__ = ["Seq2Seq", "Seq2SeqJob", "Seq2SeqOptions"]


@dataclass
class Seq2SeqOptions:
    source_column: str | None = option(
        None, "Column holding the source text (default: data.text_column, else source/src/input/document/article/"
        "text/...). A dotted name reads a key of a mapping column, e.g. translation.en.")
    target_column: str | None = option(
        None, "Column holding the target text (default: data.label_column, else target/tgt/summary/highlights/"
        "output/...). A dotted name reads a key of a mapping column, e.g. translation.fr.")
    source_prefix: str = option("", "Text put before every source, e.g. 'summarize: ' or 'translate English to "
                                    "German: ' for T5.")
    max_source_length: int = option(512, "Longest source in tokens; longer ones are cut at the end.")
    max_target_length: int = option(128, "Longest target in tokens (end marker included); longer ones are cut.")
    num_beams: int = option(1, "Beams for generation (evaluation, predict, generate); 1 is greedy decoding.")
    max_new_tokens: int = option(128, "Most tokens generated per output.")
    metric: Literal["rougeL", "rouge1", "rouge2", "bleu", "chrf", "exact_match", "loss"] = option(
        "rougeL", "Evaluation metric that keeps the best checkpoint and that sweeps optimise (eval_<metric>).")
    generate_eval_samples: int | None = option(
        None, "Validation examples generated and scored at each evaluation (default: all; evaluation batches by "
        "length, so a bound takes the shortest sources); eval_loss always uses all.")
    predict_batch_size: int = option(16, "Sources generated together in `predict` and `generate`.")

    def validate(self) -> None:
        check(self.max_source_length > 1, f"task.max_source_length must be above 1, not {self.max_source_length}.")
        check(self.max_target_length > 1, f"task.max_target_length must be above 1, not {self.max_target_length}.")
        check(self.num_beams >= 1, f"task.num_beams must be at least 1, not {self.num_beams}.")
        check(self.max_new_tokens > 0, f"task.max_new_tokens must be positive, not {self.max_new_tokens}.")
        check(self.generate_eval_samples is None or self.generate_eval_samples > 0,
              "task.generate_eval_samples must be positive; omit it to generate for every validation example.")
        check(self.predict_batch_size > 0, "task.predict_batch_size must be positive.")


class Seq2Seq:
    """Encoder-decoder fine-tuning on source -> target text; eval_loss, ROUGE, BLEU, chrF, exact match."""

    name = TASK_NAME
    description = "Summarisation and translation with encoder-decoder models (T5, BART, Marian); ROUGE, BLEU, chrF."
    options_class = Seq2SeqOptions

    def prepare(self, ctx: TaskContext) -> Seq2SeqJob:
        if ctx.train is None:
            raise DataError("the seq2seq task needs training data; pass --data FILE.")
        options, data = ctx.options, ctx.data
        text_metrics.check_available()
        source = columns.resolve(ctx.train, _wanted(options.source_column, data, "text_column"),
                                 columns.SOURCE_COLUMNS, "source", "task.source_column")
        target = columns.resolve(ctx.train, _wanted(options.target_column, data, "label_column"),
                                 tuple(c for c in columns.TARGET_COLUMNS if c != source), "target",
                                 "task.target_column")
        if source == target:
            raise DataError(f"the source and target are the same column {source!r}; set task.target_column to "
                            "the column holding the outputs.")
        job = Seq2SeqJob(ctx.tokenizer, options, source, target)
        train, validation = rows.train_and_validation(ctx)
        job.train_dataset = job.encode(train)
        job.eval_dataset = job.encode(validation)
        return job

    def restore(self, ctx: TaskContext, folder: str | Path) -> Seq2SeqJob:
        state = pieces.read_state(folder, self.name)
        return Seq2SeqJob(ctx.tokenizer, ctx.options, state["source_column"], state["target_column"])


def _wanted(value: Any, data: Any, field: str) -> Any:
    return value if value is not None else getattr(data, field, None)


@hookimpl
def register_tasks(register: Any) -> None:
    register(Seq2Seq())
