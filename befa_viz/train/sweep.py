"""Hyper-parameter sweeps declared explicitly in a ``sweep:`` section.

A sweep file is an ordinary training config plus a ``sweep:`` mapping from config keys
(dotted keys reach into ``model_params`` / ``adapter_params``) to lists of values::

    model: freedom
    adapter: befa
    sweep:
      lr: [1.0e-4, 5.0e-4, 1.0e-3, 5.0e-3]
      adapter_layers: [1, 2, 4, 8]
      model_params.reg_weight: [1.0e-5, 1.0e-3, 1.0e-1]

Every combination is trained (complete runs are reused), the best is chosen by the validation
metric (``config.metric``, Recall@20 by default), never by test, and all results go into one
table. Unlike MMRec's ``hyper_parameters`` lists, a list value outside ``sweep:`` is just a list.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from befa_viz.cache import atomic_write_bytes, hash_key
from befa_viz.config import read_yaml
from befa_viz.data.types import RecDataset
from befa_viz.errors import ConfigError
from befa_viz.train.config import (
    TrainConfig,
    _undot,
    _validate_keys,
    load_train_config,
    parse_overrides,
)
from befa_viz.train.run import Run, train

__all__ = ["SweepResult", "expand_grid", "read_sweep", "sweep"]

log = logging.getLogger(__name__)

SWEEP_COLUMNS: tuple[str, ...] = ("Recall@10", "Recall@20", "NDCG@10", "NDCG@20")


def read_sweep(
    config_file: str | os.PathLike[str] | Mapping[str, Any],
) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """Split a sweep file into its base config and its ``sweep:`` grid (validated)."""
    label = "sweep config" if isinstance(config_file, Mapping) else str(config_file)
    raw = dict(config_file) if isinstance(config_file, Mapping) else read_yaml(config_file)
    grid = raw.pop("sweep", None)
    if not isinstance(grid, Mapping) or not grid:
        raise ConfigError(
            f"{label} has no 'sweep:' section. Add one mapping config keys to lists of values, "
            "e.g. 'sweep: {lr: [1.0e-4, 1.0e-3]}'."
        )
    for k, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(
                f"{label}: sweep values of {k!r} must be a non-empty list; got {values!r}."
            )
    _validate_keys(_undot({k: v[0] for k, v in grid.items()}, label), label)
    return raw, {str(k): list(v) for k, v in grid.items()}


def expand_grid(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """All combinations of the grid, the last key varying fastest.

    Example:
        >>> expand_grid({"lr": [0.1, 0.2], "dim": [8]})
        [{'lr': 0.1, 'dim': 8}, {'lr': 0.2, 'dim': 8}]
    """
    keys = list(grid)
    combos = itertools.product(*(grid[k] for k in keys))
    return [dict(zip(keys, combo, strict=True)) for combo in combos]


@dataclass
class SweepResult:
    """Result of :func:`sweep`: one row per grid point, the best chosen on validation."""

    rows: list[dict[str, Any]]
    best_index: int
    metric: str
    runs: list[Run]
    dataset: str = ""
    paths: dict[str, Path] = field(default_factory=dict)

    @property
    def best(self) -> Run:
        return self.runs[self.best_index]

    def table(self) -> Any:
        import pandas as pd

        return pd.DataFrame(self.rows)

    def format(self) -> str:
        df = self.table()
        with_best = df.assign(best=["*" if i == self.best_index else "" for i in range(len(df))])
        return (f"Sweep on dataset {self.dataset} ({len(self.rows)} points)\n"
                + with_best.to_string(index=False, float_format=lambda x: f"{x:.4g}")
                + f"\nBest by valid {self.metric}: {self.best.name}")

    def save(self, folder: str | os.PathLike[str]) -> dict[str, Path]:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = {"csv": folder / "sweep.csv", "json": folder / "sweep.json"}
        atomic_write_bytes(paths["csv"], self.table().to_csv(index=False).encode())
        atomic_write_bytes(paths["json"], json.dumps(
            {"dataset": self.dataset, "metric": self.metric, "best": self.best.name,
             "rows": self.rows},
            indent=2, default=str).encode())
        self.paths = paths
        return paths


def sweep(
    dataset: RecDataset,
    config_file: str | os.PathLike[str] | Mapping[str, Any],
    *,
    runs_dir: str | os.PathLike[str],
    reports_dir: str | os.PathLike[str] | None = None,
    overrides: Sequence[str] | Mapping[str, Any] | None = None,
    progress: bool = False,
) -> SweepResult:
    """Train every point of a sweep file's grid and pick the best on validation.

    Args:
        dataset: The dataset.
        config_file: YAML file (or mapping) with a base config and a ``sweep:`` section.
        runs_dir: Where the runs go (complete runs of the same config are reused).
        reports_dir: Where ``sweep.csv`` / ``sweep.json`` go (``None``: not saved).
        overrides: ``key=value`` applied to every point; may not touch a swept key.
        progress: Progress bars.

    Returns:
        The sweep table; ``result.best`` is the best run by the validation metric.
    """
    base, grid = read_sweep(config_file)
    over = parse_overrides(overrides)
    clash = sorted(set(over) & set(grid))
    if clash:
        raise ConfigError(f"Overrides {clash} are also swept; drop them from --set or the sweep.")
    points = expand_grid(grid)
    configs: list[TrainConfig] = [load_train_config(base, {**over, **p}) for p in points]
    metric = configs[0].metric
    if any(c.metric != metric for c in configs):
        raise ConfigError("All sweep points must select on the same metric; do not sweep 'metric'.")
    rows: list[dict[str, Any]] = []
    runs: list[Run] = []
    for i, (point, cfg) in enumerate(zip(points, configs, strict=True), 1):
        log.info("sweep %d/%d: %s", i, len(points), point)
        run = train(dataset, cfg, runs_dir=runs_dir, resume=True, progress=progress)
        runs.append(run)
        row: dict[str, Any] = {"run": run.name, **point,
                               "best_epoch": run.metrics.get("best_epoch")}
        row.update({f"valid {m}": run.valid_metrics.get(m) for m in SWEEP_COLUMNS})
        row.update({f"test {m}": run.test_metrics.get(m) for m in SWEEP_COLUMNS})
        if metric not in SWEEP_COLUMNS:
            row[f"valid {metric}"] = run.valid_metrics.get(metric)
        rows.append(row)
    best = max(range(len(runs)), key=lambda j: (runs[j].valid_metrics[metric], -j))
    result = SweepResult(rows, best, metric, runs, dataset.name)
    if reports_dir is not None:
        key = hash_key([r.name for r in runs], length=8)
        result.save(Path(reports_dir) / f"sweep-{dataset.name}-{configs[0].model}-{key}")
    return result
