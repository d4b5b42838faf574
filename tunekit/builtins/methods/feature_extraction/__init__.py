"""``feature-extraction``: only the task head trains (``method.py``, ``options.py``)."""

from tunekit.builtins.methods.feature_extraction.method import FeatureExtraction
from tunekit.hookspecs import hookimpl


@hookimpl
def register_methods(register):
    register(FeatureExtraction())
