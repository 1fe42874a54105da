"""``DATASETS``: importer name → importer function, for the CLI and :mod:`befa_viz.pipeline`.

Every registered callable takes ``(path, **options)`` and returns ``(dataset, features)``:
the :class:`~befa_viz.data.types.RecDataset` and a possibly empty ``{modality: array}`` dict
(only the MMRec importer brings feature arrays). :func:`importer_options` lists the options
an importer accepts (its public function's keyword arguments).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from befa_viz.data.hm import import_hm
from befa_viz.data.mmrec import import_mmrec
from befa_viz.data.movielens import import_movielens
from befa_viz.data.tabular import import_table
from befa_viz.data.types import RecDataset
from befa_viz.registry import Registry

__all__ = ["DATASETS", "importer_options", "Imported"]

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
