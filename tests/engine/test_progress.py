"""The CLI progress listener: plain lines off a terminal, a rich bar on one."""

from __future__ import annotations

import io
from types import SimpleNamespace

from rich.console import Console

from tunekit.cli.progress import PlainProgress, RichProgress, progress_listener


def drive(listener):
    listener.on_train_begin(10, 0)
    listener.on_log(5, {"step": 5, "loss": 0.6931, "lr": 2e-4, "tokens_per_second": 1234.5})
    listener.on_evaluate(5, {"eval_accuracy": 0.8125, "eval_loss": 0.41})
    listener.on_train_end(SimpleNamespace(steps=10, train_seconds=3.2, stopped_early=True))


def test_plain_lines_when_not_a_terminal():
    out = io.StringIO()
    listener = progress_listener(Console(file=out, force_terminal=False))
    assert isinstance(listener, PlainProgress) and not isinstance(listener, RichProgress)
    drive(listener)
    lines = out.getvalue().splitlines()
    assert lines[0] == "training: 10 steps"
    assert lines[1].startswith("step 5/10 (50%)  loss 0.6931  lr 2.00e-04  tok/s 1,234  eta ")
    assert lines[2] == "eval @ step 5: eval_accuracy=0.8125  eval_loss=0.4100"
    assert lines[3] == "training finished: 10 steps in 3.2 s, stopped early"


def test_rich_bar_on_a_terminal():
    out = io.StringIO()
    listener = progress_listener(Console(file=out, force_terminal=True, width=150))
    assert isinstance(listener, RichProgress)
    drive(listener)
    text = out.getvalue()
    assert "0.6931" in text and "eval_accuracy=0.8125" in text and "10/10" in text


def test_abort_closes_the_bar():
    listener = RichProgress(Console(file=io.StringIO(), force_terminal=True))
    listener.on_train_begin(4, 2)
    listener.on_train_abort(KeyboardInterrupt())
    assert not listener.progress.live.is_started
