"""Built-in model sources: aliases for the models that ship as PyPI packages."""
