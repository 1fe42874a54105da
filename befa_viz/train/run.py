"""Training runs on disk: ``train`` writes a run directory, ``Run.load`` reads it back.

A run directory (``<workspace>/runs/<dataset>-<model>-<adapter>-s<seed>-<hash>``) holds::

    config.yaml        the resolved TrainConfig
    run.json           provenance and status: dataset name + fingerprint, feature files with
                       their fingerprints and encoder keys, model, adapter, seed, timings,
                       status "running" → "complete" (or "interrupted")
    metrics.json       per-epoch history (loss, validation metrics, item representation
                       spread, adapter gate mean/std/tails, mean feature cosine),
                       best validation metrics, test at the best epoch next to the
                       most-popular baseline, the adapter gate distribution (and a one-line
                       note: bimodal / pinned), the spread of the user/item representations
                       (mean cosine, effective rank) at the best epoch, with
                       ``train_features`` how far the fine-tuned tables moved from the
                       encoder output (``feature_drift``), and the end-of-training warnings
    feature_cosine.npz with ``train_features`` only: per modality, the per-item cosine
                       between the fine-tuned table and the encoder output (best epoch)
    model.safetensors  weights of the best validation epoch
    last.safetensors   weights + optimiser + RNG states after the last finished epoch, with the
                       training state as JSON metadata (what ``resume`` continues from)

Every file is written atomically (temporary file + rename), so an interrupted run keeps its
last good checkpoint. The short hash covers the config fields that define what is trained,
the dataset fingerprint and the feature fingerprints, so the same training maps to the same
directory.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import platform
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from befa_viz.cache import atomic_write_bytes, hash_key
from befa_viz.config import load_config
from befa_viz.data.types import RecDataset
from befa_viz.errors import ConfigError, DataError, Interrupted, StaleArtifactError
from befa_viz.train.config import TrainConfig
from befa_viz.train.features import FeatureFile, load_feature_file
from befa_viz.train.trainer import (
    TrainState,
    build_model,
    check_dataset,
    drift_summary,
    fit,
    gate_note,
)

__all__ = ["Run", "RUN_FORMAT_VERSION", "train", "select_features", "run_name"]

log = logging.getLogger(__name__)

RUN_FORMAT_VERSION = 1
_META_KEY = "befa_viz"


# ---- small file helpers ---------------------------------------------------------------------
def _write_json(path: Path, obj: Any) -> None:
    text = json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n"
    atomic_write_bytes(path, text.encode())


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path} does not exist; {path.parent} is not a complete run.") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{path} is not valid JSON ({e}).") from None


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")


def _dense_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's state dict without sparse tensors (graphs are rebuilt from the data)."""
    return {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()
            if v.layout == torch.strided}


def _load_weights(
    model: torch.nn.Module, weights: Mapping[str, torch.Tensor], source: Path
) -> None:
    expected = model.state_dict()
    sparse = {k for k, v in expected.items() if v.layout != torch.strided}
    missing = set(expected) - set(weights) - sparse
    unexpected = set(weights) - set(expected)
    if missing or unexpected:
        raise StaleArtifactError(
            f"Weights in {source} do not fit the model {type(model).__name__}: missing "
            f"{sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}. The backbone's code "
            "changed since the run was trained; retrain it."
        )
    model.load_state_dict({**{k: expected[k] for k in sparse}, **weights}, strict=True)


def _save_safetensors(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    from safetensors.torch import save

    blob = save(tensors, metadata={_META_KEY: json.dumps(meta, default=str)})
    atomic_write_bytes(path, blob)


def _load_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    from safetensors import safe_open

    if not path.is_file():
        raise DataError(f"Checkpoint {path} does not exist.")
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads((f.metadata() or {}).get(_META_KEY, "{}"))
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no iter
    return tensors, meta


def _flatten_optimizer(sd: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    state_meta: dict[str, dict[str, Any]] = {}
    for idx, st in sd["state"].items():
        state_meta[str(idx)] = {}
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"optim.{idx}.{k}"] = v.detach().cpu().contiguous().clone()
            else:
                state_meta[str(idx)][k] = v
    return tensors, {"param_groups": sd["param_groups"], "state": state_meta}


def _unflatten_optimizer(
    tensors: Mapping[str, torch.Tensor], meta: dict[str, Any]
) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {int(i): dict(m) for i, m in meta["state"].items()}
    for key, v in tensors.items():
        _, idx, name = key.split(".", 2)
        state[int(idx)][name] = v
    return {"state": state, "param_groups": meta["param_groups"]}


def _save_last(
    path: Path, model: torch.nn.Module, state: TrainState, ident: dict[str, Any]
) -> None:
    tensors = {f"model.{k}": v for k, v in _dense_state(model).items()}
    opt_tensors, opt_meta = _flatten_optimizer(state.optimizer or {"state": {}, "param_groups": []})
    tensors.update(opt_tensors)
    if state.torch_rng is not None:
        tensors["rng.torch"] = state.torch_rng.clone()
    meta = {
        "format": RUN_FORMAT_VERSION, **ident, "epoch": state.epoch, "rng_state": state.rng_state,
        "history": state.history, "best_epoch": state.best_epoch,
        "best_value": None if state.best_epoch == 0 else state.best_value,
        "best_valid": state.best_valid, "bad_evals": state.bad_evals,
        "stopped_early": state.stopped_early, "optimizer": opt_meta,
    }
    _save_safetensors(path, tensors, meta)


def _load_last(path: Path) -> tuple[dict[str, torch.Tensor], TrainState, dict[str, Any]]:
    tensors, meta = _load_safetensors(path)
    weights = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    opt = {k: v for k, v in tensors.items() if k.startswith("optim.")}
    state = TrainState(
        epoch=int(meta["epoch"]), rng_state=meta["rng_state"],
        torch_rng=tensors.get("rng.torch"),
        optimizer=_unflatten_optimizer(opt, meta["optimizer"]) if meta["optimizer"]["param_groups"]
        else None,
        history=list(meta["history"]), best_epoch=int(meta["best_epoch"]),
        best_value=float("-inf") if meta["best_value"] is None else float(meta["best_value"]),
        best_valid=dict(meta["best_valid"]), bad_evals=int(meta["bad_evals"]),
        stopped_early=bool(meta["stopped_early"]),
    )
    return weights, state, meta


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def _relocate(recorded: str, rel: str | None, root: Path | None) -> Path:
    """Where a run's dataset or feature file is now.

    A run inside a workspace (``<root>/runs/<name>``) whose input lay inside its workspace
    reads that input relative to the workspace it sits in *now*: a run copied or moved into
    another workspace never reaches back to the old one through the recorded absolute path
    (the fingerprint checks then tell whether the new workspace holds the same data). Inputs
    that lay outside any workspace keep their absolute path.
    """
    if rel is not None and root is not None:
        return root / rel
    return Path(recorded)


def _workspace_root(run_dir: Path) -> Path | None:
    return run_dir.parent.parent if run_dir.parent.name == "runs" else None


def _rel(path: Path, root: Path | None) -> str | None:
    if root is None:
        return None
    try:
        return str(Path(path).resolve().relative_to(root.resolve()))
    except ValueError:
        return None


# ---- the Run -------------------------------------------------------------------------------
class Run:
    """A training run directory: config, provenance, metrics and (lazily) model and data.

    ``dataset``, ``features`` and ``model`` are loaded on first access; their fingerprints are
    checked against ``run.json`` so a changed dataset or feature file raises
    :class:`~befa_viz.errors.StaleArtifactError` instead of silently giving other results.

    Example:
        >>> import tempfile, numpy as np
        >>> from befa_viz.testing import toy_dataset
        >>> cfg = TrainConfig(model="bprmf", epochs=2)
        >>> run = train(toy_dataset(), cfg, runs_dir=tempfile.mkdtemp())
        >>> run.status, sorted(run.test_metrics)[:1], Run.load(run.path).config == cfg
        ('complete', ['MAP@10'], True)
    """

    def __init__(
        self,
        path: Path,
        config: TrainConfig,
        info: dict[str, Any],
        metrics: dict[str, Any],
        *,
        device: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.config = config
        self.info = info
        self.metrics = metrics
        self.device = device or config.device
        self._dataset: RecDataset | None = None
        self._features: dict[str, FeatureFile] | None = None
        self._model: torch.nn.Module | None = None

    def __repr__(self) -> str:
        return f"Run({self.name!r}, status={self.status!r})"

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, device: str | None = None,
             load_model: bool = False) -> Run:
        """Open a run directory.

        Args:
            path: The run directory.
            device: Device for the model (default: the one it was trained on, if available).
            load_model: Rebuild the model (and load dataset and features) right away.
        """
        path = Path(path)
        if not (path / "run.json").is_file():
            raise DataError(f"{path} is not a training run (no run.json). Train one with "
                            "'befa-viz train'.")
        info = _read_json(path / "run.json")
        config = load_config(TrainConfig, yaml.safe_load((path / "config.yaml").read_text()) or {},
                             where=str(path / "config.yaml"))
        metrics = _read_json(path / "metrics.json") if (path / "metrics.json").is_file() else {}
        if device is None and config.device != "cpu":
            device = config.device if _device_available(config.device) else "cpu"
        run = cls(path, config, info, metrics, device=device)
        if load_model:
            _ = run.model
        return run

    # -- metadata ------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.path.name

    @property
    def status(self) -> str:
        return str(self.info.get("status", "unknown"))

    @property
    def fingerprint(self) -> str:
        """Digest of the best weights: identifies the trained model (for cache keys)."""
        fp = self.info.get("weights_fingerprint")
        if not fp:
            raise DataError(f"Run {self.name} is not complete (status {self.status!r}).")
        return str(fp)

    @property
    def valid_metrics(self) -> dict[str, float]:
        """Validation metrics at the best epoch."""
        return dict(self.metrics.get("best_valid", {}))

    @property
    def test_metrics(self) -> dict[str, float]:
        """Test metrics at the best validation epoch."""
        return dict(self.metrics.get("test", {}))

    @property
    def gate(self) -> dict[str, dict[str, float]]:
        """The adapter gate distribution per modality at the best epoch (empty without)."""
        return dict(self.metrics.get("gate", {}))

    @property
    def representations(self) -> dict[str, dict[str, float]]:
        """Spread of the final user/item representations at the best epoch (mean pairwise
        cosine, effective rank; see :func:`~befa_viz.train.trainer.representation_summary`).
        Empty for runs trained before it was recorded."""
        return dict(self.metrics.get("representations", {}))

    @property
    def history(self) -> list[dict[str, Any]]:
        return list(self.metrics.get("history", []))

    @property
    def gate_notes(self) -> dict[str, str]:
        """One line per modality describing the gate (bimodal / pinned / unimodal)."""
        return dict(self.metrics.get("gate_notes", {}))

    @property
    def trained_features(self) -> bool:
        """Whether the model fine-tuned its raw feature tables (``train_features``)."""
        return bool(self.config.train_features)

    @property
    def feature_drift(self) -> dict[str, dict[str, float]]:
        """Per modality, mean/min/quantiles of cos(fine-tuned row, encoder output row) over
        items (empty when the features were frozen)."""
        return dict(self.metrics.get("feature_drift", {}))

    def feature_cosine(self, modality: str) -> np.ndarray | None:
        """Per-item cos(fine-tuned feature, encoder output) of ``modality``, ``[n_items]``.

        ``None`` when the run kept its features frozen (the model used the encoder output).

        Raises:
            DataError: If the run fine-tuned its features but has no ``feature_cosine.npz``
                for ``modality`` (incomplete run).
        """
        if not self.trained_features:
            return None
        path = self.path / "feature_cosine.npz"
        if not path.is_file():
            raise DataError(f"Run {self.name} fine-tuned its features but has no {path.name} "
                            f"(status {self.status!r}); resume or retrain it.")
        with np.load(path) as z:
            if modality not in z.files:
                raise DataError(f"Run {self.name}: {path.name} has no {modality!r} entry "
                                f"(it has {sorted(z.files)}).")
            return np.asarray(z[modality])

    def feature_note(self, modality: str, item_idx: int) -> str | None:
        """The explorer's line for a fine-tuned feature, or ``None`` for frozen features.

        Example: "this model used a fine-tuned copy of the image feature (cosine 0.93 to the
        encoder output); the maps explain the encoder output".
        """
        cos = self.feature_cosine(modality)
        if cos is None:
            return None
        return (f"this model used a fine-tuned copy of the {modality} feature (cosine "
                f"{float(cos[item_idx]):.3f} to the encoder output); the maps explain the "
                "encoder output")

    # -- artifacts -------------------------------------------------------------------------
    @property
    def dataset(self) -> RecDataset:
        """The dataset the run was trained on (fingerprint checked)."""
        if self._dataset is None:
            rec = self.info["dataset_path"]
            p = Path(rec) if Path(rec).is_absolute() else self.path / rec
            p = _relocate(str(p), self.info.get("dataset_relpath"), _workspace_root(self.path))
            if not (p / "dataset.json").is_file():
                raise DataError(
                    f"Run {self.name}: its dataset {self.info['dataset']!r} is not at {p}. "
                    "Import the same data into this workspace under that name (befa-viz data "
                    "import ... --name " + str(self.info["dataset"]) + ")."
                )
            ds = RecDataset.load(p)
            expected = self.info.get("dataset_copy_fingerprint") or self.info["dataset_fingerprint"]
            if ds.fingerprint() != expected:
                raise StaleArtifactError(
                    f"Run {self.name} was trained on dataset {self.info['dataset']!r} with "
                    f"fingerprint {expected}, but {p} has {ds.fingerprint()} (other data "
                    "under the same name, or the data changed). Retrain the run on this "
                    "dataset, or import the data it was trained on."
                )
            self._dataset = ds
        return self._dataset

    @property
    def features(self) -> dict[str, FeatureFile]:
        """The feature tables per modality (fingerprints checked)."""
        if self._features is None:
            out: dict[str, FeatureFile] = {}
            for m, prov in self.info.get("features", {}).items():
                p = _relocate(prov["path"], prov.get("relpath"), _workspace_root(self.path))
                f = load_feature_file(p, m)
                if f.fingerprint != prov["fingerprint"]:
                    raise StaleArtifactError(
                        f"Run {self.name}: the {m} features at {p} changed since training "
                        f"(fingerprint {f.fingerprint}, recorded {prov['fingerprint']}). Retrain "
                        "the run or restore the original feature file."
                    )
                out[m] = f
            self._features = out
        return self._features

    @property
    def model(self) -> torch.nn.Module:
        """The recommender with the best weights, in eval mode."""
        if self._model is None:
            weights_path = self.path / "model.safetensors"
            if not weights_path.is_file():
                raise DataError(f"Run {self.name} has no model.safetensors (status "
                                f"{self.status!r}); resume or retrain it.")
            cfg = self.config.replace(device=self.device)
            model = build_model(cfg, self.dataset, {m: f.values for m, f in self.features.items()})
            weights, _ = _load_safetensors(weights_path)
            _load_weights(model, {k: v.to(self.device) for k, v in weights.items()}, weights_path)
            model.eval()
            self._model = model
        return self._model


def _device_available(device: str) -> bool:
    try:
        dev = torch.device(device)
    except RuntimeError:
        return False
    return dev.type == "cpu" or (dev.type == "cuda" and torch.cuda.is_available())


# ---- training into a run directory ---------------------------------------------------------
def select_features(
    config: TrainConfig, n_items: int, dataset_fingerprint: str | None = None
) -> dict[str, FeatureFile]:
    """Load the feature files ``config`` asks for, after checking the backbone's needs.

    Raises:
        ConfigError: A multimodal backbone without features, a required modality missing, or a
            modality listed in ``config.modalities`` without a feature file.
        DataError: A feature file with the wrong row count, NaN, or unreadable.
    """
    from befa_viz.models import MODELS

    cls = MODELS.get(config.model)
    if not getattr(cls, "multimodal", True):
        return {}
    paths = dict(config.features)
    if config.modalities is not None:
        missing = [m for m in config.modalities if m not in paths]
        if missing:
            raise ConfigError(
                f"Config 'modalities' lists {missing} but no feature file is given for "
                f"{'it' if len(missing) == 1 else 'them'} (features: {sorted(paths) or 'none'}). "
                f"Pass e.g. --{missing[0]}-features PATH or run 'befa-viz encode'."
            )
        paths = {m: paths[m] for m in config.modalities}
    required = tuple(getattr(cls, "required_modalities", ()))
    lacking = [m for m in required if m not in paths]
    if lacking:
        raise ConfigError(
            f"Model {config.model!r} needs the {', '.join(map(repr, lacking))} modality; features "
            f"given: {sorted(paths) or 'none'}. Pass --{lacking[0]}-features PATH or run "
            "'befa-viz encode'."
        )
    if not paths:
        raise ConfigError(
            f"Model {config.model!r} is multimodal and needs content features; none were given. "
            "Pass --image-features/--text-features, or run 'befa-viz encode' first."
        )
    return {m: load_feature_file(p, m, n_items=n_items, dataset_fingerprint=dataset_fingerprint)
            for m, p in sorted(paths.items())}


def run_name(dataset: RecDataset, config: TrainConfig,
             features: Mapping[str, FeatureFile]) -> str:
    """``<dataset>-<model>-<adapter>-s<seed>-<hash>`` for this training."""
    h = hash_key(config.identity(), dataset.fingerprint(),
                 {m: f.fingerprint for m, f in features.items()}, length=8)
    return f"{dataset.name}-{config.model}-{config.adapter}-s{config.seed}-{h}"


def _check_resumable(run_dir: Path, info: dict[str, Any], config: TrainConfig,
                     dataset: RecDataset, features: Mapping[str, FeatureFile]) -> None:
    saved = load_config(TrainConfig, yaml.safe_load((run_dir / "config.yaml").read_text()) or {},
                        where=str(run_dir / "config.yaml"))
    a, b = saved.identity(), config.identity()
    diff = sorted(k for k in a if a[k] != b[k])
    if diff:
        detail = ", ".join(f"{k}: {a[k]!r} → {b[k]!r}" for k in diff[:5])
        raise ConfigError(
            f"Cannot resume run {run_dir.name}: its config differs ({detail}). Only epochs, device "
            "and eval_batch_size may change on resume; train a new run instead."
        )
    if info.get("dataset_fingerprint") != dataset.fingerprint():
        raise StaleArtifactError(
            f"Cannot resume run {run_dir.name}: it was trained on dataset "
            f"{info.get('dataset')!r} (fingerprint {info.get('dataset_fingerprint')}), not on "
            f"{dataset.name!r} ({dataset.fingerprint()}). Train a new run instead."
        )
    recorded = {m: p["fingerprint"] for m, p in info.get("features", {}).items()}
    current = {m: f.fingerprint for m, f in features.items()}
    if recorded != current:
        raise StaleArtifactError(
            f"Cannot resume run {run_dir.name}: its features {recorded} differ from the given "
            f"ones {current}. Train a new run instead."
        )


def train(
    dataset: RecDataset,
    config: TrainConfig,
    *,
    runs_dir: str | os.PathLike[str],
    name: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = False,
    on_epoch_end: Callable[[TrainState, torch.nn.Module, bool], None] | None = None,
) -> Run:
    """Train ``config`` on ``dataset`` into a run directory under ``runs_dir``.

    All inputs are checked before the first epoch: backbone name and parameters, modalities
    and feature files (rows = items, finite), adapter vs backbone, non-empty splits, and on
    resume that the checkpoint belongs to the same config, dataset and features.

    Args:
        dataset: Dataset with train/valid/test splits. One without a folder on disk (e.g. a
            toy) is saved inside the run so that :meth:`Run.load` can find it.
        config: Resolved training configuration (see
            :func:`~befa_viz.train.load_train_config`).
        runs_dir: Parent folder of run directories (``Workspace.runs_dir``).
        name: Run directory name; default :func:`run_name`.
        resume: Continue from ``last.safetensors`` if the run exists (a complete run is
            returned as is unless ``config.epochs`` grew and it did not stop early).
        overwrite: Delete an existing run of the same name and train from scratch.
        progress: Show a progress bar.
        on_epoch_end: Extra callback after each epoch's checkpoint (tests, frontends).

    Returns:
        The complete run.

    Raises:
        ConfigError, DataError, StaleArtifactError, UnknownNameError: On bad input, before
            training starts.
    """
    from befa_viz import __version__

    check_dataset(dataset)
    features = select_features(config, dataset.n_items, dataset.fingerprint())
    model = build_model(config, dataset, {m: f.values for m, f in features.items()})
    name = name or run_name(dataset, config, features)
    run_dir = Path(runs_dir).expanduser().resolve() / name
    root = _workspace_root(run_dir)

    state: TrainState | None = None
    best_weights: dict[str, torch.Tensor] | None = None
    info: dict[str, Any] | None = None
    if (run_dir / "run.json").is_file() or (run_dir / "last.safetensors").is_file():
        if overwrite:
            shutil.rmtree(run_dir)
        elif resume:
            info = _read_json(run_dir / "run.json")
            _check_resumable(run_dir, info, config, dataset, features)
            if (run_dir / "last.safetensors").is_file():
                weights, state, _ = _load_last(run_dir / "last.safetensors")
                _load_weights(model, weights, run_dir / "last.safetensors")
                if (run_dir / "model.safetensors").is_file():
                    best_weights, _ = _load_safetensors(run_dir / "model.safetensors")
                    expected = model.state_dict()
                    best_weights = {**{k: v for k, v in expected.items()
                                       if v.layout != torch.strided}, **best_weights}
            done = state is not None and (state.stopped_early or state.epoch >= config.epochs)
            if info.get("status") == "complete" and done:
                log.info("Run %s is already complete; nothing to resume.", name)
                return Run.load(run_dir, device=config.device)
            log.info("resumed run %s from epoch %d", name, state.epoch if state else 0)
        else:
            status = _read_json(run_dir / "run.json").get("status", "unknown") \
                if (run_dir / "run.json").is_file() else "unknown"
            raise ConfigError(
                f"Run {run_dir} already exists (status {status!r}). Resume it (--resume), "
                "or pass --overwrite to train it again from scratch."
            )
    run_dir.mkdir(parents=True, exist_ok=True)

    copy_fp = None
    if dataset.path is not None and (Path(dataset.path) / "dataset.json").is_file():
        ds_path = str(Path(dataset.path).resolve())
    else:  # an in-memory dataset: keep a copy so that the run can be reloaded
        dataset.save(run_dir / "dataset")
        ds_path = "dataset"
        # the saved copy may normalise paths (hence its fingerprint); Run.load checks the copy
        copy_fp = RecDataset.load(run_dir / "dataset").fingerprint()
    ident = {"config_hash": config.short_hash(), "dataset_fingerprint": dataset.fingerprint(),
             "features": {m: f.fingerprint for m, f in features.items()}}
    feature_prov = {m: {**f.provenance(), "relpath": _rel(f.path, root)}
                    for m, f in features.items()}
    started = _now()
    info = {
        "format": RUN_FORMAT_VERSION, "name": name, "status": "running",
        "dataset": dataset.name, "dataset_fingerprint": dataset.fingerprint(),
        "dataset_path": ds_path, "dataset_copy_fingerprint": copy_fp,
        "dataset_relpath": _rel(Path(ds_path), root) if Path(ds_path).is_absolute() else None,
        "n_users": dataset.n_users, "n_items": dataset.n_items,
        "model": config.model, "adapter": config.adapter, "seed": config.seed,
        "config_hash": config.short_hash(), "features": feature_prov,
        "created": (info or {}).get("created", started), "started": started,
        "versions": {"befa_viz": __version__, "torch": torch.__version__,
                     "numpy": np.__version__, "python": platform.python_version()},
        "device": config.device,
    }
    atomic_write_bytes(run_dir / "config.yaml",
                       yaml.safe_dump(config.to_dict(), sort_keys=True).encode())
    _write_json(run_dir / "run.json", info)

    def write_metrics(state: TrainState, extra: dict[str, Any]) -> None:
        _write_json(run_dir / "metrics.json", {
            "metric": config.metric, "history": state.history, "best_epoch": state.best_epoch,
            "best_valid": state.best_valid, "stopped_early": state.stopped_early,
            "epochs_run": state.epoch, **extra})

    kept = {"epoch": state.epoch if state is not None else 0}

    def checkpoint(state: TrainState, model: torch.nn.Module, improved: bool) -> None:
        kept["epoch"] = state.epoch
        if improved:
            _save_safetensors(run_dir / "model.safetensors", _dense_state(model),
                              {"epoch": state.epoch, **ident})
        _save_last(run_dir / "last.safetensors", model, state, ident)
        write_metrics(state, {})
        if on_epoch_end is not None:
            on_epoch_end(state, model, improved)

    try:
        result = fit(model, dataset, config, state=state, best_weights=best_weights,
                     progress=progress, on_epoch_end=checkpoint)
        _save_safetensors(run_dir / "model.safetensors", _dense_state(model),
                          {"epoch": result.state.best_epoch, **ident})
        if result.feature_cosine:
            buf = io.BytesIO()
            np.savez(buf, allow_pickle=False, **result.feature_cosine)
            atomic_write_bytes(run_dir / "feature_cosine.npz", buf.getvalue())
        write_metrics(result.state, {
            "test": result.test, "most_popular": result.most_popular, "gate": result.gate,
            "gate_notes": {m: gate_note(g) for m, g in result.gate.items()},
            "representations": result.representations,
            "feature_drift": {m: drift_summary(c) for m, c in result.feature_cosine.items()},
            "warnings": result.warnings})
    except BaseException as e:
        info.update(status="interrupted", updated=_now(), error=f"{type(e).__name__}: {e}")
        _write_json(run_dir / "run.json", info)
        if isinstance(e, KeyboardInterrupt) and not isinstance(e, Interrupted):
            raise Interrupted(
                f"interrupted; {kept['epoch']} of {config.epochs} epochs kept (run {name}), "
                "rerun with --resume resumes") from None
        raise
    n_epochs = max(len(result.state.history), 1)
    info.update(
        status="complete", finished=_now(), updated=_now(),
        best_epoch=result.state.best_epoch, epochs_run=result.state.epoch,
        stopped_early=result.state.stopped_early,
        weights_fingerprint=_file_digest(run_dir / "model.safetensors"),
        timings={"train_seconds": result.train_seconds, "eval_seconds": result.eval_seconds,
                 "seconds_per_epoch": result.train_seconds / n_epochs},
    )
    info.pop("error", None)
    _write_json(run_dir / "run.json", info)
    run = Run.load(run_dir, device=config.device)
    run._dataset = dataset
    run._features = dict(features)
    run._model = model.eval()
    return run
