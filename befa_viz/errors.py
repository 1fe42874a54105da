"""Exception hierarchy: every error a user can cause derives from :class:`BefaVizError`.

Each class also derives from the matching builtin so callers can catch either.
Messages state what was wrong, the value received, what is accepted and how to fix it.
"""

from __future__ import annotations

__all__ = [
    "BefaVizError",
    "ConfigError",
    "UnknownNameError",
    "DataError",
    "MissingDependencyError",
    "MissingWeightsError",
    "StaleArtifactError",
    "Interrupted",
]


class BefaVizError(Exception):
    """Base class of all befa-viz errors."""

    def __str__(self) -> str:  # KeyError quotes its message; we never want that.
        return str(self.args[0]) if self.args else ""


class ConfigError(BefaVizError, ValueError):
    """A configuration value or key is invalid."""


class UnknownNameError(BefaVizError, KeyError):
    """A name (model, encoder, item id, ...) is not known."""


class DataError(BefaVizError, ValueError):
    """Input data is malformed; the message names the file, row or item."""


class MissingDependencyError(BefaVizError, ImportError):
    """An optional dependency is not installed; the message names the extra."""


class MissingWeightsError(BefaVizError, FileNotFoundError):
    """Pretrained weights are not available offline; the message names the fix."""


class StaleArtifactError(BefaVizError, ValueError):
    """An artifact (features, run, cache entry) was produced from different inputs."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a resumable job; the message says what was kept.

    A ``KeyboardInterrupt`` (so it stops everything as Ctrl-C does), whose message is one line
    such as ``interrupted; 3 of 8 chunks kept, rerun resumes``. The CLI prints it and exits
    with 130.
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "interrupted"
