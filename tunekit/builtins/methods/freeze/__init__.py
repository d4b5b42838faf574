"""``freeze``: train the top blocks (and final norm) plus the head (``method.py``, ``options.py``)."""

from tunekit.builtins.methods.freeze.method import Freeze
from tunekit.hookspecs import hookimpl


@hookimpl
def register_methods(register):
    register(Freeze())
