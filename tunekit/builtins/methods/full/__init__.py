"""``full``: every parameter trains (``method.py``, ``options.py``)."""

from tunekit.builtins.methods.full.method import Full
from tunekit.hookspecs import hookimpl


@hookimpl
def register_methods(register):
    register(Full())
