"""``prefix-tuning``: trainable key/value prefixes (``method.py``; ``layer.py`` the prefix encoder and
injector, ``options.py``)."""

from tunekit.builtins.methods.prefix_tuning.method import PrefixTuning
from tunekit.hookspecs import hookimpl


@hookimpl
def register_methods(register):
    register(PrefixTuning())
