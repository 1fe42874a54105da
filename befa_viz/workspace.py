"""The workspace: one folder that the CLI, the explorer and the notebooks all read and write.

Layout::

    <root>/datasets/<name>/          imported datasets (dataset.json, items.csv, ...)
    <root>/features/<dataset>/<key>/ feature files + manifest (see befa_viz.encoders.store)
    <root>/runs/<run-name>/          training runs (config.yaml, weights, metrics.json)
    <root>/cache/                    attribution cache (befa_viz.cache)
    <root>/reports/                  figures and HTML reports

The root is the explicit argument, else ``$BEFA_VIZ_WORKSPACE``, else ``./befa-workspace``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

from befa_viz.cache import Cache
from befa_viz.errors import ConfigError, DataError, UnknownNameError
from befa_viz.registry import closest

__all__ = ["Workspace", "WORKSPACE_ENV", "CACHE_ENV"]

WORKSPACE_ENV = "BEFA_VIZ_WORKSPACE"
CACHE_ENV = "BEFA_VIZ_CACHE"
log = logging.getLogger(__name__)
_ANNOUNCED: set[tuple[str, str, int]] = set()  # (root, dataset, n) whose choice was logged


class Workspace:
    """Paths and "latest" look-ups inside a workspace folder.

    Example:
        >>> import tempfile
        >>> ws = Workspace(tempfile.mkdtemp())
        >>> ws.dataset_names()
        []
    """

    def __init__(self, root: str | os.PathLike[str] | Workspace | None = None) -> None:
        if isinstance(root, Workspace):
            root = root.root
        if root is None:
            root = os.environ.get(WORKSPACE_ENV) or "befa-workspace"
        self.root: Path = Path(root).expanduser().resolve()

    def __repr__(self) -> str:
        return f"Workspace({str(self.root)!r})"

    @property
    def datasets_dir(self) -> Path:
        return self.root / "datasets"

    @property
    def features_dir(self) -> Path:
        return self.root / "features"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def reports_dir(self) -> Path:
        return self.root / "reports"

    @property
    def cache_dir(self) -> Path:
        env = os.environ.get(CACHE_ENV)
        return Path(env).expanduser() if env else self.root / "cache"

    def cache(self) -> Cache:
        return Cache(self.cache_dir)

    # -- datasets --------------------------------------------------------------------------
    def dataset_dir(self, name: str) -> Path:
        return self.datasets_dir / name

    def dataset_names(self) -> list[str]:
        """Imported datasets, most recently modified last."""
        if not self.datasets_dir.is_dir():
            return []
        found = [p for p in self.datasets_dir.iterdir() if (p / "dataset.json").is_file()]
        return [p.name for p in sorted(found, key=lambda p: (p / "dataset.json").stat().st_mtime)]

    def resolve_dataset(self, name: str | None = None, *, require: str | None = None) -> str:
        """``name`` if it exists, else the latest dataset; errors name the fix.

        The latest dataset is announced on the ``befa_viz.workspace`` logger: as a warning when
        the workspace has several (a dataset imported seconds ago in another shell would be
        picked silently otherwise), else at info level.

        Args:
            name: Dataset name; ``None`` picks the most recently imported one.
            require: With several datasets and no ``name``, refuse instead of picking the
                latest; the value names the command in the message (e.g. ``"compare"``).

        Raises:
            DataError: No dataset in the workspace.
            ConfigError: ``require`` is set, ``name`` is ``None`` and there are several.
            UnknownNameError: ``name`` is not in the workspace.
        """
        names = self.dataset_names()
        if name is None:
            if not names:
                raise DataError(
                    f"No dataset in workspace {self.root}. Import one with 'befa-viz data import' "
                    "or create the demo with 'make demo'."
                )
            if require and len(names) > 1:
                raise ConfigError(
                    f"Workspace {self.root} has {len(names)} datasets ({', '.join(names)}); "
                    f"{require} needs the dataset named: pass --dataset NAME (dataset=NAME)."
                )
            chosen = names[-1]
            if (str(self.root), chosen, len(names)) in _ANNOUNCED:
                return chosen  # said once per process (a command resolves it several times)
            _ANNOUNCED.add((str(self.root), chosen, len(names)))
            if len(names) > 1:
                stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(
                    (self.dataset_dir(chosen) / "dataset.json").stat().st_mtime))
                log.warning("using dataset %r, the most recently imported (%s) of %d in %s; "
                            "pass --dataset to choose another (%s)", chosen, stamp, len(names),
                            self.root, ", ".join(n for n in names if n != chosen))
            else:
                log.info("using dataset %r (the only one in %s)", chosen, self.root)
            return chosen
        if name not in names:
            near = closest(name, names)
            hint = f" Did you mean {', '.join(repr(n) for n in near)}?" if near else ""
            raise UnknownNameError(
                f"No dataset {name!r} in workspace {self.root}.{hint} Available: "
                f"{', '.join(names) or 'none'}."
            )
        return name

    def load_dataset(self, name: str | None = None):  # -> RecDataset (import kept lazy)
        from befa_viz.data.types import RecDataset

        return RecDataset.load(self.dataset_dir(self.resolve_dataset(name)))

    # -- runs --------------------------------------------------------------------------------
    def run_dirs(self, dataset: str | None = None, status: str | None = "complete") -> list[Path]:
        """Runs (with ``run.json``), oldest first, optionally of one dataset.

        Args:
            dataset: Only runs of this dataset.
            status: Only runs with this status (``"complete"``, ``"running"``,
                ``"interrupted"``); ``None`` lists all. A ``run.json`` without a status counts
                as complete.
        """
        if not self.runs_dir.is_dir():
            return []
        out = []
        for p in self.runs_dir.iterdir():
            meta_path = p / "run.json"
            if not meta_path.is_file():
                continue
            meta = json.loads(meta_path.read_text())
            if dataset is not None and meta.get("dataset") != dataset:
                continue
            if status is not None and meta.get("status", "complete") != status:
                continue
            out.append(p)
        return sorted(out, key=lambda p: (p / "run.json").stat().st_mtime)
