"""Turning raw instruction-tuning rows into conversations.

Every supported record shape becomes a list of ``{"role", "content"}`` messages (roles ``system``,
``user``, ``assistant``), or a bare text for plain language-model rows:

- chat: a ``messages`` / ``conversations`` column of role/content dicts, or ShareGPT's from/value;
- alpaca: ``instruction`` (+ optional ``input``) and ``output``;
- self-instruct seed tasks: ``instruction`` and ``instances`` [{input, output}, ...] (one conversation each);
- prompt/response pairs: ``prompt``/``question``/``query`` with ``response``/``completion``/``output``/``answer``;
- plain text: a ``text`` column, trained on every token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tunekit.errors import DataError

CHAT_COLUMNS = ("messages", "conversations", "conversation", "chat")
PROMPT_COLUMNS = ("prompt", "question", "query", "instruction", "input")
RESPONSE_COLUMNS = ("response", "completion", "output", "answer", "target")
SYSTEM_COLUMNS = ("system", "system_prompt")
ROLE_NAMES = {
    "system": "system",
    "user": "user", "human": "user", "prompter": "user", "question": "user",
    "assistant": "assistant", "gpt": "assistant", "model": "assistant", "bot": "assistant", "chatgpt": "assistant",
}

Conversation = list[dict[str, str]]


@dataclass(frozen=True)
class Shape:
    """Which kind of record a dataset holds and the columns involved."""

    kind: str  # "chat" | "alpaca" | "seed" | "pair" | "text"
    prompt: str | None = None
    response: str | None = None
    extra: str | None = None  # alpaca's input column, or the chat/instances column
    system: str | None = None

    def describe(self) -> str:
        return {
            "chat": f"chat records ({self.extra})",
            "alpaca": "alpaca records (instruction, input, output)",
            "seed": "self-instruct seed tasks (instruction, instances)",
            "pair": f"prompt/response pairs ({self.prompt} -> {self.response})",
            "text": f"plain text ({self.prompt})",
        }[self.kind]


def detect_shape(columns: list[str], prompt_column: Any = None, response_column: Any = None) -> Shape:
    """Find the record shape from the column names (``prompt_column``/``response_column`` override)."""
    lower = {c.lower(): c for c in columns}

    def first(names: tuple[str, ...], exclude: tuple[str | None, ...] = ()) -> str | None:
        return next((lower[n] for n in names if n in lower and lower[n] not in exclude), None)

    system = first(SYSTEM_COLUMNS)
    if prompt_column is not None or response_column is not None:
        prompt = str(prompt_column) if prompt_column is not None else first(PROMPT_COLUMNS)
        response = str(response_column) if response_column is not None else first(RESPONSE_COLUMNS, (prompt,))
        for name, setting in ((prompt, "data.text_column"), (response, "data.label_column")):
            if name is None or name not in columns:
                raise DataError(
                    f"the data has no column {name!r} (columns: {', '.join(columns)}); set {setting} to one of those."
                )
        return Shape("pair", prompt, response, system=system)
    chat = first(CHAT_COLUMNS)
    if chat:
        return Shape("chat", extra=chat, system=system)
    if "instruction" in lower and "instances" in lower:
        return Shape("seed", lower["instruction"], extra=lower["instances"], system=system)
    if "instruction" in lower and first(RESPONSE_COLUMNS):
        response = first(RESPONSE_COLUMNS)
        extra = lower.get("input") if lower.get("input") != response else None
        return Shape("alpaca", lower["instruction"], response, extra, system)
    prompt = first(PROMPT_COLUMNS)
    response = first(RESPONSE_COLUMNS, (prompt,))
    if prompt and response:
        return Shape("pair", prompt, response, system=system)
    if "text" in lower:
        return Shape("text", lower["text"])
    raise DataError(
        f"cannot tell the record shape from the columns ({', '.join(columns)}); causal-lm reads chat "
        "(messages), alpaca (instruction/input/output), prompt/response or text columns — rename them, or set "
        "data.text_column (prompt) and data.label_column (response)."
    )


def _text(value: Any, where: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise DataError(f"{where} is not text ({type(value).__name__}); give a string there.")
    return value


def _chat_messages(value: Any, row: int) -> Conversation:
    if not isinstance(value, list) or not value:
        raise DataError(f"record {row}: the conversation must be a non-empty list of messages; fix that record.")
    out: Conversation = []
    for j, msg in enumerate(value):
        if not isinstance(msg, dict):
            raise DataError(f"record {row}, message {j + 1} is not an object with role and content; fix that record.")
        role = msg.get("role") if msg.get("role") is not None else msg.get("from")
        content = msg.get("content") if msg.get("content") is not None else msg.get("value")
        mapped = ROLE_NAMES.get(str(role).lower()) if role is not None else None
        if mapped is None:
            raise DataError(
                f"record {row}, message {j + 1} has the role {role!r}; use system, user or assistant "
                "(or ShareGPT's human/gpt)."
            )
        out.append({"role": mapped, "content": _text(content, f"record {row}, message {j + 1} content")})
    if not any(m["role"] == "assistant" for m in out):
        raise DataError(f"record {row} has no assistant message to learn from; add one or drop the record.")
    return out


def conversations(record: dict[str, Any], shape: Shape, row: int) -> list[Conversation | str]:
    """The conversations (or plain texts) in one raw record; ``row`` is 1-based for messages."""
    system = record.get(shape.system) if shape.system else None
    prefix: Conversation = [{"role": "system", "content": system}] if isinstance(system, str) and system.strip() else []
    if shape.kind == "text":
        return [_text(record.get(shape.prompt), f"record {row} column {shape.prompt!r}")]
    if shape.kind == "chat":
        messages = _chat_messages(record.get(shape.extra), row)
        return [messages if messages[0]["role"] == "system" else prefix + messages]
    if shape.kind == "seed":
        instruction = _text(record.get(shape.prompt), f"record {row} instruction")
        out: list[Conversation | str] = []
        for inst in record.get(shape.extra) or []:
            out.append(prefix + [
                {"role": "user", "content": join_prompt(instruction, _text(inst.get("input"), f"record {row} input"))},
                {"role": "assistant", "content": _text(inst.get("output"), f"record {row} output")},
            ])
        return out
    prompt = _text(record.get(shape.prompt), f"record {row} column {shape.prompt!r}")
    if shape.kind == "alpaca" and shape.extra:
        prompt = join_prompt(prompt, _text(record.get(shape.extra), f"record {row} input"))
    response = _text(record.get(shape.response), f"record {row} column {shape.response!r}")
    return [prefix + [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]]


def join_prompt(instruction: str, extra: str) -> str:
    """An instruction followed by its optional input, separated by a blank line."""
    return f"{instruction}\n\n{extra}" if extra.strip() else instruction
