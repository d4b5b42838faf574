"""Generation for the OpenAI-style endpoints: one request at a time, whole or streamed.

The model is not thread-safe and a streamed answer cannot share a batch (transformers' text streamer takes
batch size 1), so requests generate one after another under the server's model lock. Per-request settings
(``max_tokens``, ``temperature``, ``top_p``) set the run task's options of the same names for the length of
the request; ``stop`` strings cut the answer after generation (streamed: pieces are held back while they
could still begin a stop string).
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from typing import Any, Iterator

from tunekit.errors import UsageError
from tunekit.protocols import optional
from tunekit.serve.schemas import Sampling
from tunekit.tasks.protocol import JOB_OPTIONAL

SETTINGS = {"max_new_tokens": "max_tokens", "temperature": "temperature", "top_p": "top_p"}
"""Task option -> request field."""


@dataclass
class Answer:
    """A finished answer with OpenAI's usage counts and finish reason (``stop`` or ``length``)."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str


def cut_at_stop(text: str, stops: list[str]) -> tuple[str, bool]:
    """``text`` up to the first stop string, and whether one was found."""
    hits = [i for i in (text.find(s) for s in stops) if i >= 0]
    return (text[:min(hits)], True) if hits else (text, False)


class Generator:
    """Answers prompts with the run's ``job.generate`` under ``lock``."""

    def __init__(self, loaded: Any, lock: threading.Lock) -> None:
        self.model, self.job, self.tokenizer = loaded.model, loaded.job, loaded.tokenizer
        self.lock = lock

    @contextlib.contextmanager
    def _settings(self, request: Sampling) -> Iterator[int]:
        """The task options set from ``request`` (restored afterwards); yields the token limit in force."""
        options = optional(self.job, "options", JOB_OPTIONAL)
        given = {"max_new_tokens": request.new_tokens(), "temperature": request.temperature, "top_p": request.top_p}
        given = {k: v for k, v in given.items() if v is not None}
        missing = [SETTINGS[k] for k in given if options is None or not hasattr(options, k)]
        if missing:
            raise UsageError(f"{missing[0]} does not apply to this run's task; drop it from the request.")
        before = {k: getattr(options, k) for k in given}
        try:
            for key, value in given.items():
                setattr(options, key, value)
            if request.seed is not None:
                import torch

                torch.manual_seed(request.seed)
            yield int(getattr(options, "max_new_tokens", 0) or 0)
        finally:
            for key, value in before.items():
                setattr(options, key, value)

    def _count(self, item: Any, text: str) -> tuple[int, int]:
        prompt_ids = optional(self.job, "prompt_ids", JOB_OPTIONAL)
        prompt = len(prompt_ids(item)) if prompt_ids is not None else 0
        return prompt, len(self.tokenizer(text, add_special_tokens=False)["input_ids"]) if text else 0

    def _answer(self, item: Any, text: str, stopped: bool, limit: int) -> Answer:
        prompt, completion = self._count(item, text)
        reason = "stop" if stopped or not limit or completion < limit else "length"
        return Answer(text, prompt, completion, reason)

    def answer(self, item: Any, request: Sampling) -> Answer:
        """The whole answer to one prompt (text or message list)."""
        with self.lock, self._settings(request) as limit:
            text = self.job.generate(self.model, [item])[0]
            text, stopped = cut_at_stop(text, request.stops())
            return self._answer(item, text, stopped, limit)

    def stream(self, item: Any, request: Sampling) -> Iterator[str | Answer]:
        """Pieces of the answer as they are generated, then the :class:`Answer` (its text is the whole answer)."""
        from transformers import TextIteratorStreamer

        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        failure: list[BaseException] = []
        limits: list[int] = []

        def work() -> None:
            try:
                with self.lock, self._settings(request) as limit:
                    limits.append(limit)
                    self.job.generate(self.model, [item], streamer=streamer)
            except BaseException as exc:  # handed to the reading side
                failure.append(exc)
                streamer.end()

        thread = threading.Thread(target=work, name="tunekit-generate", daemon=True)
        thread.start()
        yield from self._pieces(streamer, request.stops(), item, limits, failure)
        thread.join()

    def _pieces(self, streamer: Any, stops: list[str], item: Any, limits: list[int],
                failure: list[BaseException]) -> Iterator[str | Answer]:
        hold = max((len(s) for s in stops), default=1) - 1
        text, sent, stopped = "", 0, False
        for piece in streamer:
            if stopped:
                continue  # drain: the generation thread holds the lock until it ends
            text += piece
            text, stopped = cut_at_stop(text, stops)
            safe = len(text) if stopped else max(sent, len(text) - hold)
            if safe > sent:
                yield text[sent:safe]
                sent = safe
        if failure:
            raise failure[0]
        if len(text) > sent:
            yield text[sent:]
        yield self._answer(item, text.strip(), stopped, limits[0] if limits else 0)
