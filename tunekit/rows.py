"""Moved to :mod:`tunekit.tasks.rows` (tunekit 0.1 path, kept until 1.0)."""

from tunekit._moved import alias

alias(__name__, "tunekit.tasks.rows")
