"""Dataset readers (format plugins) and the code that picks one for a path.

A dataset format is any object with ``name``, ``description``, ``extensions`` (e.g. ``(".csv",)``) and
``read(path, data_config) -> datasets.Dataset``: raw rows, columns as in the file (or named by 0-based
index when ``data.header`` is false). ``detect(path) -> bool`` is optional, for formats that share an
extension (SQuAD JSON vs plain JSON). Readers raise ``tunekit.errors.DataError`` naming the file (and
line where it helps) for anything malformed.

A format may also provide named datasets that need no file (its ``datasets`` attribute, e.g. ``demo``),
with optional extras keyed by those names: ``heldout_companions`` (the held-out prompts that go with a
dataset) and ``suggested_settings(name, method)`` (run settings that suit the dataset, used for every
key the user leaves unset; see :func:`suggested_settings`).
A format with ``reads_bare_names`` (the hub format) reads folders and extension-less names that are
no file. ``FORMAT_OPTIONAL`` declares every optional attribute with its default.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from tunekit.errors import DataError
from tunekit.protocols import OptionalAttr, optional

FORMAT_OPTIONAL: dict[str, OptionalAttr] = {
    "detect": OptionalAttr(None, "`detect(path) -> bool`: for formats sharing an extension (SQuAD JSON and plain "
                           "JSON), True when this format reads the file; absent means the format takes every file "
                           "with its extensions that no detecting format claimed", callable=True),
    "datasets": OptionalAttr((), "names (such as `demo`) this format reads without a file"),
    "heldout_companions": OptionalAttr({}, "a mapping from one of `datasets` to the name of its held-out prompts"),
    "suggested_settings": OptionalAttr(None, "`suggested_settings(name, method) -> dict`: run settings that suit "
                                       "the named dataset for that method", callable=True),
    "reads_bare_names": OptionalAttr(False, "True when the format reads a folder, or a name with no extension that "
                                     "is no file (a hub dataset id); the first such format takes those paths"),
}
"""Optional attributes of a ``DatasetFormat``: name -> default and meaning (the one declaration of them)."""


@runtime_checkable
class DatasetFormat(Protocol):
    name: str
    description: str
    extensions: tuple[str, ...]

    def read(self, path: str, data: Any) -> Any: ...


def named_dataset(name: str) -> Any | None:
    """The format that provides the named dataset ``name`` (listed in its ``datasets`` attribute), if any."""
    from tunekit.plugins import registries

    for entry in registries().dataset_formats:
        if name in optional(entry.obj, "datasets", FORMAT_OPTIONAL):
            return entry.obj
    return None


def heldout_companion(name: str | None) -> str | None:
    """The held-out set that goes with the named dataset ``name`` (a format's ``heldout_companions``), if any."""
    fmt = named_dataset(name) if name else None
    return optional(fmt, "heldout_companions", FORMAT_OPTIONAL).get(name) if fmt is not None else None


def suggested_settings(train: Any, method: Any) -> dict[str, Any]:
    """Run settings that the named training dataset ``train`` suggests for ``method`` (a config tree).

    They rank above tunekit's defaults and below everything the user gives (YAML, flags, ``--set``),
    so the bundled ``demo`` data can make ``tunekit run --method lora`` a useful run without changing
    the defaults every other dataset sees. Empty when ``train`` is a file or the format suggests nothing.
    """
    if not isinstance(train, str) or not isinstance(method, str):
        return {}
    fmt = named_dataset(train)
    suggest = optional(fmt, "suggested_settings", FORMAT_OPTIONAL)
    return dict(suggest(train, method) or {}) if callable(suggest) else {}


def read_dataset(path: str, data: Any) -> Any:
    """Read ``path`` with the format named in ``data.format``, or the one its extension (and content) selects.

    A format may also provide named datasets (its ``datasets`` attribute, e.g. ``demo``); those names
    are read by that format whatever ``data.format`` says.
    """
    from tunekit.plugins import registries

    formats = registries().dataset_formats
    provider = named_dataset(path)
    if provider is not None:
        return provider.read(path, data)
    p = Path(path)
    if p.is_file() and not os.access(p, os.R_OK):  # checked here once, for every format
        raise DataError(f"data file {path!r} cannot be read (permission denied); check its permissions.")
    if getattr(data, "format", None):
        return formats.get(data.format).read(path, data)
    if p.is_dir() or not (p.suffix or p.exists()):
        bare = [e.obj for e in formats if optional(e.obj, "reads_bare_names", FORMAT_OPTIONAL)]
        if bare:
            return bare[0].read(path, data)
    if not p.exists():
        raise DataError(f"data file {path!r} does not exist; check the path given to --data / --val-data.")
    suffix = "".join(p.suffixes[-1:]).lower()
    candidates = [e.obj for e in formats if suffix in getattr(e.obj, "extensions", ())]
    detecting = [f for f in candidates if hasattr(f, "detect")]
    for fmt in detecting:
        if fmt.detect(path):
            return fmt.read(path, data)
    plain = [f for f in candidates if not hasattr(f, "detect")]
    if plain:
        return plain[0].read(path, data)
    known = sorted({ext for e in formats for ext in getattr(e.obj, "extensions", ())})
    raise DataError(
        f"no dataset format reads {p.name!r} (extension {suffix or 'none'}); use one of {', '.join(known)} "
        "or name a format with --set data.format=NAME."
    )
