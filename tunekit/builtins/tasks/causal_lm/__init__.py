"""The ``causal-lm`` task: instruction tuning and chat fine-tuning of decoder language models.

Reads chat (messages / ShareGPT), alpaca, self-instruct seed, prompt/response and plain-text
records (see ``records``), renders them with the tokenizer's chat template or a plain layout (see
``templates``), learns only the response tokens by default (``task.train_on_prompt=true`` learns
all), and always learns the end marker so the tuned model stops. Metrics: ``eval_loss`` and
``eval_perplexity`` (token-weighted); lower loss is better.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Literal, Sequence

import torch
from torch import nn

from tunekit.builtins.tasks.causal_lm import packing, records, templates
from tunekit.builtins.tasks.causal_lm.loss import learned_count, token_losses
from tunekit.errors import DataError, UsageError
from tunekit.hookspecs import hookimpl
from tunekit.models import ResolvedModel
from tunekit.options import check, option
from tunekit.tasks import pieces, rows
from tunekit.tasks.protocol import TaskContext

log = logging.getLogger("tunekit.tasks.causal_lm")


@dataclass
class CausalLMOptions:
    template: Literal["auto", "chat", "plain"] = option(
        "auto", "Prompt layout: the tokenizer's chat template (`chat`), a plain ### Prompt/### Response layout, or `auto`.")
    train_on_prompt: bool = option(False, "Learn the prompt tokens too (default: only the responses and end markers).")
    max_length: int = option(1024, "Longest training example in tokens; longer ones are cut at the end.")
    system_prompt: str | None = option(None, "System message put before every conversation that has none.")
    max_new_tokens: int = option(64, "Most tokens `predict`/`generate` produce per answer.")
    temperature: float = option(0.0, "Sampling temperature for generation; 0 means greedy decoding.")
    top_p: float = option(1.0, "Nucleus sampling threshold when temperature > 0.")
    repetition_penalty: float = option(1.0, "Penalty above 1 discourages repeating tokens in generation.")
    predict_batch_size: int = option(32, "Prompts generated together in `predict` (one batched decode, left-padded).")
    packing: bool = option(False, "Pack several training examples into each row of up to max_length tokens (each "
                                  "attends only to itself); evaluation stays unpacked.")
    generate_eval: bool = option(False, "At each evaluation also generate answers for validation examples and score "
                                        "them against the references (ROUGE-1/2/L, BLEU, chrF, exact match).")
    generate_eval_samples: int = option(32, "Validation examples (the first ones) answered when generate_eval is on.")

    def validate(self) -> None:
        check(self.max_length > 1, f"task.max_length must be above 1, not {self.max_length}.")
        check(self.max_new_tokens > 0, "task.max_new_tokens must be positive.")
        check(self.temperature >= 0, "task.temperature must not be negative.")
        check(0 < self.top_p <= 1, "task.top_p must be in (0, 1].")
        check(self.repetition_penalty > 0, "task.repetition_penalty must be positive.")
        check(self.predict_batch_size > 0, "task.predict_batch_size must be positive.")
        check(self.generate_eval_samples > 0, "task.generate_eval_samples must be positive.")


class CausalLMJob:
    """One causal-LM run: rendering, masking, padding, loss, perplexity and generation."""

    metric_for_best = "eval_loss"
    greater_is_better = False
    eval_order_free = True  # metrics aggregate over all examples: evaluation may batch them by length

    def __init__(self, tokenizer: Any, options: CausalLMOptions, template: str,
                 prompt_column: str | None = None, response_column: str | None = None) -> None:
        self.tokenizer = tokenizer
        self.options = options
        self.template = template
        self.prompt_column = prompt_column
        self.response_column = response_column
        self.head_modules: list[str] = []
        self.train_dataset: Any = None
        self.eval_dataset: Any = None
        pieces.ensure_pad_token(tokenizer)
        self.prefix_ids = [] if template == "chat" else templates.leading_special_ids(tokenizer)
        self.stop_ids = templates.stop_token_ids(tokenizer, template)

    # --- data -------------------------------------------------------------------------------

    def _with_system(self, conv: list[dict[str, str]]) -> list[dict[str, str]]:
        if self.options.system_prompt and (not conv or conv[0]["role"] != "system"):
            return [{"role": "system", "content": self.options.system_prompt}, *conv]
        return conv

    def encode_conversation(self, conv: list[dict[str, str]] | str) -> dict[str, list[int]]:
        """Ids and labels of one conversation (or plain text), before truncation."""
        if isinstance(conv, str):
            segments = [(conv + (self.tokenizer.eos_token or ""), True)]
            return self._pack(templates.encode_segments(self.tokenizer, segments, self.prefix_ids, True))
        conv = self._with_system(conv)
        if self.template == "chat":
            segments = templates.chat_segments(self.tokenizer, conv)
        else:
            segments = templates.plain_segments(self.tokenizer, conv)
        return self._pack(templates.encode_segments(self.tokenizer, segments, self.prefix_ids,
                                                    self.options.train_on_prompt))

    def _pack(self, pair: tuple[list[int], list[int]]) -> dict[str, list[int]]:
        ids, labels = pair
        limit = self.options.max_length
        return {"input_ids": ids[:limit], "labels": labels[:limit]}

    def encode(self, data: Any) -> list[dict[str, list[int]]]:
        """Tokenize raw rows into features; rows whose learned tokens were all cut off are dropped."""
        shape = records.detect_shape(rows.columns(data), self.prompt_column, self.response_column)
        features = []
        dropped = 0
        for i, record in enumerate(data):
            for conv in records.conversations(record, shape, i + 1):
                feature = self.encode_conversation(conv)
                if all(label == -100 for label in feature["labels"][1:]):
                    dropped += 1
                    continue
                if self.options.generate_eval and not isinstance(conv, str):  # what generate_eval answers and scores
                    last = max(i for i, m in enumerate(conv) if m["role"] == "assistant")
                    feature.update(prompt=conv[:last], reference=conv[last]["content"])
                features.append(feature)
        if dropped:
            log.warning("%d example(s) had no response tokens left within task.max_length=%d and were skipped",
                        dropped, self.options.max_length)
        if not features:
            raise DataError(
                f"no example keeps a response within task.max_length={self.options.max_length} tokens; "
                "raise task.max_length or shorten the prompts."
            )
        log.info("causal-lm: %d examples from %s, template %s", len(features), shape.describe(), self.template)
        return features

    def collate(self, features: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        pad = self.tokenizer.pad_token_id
        if features and "position_ids" in features[0]:
            return packing.collate_packed(features, pad)
        batch = {
            "input_ids": pieces.pad_stack([f["input_ids"] for f in features], pad),
            "attention_mask": pieces.pad_stack([[1] * len(f["input_ids"]) for f in features], 0),
        }
        if all("labels" in f for f in features):
            batch["labels"] = pieces.pad_stack([f["labels"] for f in features], -100)
        return batch

    # --- model ------------------------------------------------------------------------------

    def build_model(self, source: ResolvedModel, load_kwargs: dict[str, Any]) -> nn.Module:
        from transformers import AutoModelForCausalLM

        model, fresh = pieces.load_with_head(AutoModelForCausalLM, source, load_kwargs, announce=False)
        if fresh:
            log.warning("the checkpoint lacks %s; they start from random values", ", ".join(fresh))
            self.head_modules = fresh
        if getattr(model.config, "pad_token_id", None) is None:
            model.config.pad_token_id = self.tokenizer.pad_token_id
        gen = getattr(model, "generation_config", None)
        if gen is not None:
            gen.pad_token_id = self.tokenizer.pad_token_id
        return model

    def _token_losses(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed cross-entropy over learned tokens, and how many there were (next-token shift applied).

        Logits are computed only at learned positions and a chunk at a time (see the ``loss`` module), never for the
        whole batch at once.
        """
        return token_losses(model, batch)

    def loss_weight(self, batch: dict[str, torch.Tensor]) -> int:
        """The number of tokens ``loss(model, batch)`` averages over (learned targets after the shift)."""
        return learned_count(batch["labels"])

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        total, count = self._token_losses(model, batch)
        return total / count.clamp(min=1)

    def evaluate(self, model: nn.Module, batches: Iterable[dict[str, torch.Tensor]]) -> dict[str, float]:
        total, count = 0.0, 0
        with pieces.evaluating(model):
            device = pieces.model_device(model)
            for batch in batches:
                s, n = self._token_losses(model, pieces.to_device(batch, device))
                total += float(s)
                count += int(n)
        loss = total / max(count, 1)
        metrics = {"eval_loss": loss, "eval_perplexity": math.exp(min(loss, 50.0))}
        if self.options.generate_eval:
            metrics.update(self._generation_metrics(model))
        return metrics

    def _generation_metrics(self, model: nn.Module) -> dict[str, float]:
        """Answers to the first ``generate_eval_samples`` validation prompts, scored against their references."""
        from tunekit.tasks import text_metrics

        items = [f for f in self.eval_dataset or () if "reference" in f][: self.options.generate_eval_samples]
        if not items:
            return {}
        answers = self.predict(model, [f["prompt"] for f in items])
        return text_metrics.generation_scores(answers, [f["reference"] for f in items], prefix="eval_")

    # --- generation -------------------------------------------------------------------------

    def conversation_for(self, item: Any) -> list[dict[str, str]]:
        """A prompt given as text, a message list, or a raw record, as a conversation ending with the user turn."""
        if isinstance(item, str):
            conv = [{"role": "user", "content": item}]
        elif isinstance(item, list):
            conv = records._chat_messages(item + [{"role": "assistant", "content": ""}], 1)[:-1]
        elif isinstance(item, dict):
            shape = records.detect_shape(list(item), self.prompt_column, self.response_column)
            if shape.kind == "text":
                raise UsageError("a plain-text record has no prompt to answer; give prompts as text.")
            found = records.conversations(dict(item), shape, 1)
            if not found:
                raise UsageError("the record holds no prompt; give prompts as text.")
            conv = [m for m in found[0] if m["role"] != "assistant"] if shape.kind != "chat" else _until_last_user(found[0])
        else:
            raise UsageError(f"cannot generate from an input of type {type(item).__name__}; give prompt text.")
        return self._with_system(conv)

    def prompt_ids(self, item: Any) -> list[int]:
        text = templates.generation_prompt(self.tokenizer, self.template, self.conversation_for(item))
        return self.prefix_ids + self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def generate(self, model: nn.Module, items: Sequence[Any], streamer: Any = None) -> list[str]:
        """Answers for prompts, generated together (left padding), each cut at its first stop token."""
        prompts = [self.prompt_ids(item) for item in items]
        if not prompts:
            return []
        device = pieces.model_device(model)
        pad = self.tokenizer.pad_token_id
        input_ids = pieces.pad_stack(prompts, pad, side="left").to(device)
        attention = pieces.pad_stack([[1] * len(p) for p in prompts], 0, side="left").to(device)
        sample = self.options.temperature > 0
        kwargs: dict[str, Any] = {
            "max_new_tokens": self.options.max_new_tokens,
            "do_sample": sample,
            "eos_token_id": self.stop_ids or None,
            "pad_token_id": pad,
            "repetition_penalty": self.options.repetition_penalty,
        }
        if sample:
            kwargs.update(temperature=self.options.temperature, top_p=self.options.top_p)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        if streamer is not None:
            kwargs["streamer"] = streamer
        with pieces.evaluating(model):
            out = model.generate(input_ids=input_ids, attention_mask=attention, **kwargs)
        answers = []
        for row in out[:, input_ids.shape[1]:].tolist():
            cut = next((i for i, t in enumerate(row) if t in self.stop_ids), len(row))
            answers.append(self.tokenizer.decode(row[:cut], skip_special_tokens=True).strip())
        return answers

    def predict(self, model: nn.Module, inputs: Sequence[Any]) -> list[str]:
        """The generated answer (text) for each prompt."""
        size = self.options.predict_batch_size
        out: list[str] = []
        for start in range(0, len(inputs), size):
            out.extend(self.generate(model, list(inputs[start:start + size])))
        return out

    def save(self, folder: str | Path) -> None:
        pieces.write_state(folder, CausalLM.name, {
            "template": self.template,
            "prompt_column": self.prompt_column,
            "response_column": self.response_column,
            "stop_token_ids": self.stop_ids,
        })


def _until_last_user(conv: list[dict[str, str]]) -> list[dict[str, str]]:
    last = max((i for i, m in enumerate(conv) if m["role"] == "user"), default=-1)
    if last < 0:
        raise UsageError("the conversation has no user message to answer; add one.")
    return conv[: last + 1]


class CausalLM:
    """Instruction / chat tuning of decoder LMs; loss on responses; eval_loss and eval_perplexity."""

    name = "causal-lm"
    description = "Instruction and chat tuning of decoder LMs (alpaca, chat/sharegpt, prompt/response, text)."
    options_class = CausalLMOptions

    def prepare(self, ctx: TaskContext) -> CausalLMJob:
        if ctx.train is None:
            raise DataError("the causal-lm task needs training data; pass --data FILE.")
        data = ctx.data
        prompt_col = getattr(data, "text_column", None)
        response_col = getattr(data, "label_column", None)
        job = CausalLMJob(ctx.tokenizer, ctx.options, templates.resolve_template(ctx.tokenizer, ctx.options.template),
                          str(prompt_col) if prompt_col is not None else None,
                          str(response_col) if response_col is not None else None)
        records.detect_shape(rows.columns(ctx.train), job.prompt_column, job.response_column)  # fail fast
        if ctx.options.generate_eval:
            from tunekit.tasks import text_metrics

            text_metrics.check_available()
        train, validation = rows.train_and_validation(ctx)
        job.train_dataset = job.encode(train)
        if ctx.options.packing:
            job.train_dataset = packing.pack(job.train_dataset, ctx.options.max_length)
            log.info("causal-lm: packed into %d rows of up to %d tokens", len(job.train_dataset),
                     ctx.options.max_length)
        job.eval_dataset = job.encode(validation)
        return job

    def restore(self, ctx: TaskContext, folder: str | Path) -> CausalLMJob:
        state = pieces.read_state(folder, self.name)
        return CausalLMJob(ctx.tokenizer, ctx.options, state.get("template", "plain"),
                           state.get("prompt_column"), state.get("response_column"))


@hookimpl
def register_tasks(register: Any) -> None:
    register(CausalLM())
