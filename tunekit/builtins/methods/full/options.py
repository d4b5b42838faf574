"""Options of the ``full`` method (``--set method.NAME=VALUE``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class FullOptions:
    """No options: all weights train."""
