"""Option dataclasses: build one from a mapping with clear errors, and describe its fields.

Methods, tasks and the run configuration all declare their options as dataclasses whose fields
carry a ``help`` string in ``metadata``; this module turns user input into those dataclasses.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, Callable, TypeVar

from tunekit.errors import ConfigError

T = TypeVar("T")


def option(default: Any = dataclasses.MISSING, help: str = "", **kwargs: Any) -> Any:
    """A dataclass field with a help string (shown by ``--help`` and the listings)."""
    if isinstance(default, (list, dict, set)):
        value = default
        return dataclasses.field(default_factory=lambda: type(value)(value), metadata={"help": help}, **kwargs)
    return dataclasses.field(default=default, metadata={"help": help}, **kwargs)


def field_help(cls: type, name: str) -> str:
    return next(f.metadata.get("help", "") for f in dataclasses.fields(cls) if f.name == name)


def describe(cls: type) -> list[tuple[str, str, str]]:
    """(name, default, help) for each field of an options dataclass."""
    rows = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            default = repr(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            default = repr(f.default_factory())
        else:
            default = "(required)"
        rows.append((f.name, default, f.metadata.get("help", "") or _type_name(hints.get(f.name))))
    return rows


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def coerce(value: Any, tp: Any, where: str) -> Any:
    """Convert ``value`` (from YAML or a ``--set`` string) to the annotated type ``tp`` or raise ConfigError."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        return _coerce_union(value, typing.get_args(tp), where)
    if origin is typing.Literal:
        if value in typing.get_args(tp):
            return value
        raise ConfigError(f"{where} must be one of {', '.join(map(repr, typing.get_args(tp)))}, not {value!r}.")
    if origin in (list, tuple):
        return _coerce_list(value, typing.get_args(tp), where)
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping, not {value!r}.")
        return dict(value)
    if tp in _SCALARS:
        return _SCALARS[tp](value, where)
    if dataclasses.is_dataclass(tp):
        return build(tp, value, where)
    return value


def _coerce_union(value: Any, args: tuple[Any, ...], where: str) -> Any:
    """The first member type of an ``X | Y | None`` union that accepts ``value`` (null spellings give None)."""
    if type(None) in args and (value is None or (isinstance(value, str) and value.lower() in ("none", "null", "~"))):
        return None
    errors = []
    for arg in args:
        if arg is type(None):
            continue
        try:
            return coerce(value, arg, where)
        except ConfigError as exc:
            errors.append(str(exc))
    raise ConfigError(errors[0] if len(errors) == 1 else f"{where} has an invalid value {value!r}.")


def _coerce_list(value: Any, args: tuple[Any, ...], where: str) -> list[Any]:
    if isinstance(value, str):  # --set key=a,b,c
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{where} must be a list, not {value!r}.")
    item = args[0] if args else Any
    return [coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]


def _coerce_bool(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on", "false", "no", "0", "off"):
        return value.lower() in ("true", "yes", "1", "on")
    raise ConfigError(f"{where} must be true or false, not {value!r}.")


def _coerce_int(value: Any, where: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.replace("_", ""))
        except ValueError:
            pass
    raise ConfigError(f"{where} must be a whole number, not {value!r}.")


def _coerce_float(value: Any, where: str) -> float:
    number = None
    if isinstance(value, (int, float, str)) and not isinstance(value, bool):
        try:
            number = float(value)
        except (ValueError, OverflowError):  # OverflowError: an int too large for a float
            pass
    if number is not None and math.isfinite(number):
        return number
    if number is not None:  # inf / nan would only fail later, deep inside training
        raise ConfigError(f"{where} must be a finite number, not {value!r}.")
    raise ConfigError(f"{where} must be a number, not {value!r}.")


def _coerce_str(value: Any, where: str) -> str:
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    raise ConfigError(f"{where} must be a string, not {value!r}.")


_SCALARS: dict[Any, Callable[[Any, str], Any]] = {
    bool: _coerce_bool, int: _coerce_int, float: _coerce_float, str: _coerce_str,
}


def build(cls: type[T], values: Mapping[str, Any] | None, where: str = "") -> T:
    """Instantiate the dataclass ``cls`` from ``values``: unknown keys and bad types raise ConfigError.

    After construction, a ``validate()`` method on the dataclass (if any) checks ranges.
    """
    values = dict(values or {})
    if isinstance(values, dict) is False:
        raise ConfigError(f"{where or cls.__name__} must be a mapping.")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls) if f.init}
    prefix = f"{where}." if where else ""
    unknown = [k for k in values if k not in known]
    if unknown:
        import difflib

        key = unknown[0]
        close = difflib.get_close_matches(str(key), list(known), n=1)
        hint = f" (did you mean {prefix}{close[0]}?)" if close else ""
        raise ConfigError(
            f"unknown option {prefix}{key}{hint}; known options: {', '.join(prefix + k for k in known)}."
        )
    kwargs = {k: coerce(v, hints[k], f"{prefix}{k}") for k, v in values.items()}
    missing = [
        n for n, f in known.items()
        if n not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"{prefix}{missing[0]} is required; set it in the config or with --set {prefix}{missing[0]}=...")
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if callable(validate):
        validate()
    return obj


def check(condition: bool, message: str) -> None:
    """Raise ConfigError(message) unless ``condition``; for ``validate()`` methods."""
    if not condition:
        raise ConfigError(message)
