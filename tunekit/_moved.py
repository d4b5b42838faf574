"""Old import paths of tunekit 0.1 that moved in the 0.2 layout; each stays importable until 1.0."""

from __future__ import annotations

import importlib
import sys
import warnings


def alias(old: str, new: str) -> None:
    """Make ``old`` the very module ``new`` (same object, so attributes and monkeypatching agree), with a warning."""
    warnings.warn(f"{old} moved to {new}; import it from there (the old path goes in tunekit 1.0).",
                  DeprecationWarning, stacklevel=3)
    sys.modules[old] = importlib.import_module(new)
