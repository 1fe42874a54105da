"""befa-viz: see what multimedia recommenders take from item images and text, with and
without the BeFA behaviour-driven feature adapter."""

from __future__ import annotations

from befa_viz.errors import (
    BefaVizError,
    ConfigError,
    DataError,
    MissingDependencyError,
    MissingWeightsError,
    StaleArtifactError,
    UnknownNameError,
)
from befa_viz.registry import Registry

__version__ = "0.1.0"

__all__ = [
    "BefaVizError",
    "ConfigError",
    "DataError",
    "MissingDependencyError",
    "MissingWeightsError",
    "Registry",
    "StaleArtifactError",
    "UnknownNameError",
    "__version__",
]
