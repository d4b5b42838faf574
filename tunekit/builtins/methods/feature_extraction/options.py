"""Options of the ``feature-extraction`` method (``--set method.NAME=VALUE``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class FeatureExtractionOptions:
    """No options: the backbone is frozen and the task head trains."""
