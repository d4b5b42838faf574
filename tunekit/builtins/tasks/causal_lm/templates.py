"""Rendering conversations into token ids with a label mask, and prompts for generation.

Two templates:

- ``chat``: the tokenizer's own chat template (``apply_chat_template``). A conversation is rendered
  turn by turn; the text each assistant turn adds (its content plus the template's end-of-turn
  marker, e.g. ``<|im_end|>``) is what the model learns to produce.
- ``plain``: for tokenizers without a chat template, a small fixed layout::

      [system text]\n\n### Prompt:\n{user text}\n\n### Response:\n{assistant text}<eos>

Training and generation render prompts with the same code, so a tuned model sees at inference
exactly the prefix it was trained after, and the end marker it learned is the one generation stops at.
"""

from __future__ import annotations

from typing import Any

from tunekit.errors import DataError

PLAIN_USER = "### Prompt:\n{content}\n\n"
PLAIN_ASSISTANT = "### Response:\n"
PLAIN_SYSTEM = "{content}\n\n"

Segment = tuple[str, bool]  # (text, learn from it)


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def resolve_template(tokenizer: Any, wanted: str) -> str:
    if wanted == "auto":
        return "chat" if has_chat_template(tokenizer) else "plain"
    if wanted == "chat" and not has_chat_template(tokenizer):
        raise DataError("this tokenizer has no chat template; set task.template=plain (or auto).")
    return wanted


def _chat_text(tokenizer: Any, messages: list[dict[str, str]], generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


def chat_segments(tokenizer: Any, messages: list[dict[str, str]]) -> list[Segment]:
    """Split a rendered conversation into (text, learn) pieces: assistant turns are learned."""
    segments: list[Segment] = []
    done = ""
    for i, msg in enumerate(messages):
        if msg["role"] != "assistant":
            continue
        before = _chat_text(tokenizer, messages[:i], generation_prompt=True)
        through = _chat_text(tokenizer, messages[: i + 1], generation_prompt=False)
        if not before.startswith(done) or not through.startswith(before):
            raise DataError(
                "the tokenizer's chat template renders earlier turns differently as a conversation grows, so the "
                "response tokens cannot be found; set task.template=plain."
            )
        segments.append((before[len(done):], False))
        segments.append((through[len(before):], True))
        done = through
    return segments


def _plain_parts(tokenizer: Any, messages: list[dict[str, str]]) -> tuple[list[Segment], str]:
    """The plain layout of ``messages``: one (prompt, response) segment pair per assistant turn, and the text
    after the last of them (the turns still waiting for an answer)."""
    eos = tokenizer.eos_token or ""
    segments: list[Segment] = []
    pending = ""
    for msg in messages:
        if msg["role"] == "system":
            pending += PLAIN_SYSTEM.format(content=msg["content"])
        elif msg["role"] == "user":
            pending += PLAIN_USER.format(content=msg["content"])
        else:
            segments.append((pending + PLAIN_ASSISTANT, False))
            segments.append((msg["content"] + eos, True))
            pending = "\n\n"
    return segments, pending


def plain_segments(tokenizer: Any, messages: list[dict[str, str]]) -> list[Segment]:
    return _plain_parts(tokenizer, messages)[0]


def generation_prompt(tokenizer: Any, template: str, messages: list[dict[str, str]]) -> str:
    """The text a model continues to answer the last user message of ``messages``."""
    if template == "chat":
        return _chat_text(tokenizer, messages, generation_prompt=True)
    segments, pending = _plain_parts(tokenizer, messages)
    return "".join(text for text, _ in segments) + pending + PLAIN_ASSISTANT


def leading_special_ids(tokenizer: Any) -> list[int]:
    """Ids the tokenizer puts before a text on its own (BOS for Llama-2 style tokenizers, none for GPT-2)."""
    with_special = tokenizer("a", add_special_tokens=True)["input_ids"]
    without = tokenizer("a", add_special_tokens=False)["input_ids"]
    n = len(with_special) - len(without)
    if n > 0 and with_special[n:] == without:
        return list(with_special[:n])
    if n > 0 and with_special[:len(without)] == without:
        return []  # only a trailing marker (e.g. [SEP]): nothing goes before
    start = with_special.index(without[0]) if without and without[0] in with_special else 0
    return list(with_special[:start])


def encode_segments(tokenizer: Any, segments: list[Segment], prefix_ids: list[int], train_on_prompt: bool
                    ) -> tuple[list[int], list[int]]:
    """Token ids and labels (-100 on tokens not learned) for a list of segments."""
    ids: list[int] = list(prefix_ids)
    labels: list[int] = list(prefix_ids) if train_on_prompt else [-100] * len(prefix_ids)
    for text, learn in segments:
        if not text:
            continue
        piece = tokenizer(text, add_special_tokens=False)["input_ids"]
        ids.extend(piece)
        labels.extend(piece if (learn or train_on_prompt) else [-100] * len(piece))
    return ids, labels


def stop_token_ids(tokenizer: Any, template: str) -> list[int]:
    """Token ids that end an answer: EOS, plus the chat template's end-of-turn marker when it has one."""
    stops: list[int] = []
    if tokenizer.eos_token_id is not None:
        stops.append(int(tokenizer.eos_token_id))
    if template == "chat":
        probe = [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]
        try:
            segments = chat_segments(tokenizer, probe)
        except DataError:
            segments = []
        for text, learn in segments:
            if learn:
                ids = tokenizer(text, add_special_tokens=False)["input_ids"]
                special = set(getattr(tokenizer, "all_special_ids", []) or [])
                special |= {i for i, t in (getattr(tokenizer, "added_tokens_decoder", {}) or {}).items()
                            if getattr(t, "special", False)}
                stops.extend(i for i in ids if i in special and i not in stops)
    return stops
