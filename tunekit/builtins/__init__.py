"""tunekit's built-in plugins.

Every module or package directly inside this package is loaded as a plugin, exactly like an
installed third-party plugin (same hooks, same ``register`` callbacks). Nothing in the core names them.
"""
