"""``tunekit serve``: answer HTTP requests with a finished run (OpenAI-compatible API; docs/deployment.md)."""

from __future__ import annotations

import click

from tunekit.cli import cli, console
from tunekit.cli.inference import QUANTIZE_OPTION, RUN_OPTION, _load
from tunekit.errors import UsageError


def _require_server() -> None:
    from tunekit.serve import EXTRA_HINT

    for module in ("fastapi", "uvicorn"):
        try:
            __import__(module)
        except ImportError:
            raise UsageError(f"tunekit serve needs the {module!r} package, which is not installed; run "
                             f"`{EXTRA_HINT}`.") from None


@cli.command("serve")
@RUN_OPTION
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0 for every interface; the API has no authentication).")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535), help="Port to listen on.")
@click.option("--max-batch", default=32, show_default=True, type=click.IntRange(1, 1024),
              help="Most /v1/predict inputs answered in one forward pass (concurrent requests are batched).")
@QUANTIZE_OPTION
def serve_command(run_dir: str, host: str, port: int, max_batch: int, quantize: str | None) -> None:
    """Serve a run over HTTP: /v1/chat/completions and /v1/completions (text generation) or /v1/predict."""
    _require_server()
    import uvicorn

    from tunekit.serve import create_app

    loaded = _load(run_dir, quantize)
    app = create_app(loaded, max_batch=max_batch)
    service = app.state.service
    routes = "/v1/chat/completions, /v1/completions" if service.generates else "/v1/predict"
    console.print(f"serving run {service.name} ({service.task}) on http://{host}:{port} — {routes}, /v1/models, "
                  "/health; Ctrl+C stops", highlight=False)
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning")
    finally:
        service.close()
