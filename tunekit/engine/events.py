"""The listener protocol: how the engine reports progress to whoever is watching.

A listener is any object with some of these methods (all optional; the engine calls the ones that
exist, on the main process only):

- ``on_train_begin(total_steps, start_step)``: once, before the first step (``start_step > 0`` on resume);
- ``on_log(step, metrics)``: every ``logging_steps`` optimiser steps (loss, lr, tokens_per_second, ...);
- ``on_evaluate(step, metrics)``: after each evaluation, with the task's ``eval_*`` metrics;
- ``on_train_end(result)``: once, with the :class:`tunekit.engine.TrainResult`;
- ``on_train_abort(error)``: instead of ``on_train_end`` when training raises (Ctrl-C included), so a
  live display can close before the error is reported.

The CLI's progress bar (``tunekit.cli.progress``) is one listener; tests use small recording ones.
"""

from __future__ import annotations

import logging
from typing import Any, Iterable, Protocol, runtime_checkable

log = logging.getLogger("tunekit.engine")


@runtime_checkable
class Listener(Protocol):
    """What a progress listener may implement (every method is optional in practice)."""

    def on_train_begin(self, total_steps: int, start_step: int) -> None: ...

    def on_log(self, step: int, metrics: dict[str, float]) -> None: ...

    def on_evaluate(self, step: int, metrics: dict[str, float]) -> None: ...

    def on_train_end(self, result: Any) -> None: ...

    def on_train_abort(self, error: BaseException) -> None: ...


class Listeners:
    """Calls an event on every listener that implements it (only where ``enabled``, i.e. the main process)."""

    def __init__(self, listeners: Iterable[Any], enabled: bool = True) -> None:
        self._listeners = list(listeners)
        self.enabled = enabled

    def emit(self, event: str, *args: Any) -> None:
        if not self.enabled:
            return
        for listener in self._listeners:
            handler = getattr(listener, event, None)
            if callable(handler):
                handler(*args)
