"""Dataset format for Hugging Face datasets: a hub name (``glue/sst2`` style) or a ``save_to_disk`` folder.

A folder written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk`` is opened with
``datasets.load_from_disk``; any other name goes to ``datasets.load_dataset(name, split=data.split)``,
which needs the hub (or the local ``datasets`` cache). For a dataset with several splits,
``data.split`` picks one (default ``train``); ``--val-data NAME`` with ``--set data.split=...`` is not
split-aware, so use ``name:split`` to choose the split of one argument (e.g. ``--val-data imdb:test``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunekit.errors import DataError
from tunekit.hookspecs import hookimpl


def _split_name(path: str, data: Any) -> tuple[str, str]:
    default = str(getattr(data, "split", None) or "train")
    if ":" in path and not Path(path).exists():
        name, split = path.rsplit(":", 1)
        if split and "/" not in split:
            return name, split
    return path, default


def _pick(obj: Any, split: str, where: str) -> Any:
    import datasets

    if isinstance(obj, datasets.DatasetDict):
        if split not in obj:
            raise DataError(
                f"dataset {where!r} has no split {split!r} (splits: {', '.join(obj)}); "
                f"choose one with --set data.split=NAME or {where}:SPLIT."
            )
        obj = obj[split]
    if len(obj) == 0:
        raise DataError(f"dataset {where!r} split {split!r} has no rows; choose another split.")
    return obj


class HubFormat:
    """Hugging Face datasets by name, or folders written by ``save_to_disk``."""

    name = "hub"
    description = "Hugging Face dataset name (data.split picks the split) or a save_to_disk folder"
    extensions: tuple[str, ...] = ()
    reads_bare_names = True  # folders written by save_to_disk, and hub ids such as `glue`

    def read(self, path: str, data: Any) -> Any:
        import datasets

        name, split = _split_name(path, data)
        folder = Path(name)
        if folder.is_dir():
            try:
                loaded = datasets.load_from_disk(str(folder))
            except (FileNotFoundError, ValueError, OSError) as exc:
                raise DataError(
                    f"folder {name!r} is not a saved Hugging Face dataset ({type(exc).__name__}); point --data at a "
                    "data file, or at a folder written by Dataset.save_to_disk."
                ) from None
            return _pick(loaded, split, name)
        try:
            loaded = datasets.load_dataset(name, split=split)
        except ValueError as exc:
            if "split" in str(exc).lower():
                raise DataError(f"dataset {name!r} has no split {split!r}; choose one with --set data.split=NAME.") from None
            raise DataError(f"could not load the dataset {name!r} ({exc}); check its name.") from None
        except Exception as exc:  # the hub client raises many kinds (connection, missing repo, auth)
            raise DataError(
                f"could not load the dataset {name!r} from the Hugging Face hub ({type(exc).__name__}); check the name "
                "and the network, or give a local file or save_to_disk folder."
            ) from None
        return _pick(loaded, split, name)


@hookimpl
def register_dataset_formats(register: Any) -> None:
    register(HubFormat())
