"""Matching qualified module and parameter names (``bert.encoder.layer.0.attention.self.query``).

The one place every part of tunekit (and a plugin) asks "does this name mean that module?".
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence


def ends_with(name: str, suffix: str) -> bool:
    """``name`` is ``suffix`` or ends with it at a dot: ``ends_with("layer.0.attention.query", "query")``."""
    return name == suffix or name.endswith("." + suffix)


def is_under(name: str, prefix: str) -> bool:
    """``name`` is ``prefix`` or lies inside it: ``is_under("classifier.weight", "classifier")``."""
    return name == prefix or name.startswith(prefix + ".")


def matches(name: str, pattern: str) -> bool:
    """``name`` ends with ``pattern`` at a dot (see :func:`ends_with`) or ``pattern`` is a regex matching all of it."""
    if ends_with(name, pattern):
        return True
    try:
        return re.fullmatch(pattern, name) is not None
    except re.error:
        return False


def each_suffix(candidates: Sequence[str], wanted: Sequence[str], on_miss: Callable[[str], Exception]) -> list[str]:
    """The ``candidates`` that end (see :func:`ends_with`) with some entry of ``wanted``, in first-hit order.

    An entry that matches no candidate raises ``on_miss(entry)``: each caller words its own error.
    """
    found: list[str] = []
    for suffix in wanted:
        hits = [n for n in candidates if ends_with(n, suffix)]
        if not hits:
            raise on_miss(suffix)
        found.extend(h for h in hits if h not in found)
    return found
