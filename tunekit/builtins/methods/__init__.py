"""Built-in methods: one module or folder each (a folder holds ``options.py``, ``layer.py``, ``method.py``)."""
