"""The ``tunekit`` command line. The only part of tunekit that prints or chooses exit codes.

Each module named in COMMAND_MODULES adds its click commands to ``cli``; installed plugins can add
more through the ``register_commands`` hook.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Callable

import click
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape

from tunekit.errors import TunekitError

COMMAND_MODULES = [
    "tunekit.cli.run",
    "tunekit.cli.listings",
    "tunekit.cli.export",
    "tunekit.cli.new_plugin",
    "tunekit.cli.inference",
    "tunekit.cli.estimate",
    "tunekit.cli.sweep",
    "tunekit.cli.compare",
    "tunekit.cli.serve",
    "tunekit.cli.report",
]

# Tables stay readable when the output is a pipe or a file (rich would otherwise assume 80 columns).
console = Console(width=None if sys.stdout.isatty() else 140)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 140)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="tunekit", message="tunekit %(version)s")
@click.option("--debug", is_flag=True, envvar="TUNEKIT_DEBUG", help="Show tracebacks and debug logs.")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors on stderr.")
@click.pass_context
def cli(ctx: click.Context, debug: bool, quiet: bool) -> None:
    """tunekit: fine-tune pretrained language models with pluggable parameter-efficient methods."""
    ctx.obj = {"debug": debug}
    level = logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO
    handler = RichHandler(console=err_console, show_path=debug, show_time=False, markup=False,
                          rich_tracebacks=debug)
    root = logging.getLogger("tunekit")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    if not debug:
        _quiet_library_loggers()


# Loggers of the libraries whose advisories are not for a tunekit user: the transformers load report (a fresh
# head listed as MISSING), bitsandbytes' "Failed to load CPU gemm_4bit_forward ... kernels" at import and its
# per-call "MatMul8bitLt: inputs will be cast ..." on an int8 model. --debug shows them all.
QUIET_LOGGERS = ("transformers", "datasets", "accelerate", "torch", "bitsandbytes", "peft")
# Python warnings raised inside these libraries are advisories about their own internals as well.
QUIET_WARNING_MODULES = r"(transformers|datasets|accelerate|torch|bitsandbytes|peft|huggingface_hub|tokenizers)(\.|$)"


def _quiet_library_loggers() -> None:
    """Only errors from the libraries' loggers; tunekit's own logger and warnings are untouched."""
    for noisy in QUIET_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.ERROR)


def _quiet_libraries() -> None:
    """Silence the libraries' progress bars and advisories before they are imported (not with --debug).

    The libraries' own switches: transformers' verbosity, the hub's progress-bar switch, the level of each
    library's logger, and warnings filters scoped to the libraries' modules (a warning of tunekit or of a
    plugin still shows).
    """
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # also silences transformers' load/save bars
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # mlflow's INFO lines (a fresh tracker store's tables)
    _quiet_library_loggers()
    import warnings

    warnings.filterwarnings("ignore", module=QUIET_WARNING_MODULES)


def worker_setup() -> Callable[[], None] | None:
    """What a command's worker processes run first: the same quiet libraries as here (nothing with --debug)."""
    ctx = click.get_current_context(silent=True)
    return None if ctx is not None and (ctx.find_root().obj or {}).get("debug") else _quiet_libraries


def _load_commands() -> None:
    for name in COMMAND_MODULES:
        importlib.import_module(name)
    from tunekit.plugins import registries

    pm = registries().pm
    if pm is not None:
        for impl in pm.hook.register_commands.get_hookimpls():
            try:
                impl.function(cli=cli)
            except Exception as exc:  # a broken plugin must not take the CLI down
                logging.getLogger("tunekit.plugins").warning(
                    "plugin %r failed to add its commands and was skipped: %s", impl.plugin_name, exc
                )


def _one_line(exc: BaseException) -> str:
    """The message on one line, even when it quotes user input holding newlines."""
    return " ".join(str(exc).split())


def report_error(exc: BaseException, debug: bool) -> int:
    """Print one line for ``exc`` on stderr (a traceback too with --debug) and return the exit code."""
    if debug:
        err_console.print_exception()
    if isinstance(exc, TunekitError):
        err_console.print(f"[bold red]error:[/] {escape(_one_line(exc))}", highlight=False, soft_wrap=True)
        return exc.exit_code
    err_console.print(
        f"[bold red]error:[/] unexpected {type(exc).__name__}: {escape(_one_line(exc))} (rerun with --debug for the traceback, "
        "and please report it).",
        highlight=False, soft_wrap=True,
    )
    return 1


def _click_message(exc: click.ClickException) -> str:
    """Click's own message (bad flag, bad value, unknown command) as the one ``error:`` line."""
    text = " ".join(exc.format_message().split())
    text = text[:1].lower() + text[1:]
    if isinstance(exc, click.UsageError):
        where = exc.ctx.command_path if exc.ctx is not None else "tunekit"
        return f"{text.rstrip('.')} (see `{where} --help`)."
    return text


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args or bool(os.environ.get("TUNEKIT_DEBUG"))
    if not debug:
        _quiet_libraries()
    try:
        _load_commands()
        cli.main(args=args, prog_name="tunekit", standalone_mode=False)
    except click.exceptions.Abort:
        err_console.print("aborted.")
        sys.exit(130)
    except click.ClickException as exc:
        err_console.print(f"[bold red]error:[/] {escape(_click_message(exc))}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err_console.print("interrupted.")
        sys.exit(130)
    except Exception as exc:
        sys.exit(report_error(exc, debug))
