"""``tunekit serve``: a finished run behind an OpenAI-compatible HTTP API (FastAPI + uvicorn, the ``serve`` extra).

``create_app(load_run(folder))`` builds the application; ``tunekit.cli.serve`` runs it with uvicorn.
"""

from __future__ import annotations

from typing import Any

EXTRA_HINT = "pip install 'tunekit[serve]'"


def create_app(loaded: Any, **kwargs: Any) -> Any:
    """The FastAPI app for a loaded run (see :func:`tunekit.serve.app.create_app`)."""
    from tunekit.serve.app import create_app as build

    return build(loaded, **kwargs)


__all__ = ["EXTRA_HINT", "create_app"]
