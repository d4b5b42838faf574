"""Bottleneck adapters ``houlsby`` and ``pfeiffer`` (``method.py``; ``layer.py`` the wrapper, ``options.py``)."""

from tunekit.builtins.methods.bottleneck.method import HOULSBY, PFEIFFER
from tunekit.hookspecs import hookimpl


@hookimpl
def register_methods(register):
    register(HOULSBY)
    register(PFEIFFER)
