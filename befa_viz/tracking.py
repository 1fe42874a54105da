"""Optional experiment tracking: log finished training runs to MLflow.

Tracking post-processes a run directory (``config.yaml``, ``run.json``, ``metrics.json``), so
training itself knows nothing about it: parameters are the resolved config (nested keys
dotted, e.g. ``model_params.reg_weight``) plus the provenance (dataset and feature
fingerprints, encoders); metrics are every number of each ``history`` entry at its epoch
(loss, ``valid.Recall_at_20``, and whatever else the trainer records, such as per-evaluation
gate statistics), plus the best-validation and test metrics, the BeFA gate distribution
(``gate.<modality>.<stat>``) and the representation spread; artifacts are the run's files and
figures, and any further figures given (a comparison's plots, heatmap reports).

The default store is a local folder, ``<workspace>/mlruns``: nothing needs the network, and
``mlflow ui --backend-store-uri <workspace>/mlruns`` shows it. MLflow 3 keeps its folder
("file") store in maintenance mode and refuses it unless ``MLFLOW_ALLOW_FILE_STORE=true``;
befa-viz sets that (and ``MLFLOW_DISABLE_TELEMETRY=true``) for its own process when it opens a
folder store, and :meth:`TrackedRun.view_command` includes it. A ``sqlite:///...`` URI works
as well (MLflow's recommended local database; its first use takes ~10 s to create the tables).

mlflow is heavy to import (~3 s) and optional (``pip install 'befa-viz[track]'``): it is
imported only when a run is tracked.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from befa_viz.errors import ConfigError, DataError, MissingDependencyError

__all__ = ["TRACKERS", "DEFAULT_EXPERIMENT", "TrackedRun", "default_tracking_uri", "track_run"]

log = logging.getLogger(__name__)

#: Supported trackers (``--track``).
TRACKERS = ("mlflow",)
DEFAULT_EXPERIMENT = "befa-viz"
_FIGURE_SUFFIXES = (".png", ".svg", ".pdf", ".html")
_RUN_FILES = ("config.yaml", "run.json", "metrics.json")
_BATCH = 900  # MLflow accepts at most 1000 metrics per log_batch call


@dataclass(frozen=True)
class TrackedRun:
    """Where a befa-viz run was logged.

    Attributes:
        run_id: MLflow run id.
        tracking_uri: The store (``file:///...`` or ``sqlite:///...``).
        experiment: Experiment name.
        reused: ``True`` if this exact run (same metrics) was logged before and was not
            logged again.
    """

    run_id: str
    tracking_uri: str
    experiment: str
    reused: bool = False

    def view_command(self) -> str:
        """The shell command that opens the MLflow UI on this store."""
        uri = self.tracking_uri
        if uri.startswith("file:"):
            return f"MLFLOW_ALLOW_FILE_STORE=true mlflow ui --backend-store-uri {uri}"
        return f"mlflow ui --backend-store-uri {uri}"


def default_tracking_uri(workspace_root: str | os.PathLike[str]) -> str:
    """The local store of a workspace: ``file://<workspace>/mlruns``."""
    return (Path(workspace_root).expanduser().resolve() / "mlruns").as_uri()


def _normalise_uri(uri: str | os.PathLike[str]) -> str:
    text = str(uri)
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", text) and not re.match(r"^[A-Za-z]:[\\/]", text):
        return text  # already a URI (file:, sqlite:, http:, ...)
    return Path(text).expanduser().resolve().as_uri()


def _client(uri: str) -> Any:
    """An ``MlflowClient`` on ``uri``; mlflow imported here (it is slow and optional)."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # never phone home
    if uri.startswith("file:"):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise MissingDependencyError(
            "mlflow is not installed, so runs cannot be tracked (--track mlflow). Install "
            "with: pip install 'befa-viz[track]'."
        ) from None
    return MlflowClient(tracking_uri=uri)


def _key(text: str) -> str:
    """An MLflow-safe metric/param name (``Recall@20`` → ``Recall_at_20``)."""
    return re.sub(r"[^\w.\-/ :]", "_", text.replace("@", "_at_"))


def _flat(prefix: str, value: Any) -> Iterable[tuple[str, Any]]:
    if isinstance(value, Mapping):
        for k, v in value.items():
            yield from _flat(f"{prefix}.{k}" if prefix else str(k), v)
    else:
        yield prefix, value


def _numbers(prefix: str, value: Any) -> dict[str, float]:
    """Every finite number in a nested mapping, under dotted keys (lists are skipped)."""
    out = {}
    for k, v in _flat(prefix, value):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if math.isfinite(float(v)):
            out[_key(k)] = float(v)
    return out


def _param_value(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return ",".join(map(str, v))
    return "none" if v is None else str(v)


def _read(run_dir: Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    missing = [n for n in _RUN_FILES if not (run_dir / n).is_file()]
    if missing:
        raise DataError(
            f"{run_dir} is not a finished befa-viz run (missing {', '.join(missing)}); track "
            "runs after 'befa-viz train' has written them."
        )
    config = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    info = json.loads((run_dir / "run.json").read_text())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return config, info, metrics


def _params(config: Mapping[str, Any], info: Mapping[str, Any]) -> dict[str, str]:
    params = {_key(k): _param_value(v) for k, v in _flat("", config)}
    for k in ("dataset", "dataset_fingerprint", "config_hash", "n_users", "n_items"):
        if info.get(k) is not None:
            params[_key(k)] = _param_value(info[k])
    for m, prov in (info.get("features") or {}).items():
        for k in ("encoder", "fingerprint", "shape"):
            if prov.get(k) is not None:
                params[_key(f"features.{m}.{k}")] = _param_value(prov[k])
    return params


def _metric_rows(metrics: Mapping[str, Any]) -> list[tuple[str, float, int]]:
    rows: list[tuple[str, float, int]] = []
    for entry in metrics.get("history", []):
        step = int(entry.get("epoch", len(rows)))
        rows += [(k, v, step) for k, v in _numbers("", {k: v for k, v in entry.items()
                                                         if k != "epoch"}).items()]
    best = int(metrics.get("best_epoch") or 0)
    for section in ("best_valid", "test", "gate", "representations"):
        if section in metrics:
            rows += [(k, v, best) for k, v in _numbers(section, metrics[section]).items()]
    for k in ("best_epoch", "epochs_run"):
        if isinstance(metrics.get(k), (int, float)):
            rows.append((k, float(metrics[k]), best))
    return rows


def _artifacts(run_dir: Path, extra: Sequence[str | os.PathLike[str]]) -> list[tuple[Path, str]]:
    out = [(run_dir / n, "") for n in _RUN_FILES]
    out += [(p, "figures") for p in sorted(run_dir.rglob("*"))
            if p.is_file() and p.suffix.lower() in _FIGURE_SUFFIXES]
    for a in extra:
        p = Path(a)
        if not p.exists():
            raise DataError(f"Artifact {p} to track does not exist.")
        out.append((p, "reports"))
    return out


def track_run(
    run_dir: str | os.PathLike[str],
    *,
    tracking_uri: str | os.PathLike[str] | None = None,
    experiment: str = DEFAULT_EXPERIMENT,
    artifacts: Sequence[str | os.PathLike[str]] = (),
    tracker: str = "mlflow",
) -> TrackedRun:
    """Log one finished run (params, per-epoch metrics, gate, files and figures) to MLflow.

    Logging the same run again (same run folder and metrics) is a no-op that returns the
    earlier MLflow run; a resumed run with new epochs is logged as a new MLflow run.

    Args:
        run_dir: The run folder (``<workspace>/runs/<name>``).
        tracking_uri: MLflow store: a URI or a folder; default ``<workspace>/mlruns`` of the
            workspace the run sits in (else ``<run_dir>/../mlruns``).
        experiment: Experiment name (created when missing).
        artifacts: Further files or folders to attach (under ``reports/``).
        tracker: Only ``"mlflow"``.

    Returns:
        Where the run was logged.

    Raises:
        ConfigError: Unknown tracker.
        DataError: ``run_dir`` is not a finished run, or an artifact is missing.
        MissingDependencyError: mlflow is not installed.
    """
    if tracker not in TRACKERS:
        raise ConfigError(f"Unknown tracker {tracker!r}; accepted: {', '.join(TRACKERS)} "
                          "(--track mlflow).")
    folder = Path(run_dir).expanduser().resolve()
    config, info, metrics = _read(folder)
    if tracking_uri is None:
        root = folder.parent.parent if folder.parent.name == "runs" else folder.parent
        uri = default_tracking_uri(root)
    else:
        uri = _normalise_uri(tracking_uri)
    digest = hashlib.sha256((folder.name + (folder / "metrics.json").read_text()).encode())
    key = digest.hexdigest()[:16]

    client = _client(uri)
    from mlflow.entities import Metric, Param, RunStatus  # after _client's dependency check

    exp = client.get_experiment_by_name(experiment)
    exp_id = exp.experiment_id if exp is not None else client.create_experiment(experiment)
    found = client.search_runs([exp_id], f"tags.`befa_viz.key` = '{key}'", max_results=1)
    if found:
        log.info("run %s is already tracked as MLflow run %s", folder.name, found[0].info.run_id)
        return TrackedRun(found[0].info.run_id, uri, experiment, reused=True)
    tags = {"befa_viz.key": key, "befa_viz.run": folder.name, "befa_viz.run_dir": str(folder),
            "befa_viz.status": str(info.get("status", "complete")),
            "model": str(config.get("model")), "adapter": str(config.get("adapter")),
            "dataset": str(info.get("dataset"))}
    run = client.create_run(exp_id, run_name=folder.name, tags=tags)
    run_id = run.info.run_id
    try:
        now = int(time.time() * 1000)
        client.log_batch(run_id, params=[Param(k, v[:6000])
                                         for k, v in sorted(_params(config, info).items())])
        rows = [Metric(k, v, now, step) for k, v, step in _metric_rows(metrics)]
        for start in range(0, len(rows), _BATCH):
            client.log_batch(run_id, metrics=rows[start:start + _BATCH])
        for path, sub in _artifacts(folder, artifacts):
            if path.is_dir():
                client.log_artifacts(run_id, str(path), f"reports/{path.name}")
            else:
                client.log_artifact(run_id, str(path), sub or None)
    except BaseException:
        client.set_terminated(run_id, RunStatus.to_string(RunStatus.FAILED))
        raise
    status = RunStatus.FINISHED if info.get("status", "complete") == "complete" \
        else RunStatus.KILLED
    client.set_terminated(run_id, RunStatus.to_string(status))
    log.info("tracked run %s as MLflow run %s in %s", folder.name, run_id, uri)
    return TrackedRun(run_id, uri, experiment)
