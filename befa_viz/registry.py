"""A small generic name → factory registry, one instance per kind of component."""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from befa_viz.errors import UnknownNameError

T = TypeVar("T")

__all__ = ["Registry", "closest"]


def closest(name: str, choices: list[str] | tuple[str, ...], n: int = 3) -> list[str]:
    """Return up to ``n`` of ``choices`` that look most like ``name``."""
    return difflib.get_close_matches(str(name), [str(c) for c in choices], n=n, cutoff=0.5)


class Registry(Generic[T]):
    """Map short lowercase names to classes or factories.

    Example:
        >>> R = Registry("widget")
        >>> @R.register("box")
        ... class Box:
        ...     def __init__(self, size=1):
        ...         self.size = size
        >>> R.create("box", size=3).size
        3
        >>> R.names("b*")
        ['box']
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorate a class or factory to register it under ``name``."""
        if name != name.lower() or not name:
            raise ValueError(f"{self.kind} names are short and lowercase; got {name!r}.")

        def deco(obj: Callable[..., T]) -> Callable[..., T]:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered.")
            self._items[name] = obj
            return obj

        return deco

    def get(self, name: str) -> Callable[..., T]:
        """Return the class or factory registered under ``name``."""
        try:
            return self._items[name]
        except KeyError:
            near = closest(name, list(self._items))
            hint = f" Did you mean {' or '.join(repr(n) for n in near)}?" if near else ""
            raise UnknownNameError(
                f"Unknown {self.kind} {name!r}.{hint} Known: {', '.join(self.names())}."
            ) from None

    def create(self, name: str, /, **kwargs: Any) -> T:
        """Instantiate ``name`` with keyword arguments."""
        return self.get(name)(**kwargs)

    def names(self, pattern: str = "*") -> list[str]:
        """Registered names matching a shell-style wildcard, sorted."""
        return sorted(n for n in self._items if fnmatch.fnmatch(n, pattern))

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"
