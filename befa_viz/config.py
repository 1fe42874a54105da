"""Strict configuration loading for frozen config dataclasses.

Precedence is defaults < YAML < command-line overrides. An unknown key raises
:class:`~befa_viz.errors.ConfigError` naming the key, the valid keys and the closest match.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from befa_viz.errors import ConfigError
from befa_viz.registry import closest

__all__ = ["load_config", "config_to_dict", "read_yaml", "parse_override"]

C = TypeVar("C")


def read_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a YAML mapping, with errors naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Config file {path} does not exist.")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"Config file {path} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"Config file {path} must hold a mapping at top level.")
    return data


def parse_override(text: str) -> tuple[str, Any]:
    """Parse ``key=value`` (value read as YAML: numbers, lists, booleans).

    Example:
        >>> parse_override("lr=1e-3"), parse_override("modalities=[image, text]")
        (('lr', 0.001), ('modalities', ['image', 'text']))
    """
    if "=" not in text:
        raise ConfigError(f"Override {text!r} is not of the form key=value.")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        value = raw
    if isinstance(value, str) and value.lower().replace(".", "", 1).replace("e-", "", 1).isdigit():
        value = float(value)
    return key.strip(), value


def _coerce(name: str, value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if value is None:
        return None
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if tp in (int, float, str, bool) and not isinstance(value, tp):
        raise ConfigError(
            f"{where}: '{name}' must be {tp.__name__}, got {value!r} ({type(value).__name__})."
        )
    if origin is tuple and isinstance(value, (list, tuple)):
        return tuple(value)
    if origin is typing.Union or str(origin) == "types.UnionType":
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(name, value, a, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: '{name}' has an invalid value {value!r}.")
    if origin is typing.Literal and value not in args:
        raise ConfigError(f"{where}: '{name}' must be one of {list(args)}, got {value!r}.")
    return value


def load_config(
    cls: type[C],
    *sources: Mapping[str, Any] | str | os.PathLike[str] | None,
    where: str = "config",
) -> C:
    """Build ``cls`` from defaults, then each source in order (YAML path or mapping).

    Example:
        >>> from dataclasses import dataclass
        >>> @dataclass(frozen=True)
        ... class Cfg:
        ...     lr: float = 0.001
        ...     epochs: int = 10
        >>> load_config(Cfg, {"lr": 0.01}, {"epochs": 3})
        Cfg(lr=0.01, epochs=3)
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]  # dataclass type
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for src in sources:
        if src is None:
            continue
        label = where
        if not isinstance(src, Mapping):
            label = str(src)
            src = read_yaml(src)
        for k, v in src.items():
            if k not in fields:
                near = closest(k, list(fields))
                hint = f" Did you mean {near[0]!r}?" if near else ""
                raise ConfigError(
                    f"{label}: unknown key {k!r}.{hint} Valid keys: {', '.join(sorted(fields))}."
                )
            values[k] = _coerce(k, v, hints[k], label)
    return cls(**values)


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A config dataclass as a plain YAML-able dict."""
    out = dataclasses.asdict(cfg)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}
