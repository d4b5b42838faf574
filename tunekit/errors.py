"""tunekit's own exceptions.

Every error a user can cause ends in one of these. The message is one sentence that names the
problem and the fix; the CLI prints it without a traceback and exits with ``exit_code``.
"""

from __future__ import annotations


class TunekitError(Exception):
    """A failure at run time (exit code 1)."""

    exit_code = 1


class UsageError(TunekitError):
    """The user asked for something that cannot work: a bad name, option, file or combination (exit 2)."""

    exit_code = 2


class ConfigError(UsageError):
    """A configuration key is unknown, or its value has the wrong type or range."""


class UnknownNameError(UsageError):
    """A method, task, dataset format, model or quantizer name that no plugin registered."""


class DataError(UsageError):
    """A data file is missing, empty, or does not have the shape the task needs."""


class MethodError(UsageError):
    """A method cannot be applied with these options to this model."""


class PluginError(TunekitError):
    """A plugin broke a rule of the registry (for example two plugins registered the same name)."""


class PluginCollisionError(PluginError):
    """A plugin registered a name an earlier plugin already has: the later plugin is marked failed."""


class CheckpointError(TunekitError):
    """A checkpoint or run folder is missing, incomplete, or was made by a different configuration."""


class TrainingInterrupted(TunekitError):
    """Training stopped on Ctrl-C (SIGINT) or SIGTERM; the message says where the checkpoint is and how to resume (exit 130)."""

    exit_code = 130
