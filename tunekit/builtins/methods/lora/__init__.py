"""``lora``: low-rank updates on chosen linear layers (``method.py``; ``layer.py`` the wrapper, ``options.py``,
``targets.py`` target choice and per-family defaults, ``files.py`` PEFT's folder layout)."""

from tunekit.builtins.methods.lora.method import Lora
from tunekit.hookspecs import hookimpl


@hookimpl
def register_methods(register):
    register(Lora())
