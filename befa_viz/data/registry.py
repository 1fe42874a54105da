"""``DATASETS``: importer name → importer function, for the CLI and :mod:`befa_viz.pipeline`.

Every registered callable takes ``(path, **options)`` and returns ``(dataset, features)``:
the :class:`~befa_viz.data.types.RecDataset` and a possibly empty ``{modality: array}`` dict
(only the MMRec importer brings feature arrays). :func:`importer_options` lists the options
an importer accepts (its public function's keyword arguments).
"""

from __future__ import annotations

import collections.abc
import functools
import inspect
import os
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from befa_viz.data.hm import import_hm
from befa_viz.data.mmrec import import_mmrec
from befa_viz.data.movielens import import_movielens
from befa_viz.data.tabular import import_table
from befa_viz.data.types import RecDataset
from befa_viz.errors import ConfigError
from befa_viz.registry import Registry, closest

__all__ = ["DATASETS", "ImporterOption", "Imported", "check_importer_options", "cli_hint",
           "importer_option_specs", "importer_options"]

Imported = tuple[RecDataset, dict[str, np.ndarray]]
DATASETS: Registry[Imported] = Registry("dataset importer")


def _register(name: str, fn: Callable[..., Any], returns_features: bool) -> None:
    @functools.wraps(fn)  # inspect.signature(...) follows __wrapped__ to the public function
    def run(path: str | Path, **options: Any) -> Imported:
        out = fn(path, **options)
        return out if returns_features else (out, {})

    DATASETS.register(name)(run)


_register("mmrec", import_mmrec, returns_features=True)
_register("table", import_table, returns_features=False)
_register("movielens", import_movielens, returns_features=False)
_register("hm", import_hm, returns_features=False)


def importer_options(kind: str) -> list[str]:
    """Keyword options accepted by importer ``kind`` (``name`` included).

    Example:
        >>> "min_rating" in importer_options("movielens"), "min_rating" in importer_options("mmrec")
        (True, False)
    """
    sig = inspect.signature(DATASETS.get(kind))
    return [p.name for p in sig.parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY]


@dataclass(frozen=True)
class ImporterOption:
    """One keyword option of an importer, read from its signature and docstring.

    Attributes:
        name: The keyword (``-o name=value`` on the command line).
        type: Readable type, e.g. ``"error|drop"``, ``"list of text"``, ``"int or none"``.
        default: The signature's default.
        choices: The accepted values of a ``Literal`` option (else empty).
        is_list: Whether a comma-separated value is split into a list.
        help: The docstring's description of the option (one line).
    """

    name: str
    type: str
    default: Any
    choices: tuple[Any, ...]
    is_list: bool
    help: str

    def example(self) -> Any:
        """A valid value for this option (a choice other than the default, if any)."""
        if self.choices:
            return next((c for c in self.choices if c != self.default), self.choices[0])
        if self.is_list:
            return ["a", "b"]
        return _EXAMPLES.get(self.type.split(" ")[0], "VALUE")

    def cli_example(self) -> str:
        """A valid ``-o key=value`` for this option."""
        return f"-o {self.name}={_cli_value(self.example())}"


_EXAMPLES = {"int": 5, "float": 0.5, "bool": "true", "text": "VALUE", "path": "PATH"}


def _cli_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, (list, tuple)):
        return ",".join(map(_cli_value, value))
    return str(value)


def _arg_docs(fn: Callable[..., Any]) -> dict[str, str]:
    """``{argument: description}`` from a Google-style ``Args:`` section."""
    out: dict[str, str] = {}
    lines = (inspect.getdoc(fn) or "").splitlines()
    in_args, current, indent = False, None, 0
    for line in lines:
        if line.strip() == "Args:":
            in_args = True
            continue
        if not in_args:
            continue
        if line and not line.startswith(" "):  # the next section (Returns:, Raises:, ...)
            break
        stripped = line.strip()
        if not stripped:
            continue
        lead = len(line) - len(stripped)
        m = re.match(r"(\*{0,2}\w+)(?: \(.*?\))?:\s*(.*)", stripped)
        if m and (current is None or lead <= indent):
            current, indent = m.group(1).lstrip("*"), lead
            out[current] = m.group(2)
        elif current is not None:
            out[current] += " " + stripped
    return {k: re.sub(r"``([^`]*)``", r"\1", v) for k, v in out.items()}


def _members(tp: Any) -> list[Any]:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return [m for a in typing.get_args(tp) for m in _members(a)]
    if typing.get_origin(tp) is Literal:
        return [Literal[a] for a in typing.get_args(tp)]  # one Literal per value
    return [tp]


def _is_sequence(tp: Any) -> bool:
    origin = typing.get_origin(tp)
    return origin in (list, tuple, collections.abc.Sequence) and tp is not str


def _type_word(tp: Any) -> str:
    if tp is type(None):
        return "none"
    if _is_sequence(tp):
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        return f"list of {_type_word(args[0]) if args else 'text'}"
    return {str: "text", int: "int", float: "float", bool: "bool", Path: "path"}.get(tp, str(tp))


def importer_option_specs(kind: str) -> list[ImporterOption]:
    """The keyword options of importer ``kind`` with their types, defaults and meanings.

    Example:
        >>> spec = {o.name: o for o in importer_option_specs("mmrec")}
        >>> spec["cold_users"].choices, spec["modalities"].is_list
        (('error', 'drop'), True)
    """
    fn = inspect.unwrap(DATASETS.get(kind))
    hints = typing.get_type_hints(fn)
    docs = _arg_docs(fn)
    out = []
    for p in inspect.signature(fn).parameters.values():
        if p.kind is not inspect.Parameter.KEYWORD_ONLY:
            continue
        members = _members(hints.get(p.name, Any))
        choices = tuple(typing.get_args(m)[0] for m in members if typing.get_origin(m) is Literal)
        words = [_type_word(m) for m in members if typing.get_origin(m) is not Literal]
        if choices:
            words.insert(0, "|".join(_cli_value(c) for c in choices))
        words = list(dict.fromkeys(w for w in words if w != "path" or "text" not in words))
        out.append(ImporterOption(
            name=p.name, type=" or ".join(words), default=p.default, choices=choices,
            is_list=any(_is_sequence(m) for m in members), help=docs.get(p.name, ""),
        ))
    return out


def _coerce_one(value: Any, tp: Any) -> Any:
    """``value`` as type member ``tp``, or raise ``ValueError``."""
    if tp is Any:
        return value
    if typing.get_origin(tp) is Literal:
        (choice,) = typing.get_args(tp)
        if value == choice and type(value) is type(choice):
            return choice
        if isinstance(choice, str) and isinstance(value, str) and value.lower() == choice:
            return choice
        raise ValueError
    if tp is type(None):
        if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null")):
            return None
        raise ValueError
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ValueError
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ValueError
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ValueError
    if tp in (str, Path):
        if isinstance(value, (str, os.PathLike)):
            return value
        raise ValueError
    if _is_sequence(tp):
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        elem = args[0] if args else Any
        if isinstance(value, str):  # "a,b" from the command line: a list, never its characters
            value = [v.strip() for v in value.split(",") if v.strip()]
            if elem in (int, float):
                value = [_number(v) for v in value]
        elif not isinstance(value, (list, tuple)):
            value = [value]
        return [_coerce_one(v, elem) for v in value]
    return value  # a type we do not check (a callable, a frame): the importer checks it


def _number(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        return float(text)  # a ValueError here is "not a number", reported by the caller


def check_importer_options(kind: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """Validate ``options`` against importer ``kind``'s signature and convert them.

    Comma-separated text becomes a list for list options (``modalities="audio,image"`` →
    ``["audio", "image"]``), ``"none"`` becomes ``None`` where ``None`` is accepted, and a value
    outside a ``Literal`` option's choices is refused.

    Raises:
        ConfigError: An unknown option (closest names suggested) or a value of the wrong
            type or outside the choices; the message gives the accepted values and the
            command-line form (``-o key=value``).

    Example:
        >>> check_importer_options("mmrec", {"modalities": "audio,image", "cold_users": "drop"})
        {'modalities': ['audio', 'image'], 'cold_users': 'drop'}
    """
    specs = {o.name: o for o in importer_option_specs(kind) if o.name != "name"}
    hints = typing.get_type_hints(inspect.unwrap(DATASETS.get(kind)))
    out: dict[str, Any] = {}
    for key, value in options.items():
        if key not in specs:
            near = closest(key, list(specs))
            hint = f" Did you mean {' or '.join(map(repr, near))}?" if near else ""
            raise ConfigError(
                f"The {kind!r} importer has no option {key!r}.{hint} Accepted: "
                f"{', '.join(specs)} ('befa-viz data kinds' describes them)."
            )
        spec = specs[key]
        members = _members(hints.get(key, Any))
        members.sort(key=lambda m: m is not type(None))  # "none" means None where it may
        for member in members:
            try:
                out[key] = _coerce_one(value, member)
                break
            except ValueError:
                continue
        else:
            only_choices = "|".join(_cli_value(c) for c in spec.choices) == spec.type
            accepted = (", ".join(_cli_value(c) for c in spec.choices) if only_choices
                        else spec.type)
            raise ConfigError(
                f"The {kind!r} importer's option {key!r} got {value!r}; accepted: {accepted}. "
                f"For example: {spec.cli_example()} (Python: {key}={spec.example()!r})."
            )
    return out


def cli_hint(kind: str, message: str) -> str:
    """Rewrite ``key='value'`` mentions of importer ``kind``'s options into ``-o key=value``.

    Importers phrase their fixes in Python (``pass cold_users='drop'``); on the command line
    the same fix is ``-o cold_users=drop``.

    Example:
        >>> cli_hint("mmrec", "fix the split or pass cold_users='drop'.")
        'fix the split or pass -o cold_users=drop.'
    """
    names = [o.name for o in importer_option_specs(kind) if o.name != "name"]
    if not names:
        return message
    pattern = re.compile(r"(?<![\w-])(?<!-o )(?<!Python: )(" + "|".join(map(re.escape, names))
                         + r")=('([^']*)'|\"([^\"]*)\"|[\w.,/-]+)")

    def sub(m: re.Match[str]) -> str:
        value = m.group(3) if m.group(3) is not None else m.group(4)
        return f"-o {m.group(1)}={m.group(2) if value is None else value}"

    return pattern.sub(sub, message)
