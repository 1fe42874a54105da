"""Train verbs: train, resolve, load, evaluate, compare and sweep runs; track them."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from befa_viz.pipeline.data import latest_features
from befa_viz.workspace import Workspace

log = logging.getLogger(__name__)

__all__ = ["compare_adapter", "evaluate_run", "load_run", "resolve_run", "run_sweep", "track_runs",
           "train_model"]


def _train_ws(workspace: Workspace | str | os.PathLike[str] | None) -> Workspace:
    return workspace if isinstance(workspace, Workspace) else Workspace(workspace)


def _train_config(
    ws: Workspace,
    *,
    model: str | None,
    config_file: Any,
    overrides: Any,
    dataset: str | None,
    features: Mapping[str, Any] | None,
    explicit: Mapping[str, Any],
    require: str | None = None,
) -> tuple[Any, Any]:
    """Resolve the config (file < overrides < explicit arguments), the dataset and features."""
    from befa_viz.errors import ConfigError
    from befa_viz.models import MODELS
    from befa_viz.train import load_train_config
    from befa_viz.train.config import parse_overrides

    over = parse_overrides(overrides)
    over.update({k: v for k, v in explicit.items() if v is not None})
    for m, p in (features or {}).items():
        over[f"features.{m}"] = str(Path(p).expanduser().resolve())
    cfg = load_train_config(config_file, over, model=model)
    name = ws.resolve_dataset(dataset or cfg.dataset, require=require)
    ds = ws.load_dataset(name)
    _refuse_items_only(ds)
    cfg = cfg.replace(dataset=name)
    if getattr(MODELS.get(cfg.model), "multimodal", True) and not cfg.features:
        found = latest_features(ws, name, cfg.modalities)
        if not found:
            raise ConfigError(
                f"No features for dataset {name!r} in workspace {ws.root}: run 'befa-viz encode' "
                "first, or pass --image-features/--text-features."
            )
        log.info("Using features %s", ", ".join(f"{m}: {p}" for m, p in found.items()))
        cfg = cfg.replace(features={m: str(p) for m, p in found.items()})
    return cfg, ds


def _refuse_items_only(ds: Any) -> None:
    """Training needs interactions: refuse an items-only dataset with what it can do."""
    from befa_viz.errors import DataError

    if ds.items_only:
        raise DataError(
            f"Dataset {ds.name!r} has no interactions (imported as items only), so there is "
            "nothing to train on. Encode it ('befa-viz encode') and explain its items with a "
            f"model-free target ('befa-viz heatmap --dataset {ds.name} --target content_focus "
            "--item ID'), or import it again with its interactions."
        )


def train_model(
    workspace: Workspace | str | os.PathLike[str] | None = None,
    *,
    model: str | None = None,
    adapter: str | None = None,
    dataset: str | None = None,
    features: Mapping[str, Any] | None = None,
    config_file: str | os.PathLike[str] | None = None,
    overrides: Any = None,
    seed: int | None = None,
    epochs: int | None = None,
    device: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = False,
    devices: int = 1,
) -> Any:  # -> befa_viz.train.Run (import kept lazy)
    """Train a backbone (with or without the adapter) on a workspace dataset.

    Precedence: defaults < ``befa_viz/configs/<model>.yaml`` < ``config_file`` < ``overrides``
    (``key=value``) < the explicit arguments. Without features, the newest encoded features of
    the dataset are used (multimodal backbones only).

    Args:
        workspace: Workspace (or its folder).
        model: Backbone name in ``MODELS``.
        adapter: ``"none"`` or ``"befa"``.
        dataset: Dataset name; default the config's, else the most recent one.
        features: ``{modality: feature folder or .npy}``.
        config_file: YAML with TrainConfig keys.
        overrides: ``["key=value", ...]`` or a mapping.
        seed: Random seed.
        epochs: Maximum epochs.
        device: Torch device.
        resume: Continue an existing run of the same config from its last checkpoint.
        overwrite: Retrain an existing run of the same config from scratch.
        progress: Progress bar.
        devices: Data-parallel processes (``torch.distributed``: gloo on CPU, one GPU each
            with ``device="cuda"``); see :func:`befa_viz.distributed.train_ddp`.

    Returns:
        The complete :class:`~befa_viz.train.Run` (``run.path`` is its folder).

    Example:
        >>> import tempfile
        >>> from befa_viz.testing import toy_dataset
        >>> ws = Workspace(tempfile.mkdtemp())
        >>> _ = toy_dataset().save(ws.dataset_dir("toy"))
        >>> run = train_model(ws, model="bprmf", epochs=2)
        >>> run.info["dataset"], run.status
        ('toy', 'complete')
    """
    from befa_viz.train import train

    ws = _train_ws(workspace)
    cfg, ds = _train_config(ws, model=model, config_file=config_file, overrides=overrides,
                            dataset=dataset, features=features,
                            explicit={"adapter": adapter, "seed": seed, "epochs": epochs,
                                      "device": device})
    if devices != 1:
        from befa_viz.distributed import train_ddp

        return train_ddp(ds, cfg, runs_dir=ws.runs_dir, n_procs=devices, resume=resume,
                         overwrite=overwrite, progress=progress)
    return train(ds, cfg, runs_dir=ws.runs_dir, resume=resume, overwrite=overwrite,
                 progress=progress)


def resolve_run(
    workspace: Workspace | str | os.PathLike[str] | None = None, run: str | os.PathLike[str] | None = None
) -> Path:
    """A run folder: a path, a run name in the workspace, or (``None``) the latest complete run."""
    from befa_viz.errors import DataError, UnknownNameError
    from befa_viz.registry import closest

    ws = _train_ws(workspace)
    if run is None:
        runs = ws.run_dirs()
        if not runs:
            raise DataError(f"No complete training run in workspace {ws.root}; train one with "
                            "'befa-viz train'.")
        if len(runs) > 1:
            log.warning("using run %s, the most recent of %d complete runs in %s; pass --run "
                        "to choose another", runs[-1].name, len(runs), ws.root)
        else:
            log.info("using run %s (the only complete run in %s)", runs[-1].name, ws.root)
        return runs[-1]
    p = Path(run).expanduser()
    if (p / "run.json").is_file():
        return p
    if (ws.runs_dir / str(run) / "run.json").is_file():
        return ws.runs_dir / str(run)
    names = [d.name for d in ws.run_dirs(status=None)]
    near = closest(str(run), names)
    hint = f" Did you mean {', '.join(map(repr, near))}?" if near else ""
    raise UnknownNameError(f"No run {str(run)!r} in workspace {ws.root}.{hint}")


def load_run(
    workspace: Workspace | str | os.PathLike[str] | None = None,
    run: str | os.PathLike[str] | None = None,
    *,
    device: str | None = None,
) -> Any:  # -> befa_viz.train.Run
    """Open a run (path, name or the latest complete one) with its model loaded lazily."""
    from befa_viz.train import Run

    return Run.load(resolve_run(workspace, run), device=device)


def evaluate_run(
    workspace: Workspace | str | os.PathLike[str] | None = None,
    run: str | os.PathLike[str] | None = None,
    *,
    batch_size: int | None = None,
    device: str | None = None,
) -> dict[str, Any]:
    """Re-evaluate a run on valid and test (full ranking) next to a most-popular baseline.

    Returns:
        ``{"run": name, "dataset": name, "valid": {...}, "test": {...},
        "most_popular": {...test...}, "recorded_test": {...}}``.
    """
    from befa_viz.metrics import MostPopular
    from befa_viz.train import evaluate

    r = load_run(workspace, run, device=device)
    bs = batch_size or r.config.eval_batch_size
    ds = r.dataset
    kw = {"batch_size": bs, "ks": r.config.topk}
    out: dict[str, Any] = {"run": r.name, "path": r.path, "dataset": r.info.get("dataset")}
    out["valid"] = evaluate(r.model, ds, "valid", **kw)
    out["test"] = evaluate(r.model, ds, "test", mask_valid=r.config.mask_valid_in_test, **kw)
    out["most_popular"] = evaluate(MostPopular(ds.interactions.train().csr()), ds, "test",
                                   mask_valid=r.config.mask_valid_in_test, **kw)
    out["recorded_test"] = r.test_metrics
    return out


def compare_adapter(
    workspace: Workspace | str | os.PathLike[str] | None = None,
    *,
    backbone: str,
    seeds: int = 3,
    dataset: str | None = None,
    features: Mapping[str, Any] | None = None,
    config_file: str | os.PathLike[str] | None = None,
    overrides: Any = None,
    epochs: int | None = None,
    device: str | None = None,
    progress: bool = False,
) -> Any:  # -> befa_viz.train.Comparison
    """Train ``backbone`` without and with BeFA over ``seeds`` seeds and compare them.

    The report (JSON, CSV, PNG, SVG) goes to ``<workspace>/reports/compare-...``; runs are
    reused when they already exist.
    """
    from befa_viz.train import compare

    ws = _train_ws(workspace)
    cfg, ds = _train_config(ws, model=backbone, config_file=config_file, overrides=overrides,
                            dataset=dataset, features=features,
                            explicit={"epochs": epochs, "device": device, "model": backbone},
                            require="compare")
    return compare(ds, cfg, runs_dir=ws.runs_dir, reports_dir=ws.reports_dir, seeds=seeds,
                   progress=progress)


def run_sweep(
    config_file: str | os.PathLike[str],
    workspace: Workspace | str | os.PathLike[str] | None = None,
    *,
    dataset: str | None = None,
    features: Mapping[str, Any] | None = None,
    overrides: Any = None,
    progress: bool = False,
) -> Any:  # -> befa_viz.train.SweepResult
    """Run a sweep file (a config with a ``sweep:`` section); the table goes to reports/."""
    from befa_viz.models import MODELS
    from befa_viz.train import sweep
    from befa_viz.train.config import parse_overrides
    from befa_viz.train.sweep import read_sweep

    ws = _train_ws(workspace)
    base, grid = read_sweep(config_file)
    over = parse_overrides(overrides)
    for m, p in (features or {}).items():
        over[f"features.{m}"] = str(Path(p).expanduser().resolve())
    name = ws.resolve_dataset(dataset or over.get("dataset") or base.get("dataset"),
                              require="sweep")
    over["dataset"] = name
    models = grid.get("model", [over.get("model") or base.get("model") or "bprmf"])
    needs_features = any(getattr(MODELS.get(m), "multimodal", True) for m in models)
    has_features = bool(base.get("features")) or any(k.startswith("features.") for k in over)
    if needs_features and not has_features:
        found = latest_features(ws, name, base.get("modalities"))
        if not found:
            from befa_viz.errors import ConfigError

            raise ConfigError(f"No features for dataset {name!r}: run 'befa-viz encode' first.")
        over.update({f"features.{m}": str(p) for m, p in found.items()})
    ds = ws.load_dataset(name)
    _refuse_items_only(ds)
    return sweep(ds, {**base, "sweep": grid}, runs_dir=ws.runs_dir,
                 reports_dir=ws.reports_dir, overrides=over, progress=progress)


def track_runs(
    runs: Any,
    workspace: Workspace | str | os.PathLike[str] | None = None,
    *,
    tracker: str = "mlflow",
    tracking_uri: str | os.PathLike[str] | None = None,
    experiment: str | None = None,
    artifacts: Any = (),
) -> list[Any]:  # -> list[befa_viz.tracking.TrackedRun]
    """Log finished runs to an experiment tracker (MLflow); see :mod:`befa_viz.tracking`.

    Args:
        runs: Runs (``Run`` objects, names or folders), or one of them.
        workspace: Workspace (or its folder).
        tracker: ``"mlflow"``.
        tracking_uri: Store URI or folder; default ``<workspace>/mlruns`` (local, no network).
        experiment: Experiment name; default ``"befa-viz"``.
        artifacts: Further files or folders (figures, reports) attached to every run.

    Returns:
        Where each run was logged, in order.
    """
    from befa_viz.tracking import DEFAULT_EXPERIMENT, default_tracking_uri, track_run

    ws = _train_ws(workspace)
    items = [runs] if isinstance(runs, (str, os.PathLike)) or hasattr(runs, "path") else runs
    uri = tracking_uri if tracking_uri is not None else default_tracking_uri(ws.root)
    out = []
    for r in items:
        folder = r.path if hasattr(r, "path") else resolve_run(ws, r)
        out.append(track_run(folder, tracking_uri=uri, tracker=tracker,
                             experiment=experiment or DEFAULT_EXPERIMENT,
                             artifacts=[Path(a) for a in artifacts]))
    return out
