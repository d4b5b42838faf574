"""A small micro-batching queue for ``/v1/predict``: requests that arrive together share one ``predict`` call.

Written here rather than taken from a library because it is a few lines over ``queue`` and
``concurrent.futures`` and the serving libraries that batch (Ray Serve, BentoML) would be a large dependency
for it. One worker thread owns the model: it takes the first waiting request, gathers more for up to
``wait_s`` seconds (until ``max_inputs`` inputs), predicts them in one call and hands each request its slice.
When the shared call fails with a tunekit error (one bad input), every request of the batch is predicted
on its own, so only the bad one gets the error.
"""

from __future__ import annotations

import logging
import queue
import threading
from concurrent.futures import Future
from typing import Any, Callable, Sequence

from tunekit.errors import TunekitError

log = logging.getLogger("tunekit.serve")

Predict = Callable[[Sequence[Any]], list[Any]]


class MicroBatcher:
    """Gathers concurrent requests into batches for ``predict(inputs) -> outputs`` (one output per input)."""

    def __init__(self, predict: Predict, lock: threading.Lock, max_inputs: int = 32, wait_s: float = 0.005) -> None:
        self.predict = predict
        self.lock = lock
        self.max_inputs = max_inputs
        self.wait_s = wait_s
        self.queue: queue.Queue[tuple[list[Any], Future] | None] = queue.Queue()
        self.batches = 0
        """How many ``predict`` calls the worker made (tests read it to see requests were batched)."""
        self.thread = threading.Thread(target=self._work, name="tunekit-predict", daemon=True)
        self.thread.start()

    def submit(self, inputs: list[Any]) -> Future:
        """Queue one request; its future gets the request's outputs or its exception."""
        future: Future = Future()
        self.queue.put((inputs, future))
        return future

    def close(self) -> None:
        """Stop the worker after the requests already queued."""
        self.queue.put(None)
        self.thread.join(timeout=10)

    def _gather(self, first: tuple[list[Any], Future]) -> tuple[list[tuple[list[Any], Future]], bool]:
        batch, size, closing = [first], len(first[0]), False
        while size < self.max_inputs:
            try:
                item = self.queue.get(timeout=self.wait_s)
            except queue.Empty:
                break
            if item is None:
                closing = True
                break
            batch.append(item)
            size += len(item[0])
        return batch, closing

    def _work(self) -> None:
        while True:
            first = self.queue.get()
            if first is None:
                return
            batch, closing = self._gather(first)
            self._run(batch)
            if closing:
                return

    def _run(self, batch: list[tuple[list[Any], Future]]) -> None:
        inputs = [x for items, _ in batch for x in items]
        try:
            with self.lock:
                self.batches += 1
                outputs = self.predict(inputs)
        except TunekitError as exc:
            if len(batch) > 1:  # find the request at fault: each one alone
                for request in batch:
                    self._run([request])
                return
            batch[0][1].set_exception(exc)
            return
        except Exception as exc:  # reported to the request, never kills the worker
            log.exception("predict failed")
            for _, future in batch:
                future.set_exception(exc)
            return
        start = 0
        for items, future in batch:
            future.set_result(outputs[start:start + len(items)])
            start += len(items)

