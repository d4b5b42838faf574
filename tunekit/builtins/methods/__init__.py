"""Built-in methods, one folder each, every folder the same shape.

``options.py`` the options dataclass (always: every method has an ``options_class``, empty or not);
``layer.py`` the module(s) the method injects or wraps (only where it injects any); ``method.py`` the
Method class (``apply``, ``expected_trainable``, ``load``) and its ``Applied``; ``__init__.py`` only
registers (``@hookimpl register_methods``). Helpers beyond those are named for their role (``lora/targets.py``).
"""
