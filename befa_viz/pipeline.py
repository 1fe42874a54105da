"""The verbs every frontend (CLI, explorer, notebooks) calls.

Each verb takes plain arguments plus a :class:`~befa_viz.workspace.Workspace`, does one job,
and returns a result object or paths. Frontends never reach below this module and ``viz``.
"""

from __future__ import annotations

from befa_viz.workspace import Workspace

__all__ = ["Workspace"]

# ---- data verbs (import, validate, stats, export, synth) ---------------------------------
# A dataset lives in <workspace>/datasets/<name>/ (RecDataset.save's files). Feature arrays that
# came with an import (MMRec's *_feat.npy) sit beside it in features/<modality>_feat.npy with a
# manifest.json; encoded features live in the feature store (<workspace>/features/...).

import json  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
from collections.abc import Mapping  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

log = logging.getLogger(__name__)
_DATASET_NAME_CHARS = "letters, digits, '.', '_' and '-'"
IMPORTED_FEATURES_DIR = "features"


def _data_ws(workspace: Workspace | str | os.PathLike[str] | None) -> Workspace:
    return workspace if isinstance(workspace, Workspace) else Workspace(workspace)


def import_dataset(
    source_kind: str,
    path: str | os.PathLike[str],
    *,
    workspace: Workspace | str | os.PathLike[str] | None = None,
    name: str | None = None,
    overwrite: bool = False,
    **options: Any,
) -> Path:
    """Import a dataset with a registered importer and save it into the workspace.

    Re-importing identical data under the same name is a no-op; different data under an
    existing name needs ``overwrite=True``. The write is atomic (dataset and features together).

    Args:
        source_kind: Importer name in ``befa_viz.data.DATASETS`` (``mmrec``, ``table``,
            ``movielens``).
        path: The source folder.
        workspace: Workspace (or its folder); default ``Workspace()``.
        name: Dataset name (folder name under ``datasets/``); default: the importer's.
        overwrite: Replace an existing dataset with different content.
        **options: The importer's keyword options (see ``importer_options(source_kind)``).

    Returns:
        The dataset folder ``<workspace>/datasets/<name>``.

    Raises:
        UnknownNameError: If ``source_kind`` is not registered.
        ConfigError: For an option the importer does not take, or a bad name.
        DataError: For bad input data (naming the file/row), or a name clash.

    Example:
        >>> import tempfile
        >>> from befa_viz.data import export_mmrec
        >>> from befa_viz.testing import toy_dataset
        >>> src = export_mmrec(toy_dataset(), tempfile.mkdtemp())
        >>> import_dataset("mmrec", src, workspace=tempfile.mkdtemp(), name="toy").name
        'toy'
    """
    import dataclasses
    import hashlib
    import re

    from befa_viz.cache import atomic_dir, hash_key
    from befa_viz.data.mmrec import save_feature_arrays
    from befa_viz.data.registry import DATASETS, importer_options
    from befa_viz.data.validate import check_dataset
    from befa_viz.errors import ConfigError, DataError
    from befa_viz.registry import closest

    ws = _data_ws(workspace)
    importer = DATASETS.get(source_kind)
    accepted = [o for o in importer_options(source_kind) if o != "name"]
    for key in options:
        if key not in accepted:
            near = closest(key, accepted)
            hint = f" Did you mean {' or '.join(map(repr, near))}?" if near else ""
            raise ConfigError(
                f"The {source_kind!r} importer has no option {key!r}.{hint} Accepted: "
                f"{', '.join(accepted)}."
            )
    if name is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise ConfigError(f"Dataset name {name!r} must use only {_DATASET_NAME_CHARS}.")
    ds, features = importer(path, **({"name": name} if name else {}), **options)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", ds.name):
        raise ConfigError(
            f"Dataset name {ds.name!r} (from the source) must use only {_DATASET_NAME_CHARS}; "
            "pass name=... (--name)."
        )
    check_dataset(ds, features=features).raise_for_problems()
    feat_digest = {m: hash_key(list(a.shape), hashlib.sha256(a.tobytes()).hexdigest())
                   for m, a in sorted(features.items())}
    digest = hash_key(ds.fingerprint(), ds.info, feat_digest)
    ds = dataclasses.replace(
        ds, info={**ds.info, "import": {"kind": source_kind, "digest": digest}}
    )
    target = ws.dataset_dir(ds.name)
    meta_path = target / "dataset.json"
    if meta_path.is_file() and not overwrite:
        old = json.loads(meta_path.read_text()).get("info", {}).get("import", {})
        if old.get("digest") == digest:
            log.info("dataset %r is unchanged in %s", ds.name, target)
            return target
        raise DataError(
            f"Dataset {ds.name!r} already exists in {ws.root} with different content. Pass "
            "overwrite=True (--overwrite) to replace it, or choose another name (--name)."
        )
    with atomic_dir(target) as tmp:
        ds.save(tmp)
        if features:
            fdir = tmp / IMPORTED_FEATURES_DIR
            save_feature_arrays(fdir, features, n_items=ds.n_items)
            manifest = {
                "kind": "imported-features",
                "dataset": ds.name,
                "dataset_fingerprint": ds.fingerprint(),
                "source": ds.info.get("source"),
                "modalities": {m: {"file": f"{m}_feat.npy", "shape": list(a.shape),
                                   "digest": feat_digest[m]} for m, a in sorted(features.items())},
            }
            (fdir / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True,
                                                           default=str) + "\n")
    log.info("imported %r (%s) into %s", ds.name, source_kind, target)
    return target


def dataset_features_dir(
    dataset: str | None = None, *, workspace: Workspace | str | os.PathLike[str] | None = None
) -> Path | None:
    """Folder of the feature arrays imported with ``dataset`` (MMRec), or ``None``."""
    ws = _data_ws(workspace)
    folder = ws.dataset_dir(ws.resolve_dataset(dataset)) / IMPORTED_FEATURES_DIR
    return folder if folder.is_dir() else None


def dataset_features(
    dataset: str | None = None, *, workspace: Workspace | str | os.PathLike[str] | None = None
) -> dict[str, Any]:
    """Feature arrays imported with ``dataset`` as ``{modality: float32 [n_items, dim]}``.

    Empty when the dataset came without features (encode some with ``befa-viz encode``).
    """
    from befa_viz.data.mmrec import load_feature_arrays

    ws = _data_ws(workspace)
    name = ws.resolve_dataset(dataset)
    folder = dataset_features_dir(name, workspace=ws)
    if folder is None:
        return {}
    n_items = int(json.loads((ws.dataset_dir(name) / "dataset.json").read_text())["n_items"])
    return load_feature_arrays(folder, n_items=n_items)


def validate_dataset(
    dataset: str | None = None,
    *,
    workspace: Workspace | str | os.PathLike[str] | None = None,
    check_images: bool = False,
) -> Any:  # -> befa_viz.data.ValidationReport (import kept lazy)
    """Check a workspace dataset (splits, ids, images, texts, imported features).

    Args:
        dataset: Dataset name; default: the latest imported one.
        workspace: Workspace (or its folder).
        check_images: Decode every image with PIL (else only existence is checked).

    Returns:
        A ``ValidationReport`` (``.ok``, ``.problems``, ``.warnings``, ``.dataset``).
    """
    from befa_viz.data.mmrec import load_feature_arrays
    from befa_viz.data.validate import check_dataset
    from befa_viz.errors import DataError

    ws = _data_ws(workspace)
    name = ws.resolve_dataset(dataset)
    ds = ws.load_dataset(name)
    folder = dataset_features_dir(name, workspace=ws)
    feature_problem = None
    features: dict[str, Any] = {}
    if folder is not None:
        try:
            features = load_feature_arrays(folder)
        except DataError as e:
            feature_problem = str(e)
    report = check_dataset(ds, features=features, check_images=check_images)
    if feature_problem:
        report.problems.append(feature_problem)
    return report


def dataset_stats(
    dataset: str | None = None, *, workspace: Workspace | str | os.PathLike[str] | None = None
) -> dict[str, Any]:
    """Summary counts of a workspace dataset (sizes, density, splits, images/texts, features).

    Example:
        >>> import tempfile
        >>> from befa_viz.data import export_mmrec
        >>> from befa_viz.testing import toy_dataset
        >>> ws = tempfile.mkdtemp()
        >>> _ = import_dataset("mmrec", export_mmrec(toy_dataset(), tempfile.mkdtemp()),
        ...                    workspace=ws)
        >>> s = dataset_stats(workspace=ws)
        >>> s["name"], s["users"], s["items"]
        ('toy', 8, 12)
    """
    from befa_viz.data.validate import dataset_summary

    ws = _data_ws(workspace)
    name = ws.resolve_dataset(dataset)
    stats = dataset_summary(ws.load_dataset(name))
    folder = dataset_features_dir(name, workspace=ws)
    stats["imported_features"] = {}
    if folder is not None and (folder / "manifest.json").is_file():
        manifest = json.loads((folder / "manifest.json").read_text())
        stats["imported_features"] = {m: v["shape"] for m, v in manifest["modalities"].items()}
    return stats


def export_mmrec(
    out: str | os.PathLike[str],
    *,
    dataset: str | None = None,
    workspace: Workspace | str | os.PathLike[str] | None = None,
    features: Mapping[str, Any] | None = None,
    name: str | None = None,
) -> Path:
    """Export a workspace dataset in MMRec's format (``<name>.inter`` + ``*_feat.npy``).

    Args:
        out: Output folder.
        dataset: Dataset name; default: the latest imported one.
        workspace: Workspace (or its folder).
        features: ``{modality: [n_items, dim]}`` to write; default: the dataset's imported
            features (if any).
        name: Base name of the ``.inter`` file; default: the dataset's name.

    Returns:
        The output folder.
    """
    from befa_viz.data.mmrec import export_mmrec as _export

    ws = _data_ws(workspace)
    ds_name = ws.resolve_dataset(dataset)
    ds = ws.load_dataset(ds_name)
    if features is None:
        features = dataset_features(ds_name, workspace=ws)
    return _export(ds, out, features=features, name=name)


__all__ += [
    "dataset_features",
    "dataset_features_dir",
    "dataset_stats",
    "export_mmrec",
    "import_dataset",
    "validate_dataset",
]


def synth_dataset(
    workspace: Workspace | str | os.PathLike[str] | None = None,
    name: str = "shop",
    *,
    overwrite: bool = False,
    progress: bool = False,
    **knobs: Any,
) -> Path:
    """Generate the synthetic shop (with planted ground truth) into the workspace.

    Generating again with the same knobs is a no-op (the files would be byte-identical);
    other knobs under an existing name need ``overwrite=True``.

    Args:
        workspace: Workspace (or its folder); default ``$BEFA_VIZ_WORKSPACE`` or
            ``./befa-workspace``.
        name: Dataset name (folder under ``datasets/``).
        overwrite: Replace an existing dataset made with other knobs (or not by the generator).
        progress: Show a progress bar while rendering.
        **knobs: Fields of :class:`befa_viz.data.synth.ShopConfig` (``n_items``, ``seed``, ...).

    Returns:
        The dataset folder ``<workspace>/datasets/<name>``.

    Raises:
        ConfigError: If a knob is unknown or out of range.
        DataError: If ``name`` exists with other content and ``overwrite`` is false.

    Example:
        >>> import tempfile
        >>> synth_dataset(tempfile.mkdtemp(), "s", n_items=8, n_users=4, image_size=32,
        ...               interactions_per_user=(3, 5)).name
        's'
    """
    from befa_viz.data.synth import GENERATOR_VERSION, ShopConfig, generate_shop
    from befa_viz.errors import DataError

    ws = _data_ws(workspace)
    cfg = ShopConfig.from_knobs(**{**knobs, "name": name})
    target = ws.dataset_dir(cfg.name)
    gen = target / "generator.json"
    if (target / "dataset.json").is_file() and not overwrite:
        old = json.loads(gen.read_text()) if gen.is_file() else {}
        if old.get("knobs") == cfg.to_dict() and old.get("version") == GENERATOR_VERSION:
            log.info("synthetic shop %r is unchanged in %s", cfg.name, target)
            return target
        raise DataError(
            f"Dataset {cfg.name!r} already exists in {ws.root} with different content. Pass "
            "overwrite=True (--overwrite) to replace it, or choose another name (--name)."
        )
    generate_shop(target, progress=progress, **cfg.to_dict())
    return target


__all__ += ["synth_dataset"]

# ---- encode verbs ------------------------------------------------------------------------
__all__ += ["EncodeResult", "encode_dataset"]

DEFAULT_IMAGE_ENCODER = "torchvision:mobilenet_v2"
DEFAULT_TEXT_ENCODER = "hf:minilm"


class EncodeResult(dict):  # type: ignore[type-arg]  # dict[str, Path]; subclassing keeps it one
    """``{modality: entry folder}`` from :func:`encode_dataset`, plus what happened.

    Attributes:
        dataset: The dataset encoded.
        tables: ``{modality: FeatureTable}``.
        reused: ``{modality: True if the stored entry was reused}``.
        complete: ``{modality: False if only this shard's rows exist so far}``.
    """

    def __init__(self, dataset: str) -> None:
        super().__init__()
        self.dataset = dataset
        self.tables: dict = {}
        self.reused: dict[str, bool] = {}
        self.complete: dict[str, bool] = {}


def encode_dataset(
    workspace: Workspace | str | None = None,
    dataset: str | None = None,
    *,
    image_encoder: str | None = DEFAULT_IMAGE_ENCODER,
    text_encoder: str | None = DEFAULT_TEXT_ENCODER,
    batch_size: int = 32,
    device: str = "cpu",
    shard: str | tuple[int, int] | None = None,
    progress: bool = False,
    missing: str = "error",
    text_field: str = "text",
    chunk_size: int = 512,
) -> EncodeResult:
    """Encode a workspace dataset's images and texts into the feature store.

    Entries go to ``<workspace>/features/<dataset>/<key>/``; the same inputs reuse them.

    Args:
        workspace: Workspace (or its folder); default ``$BEFA_VIZ_WORKSPACE`` or
            ``./befa-workspace``.
        dataset: Dataset name; default the most recent one (logged).
        image_encoder: Encoder key for images, ``None`` to skip.
        text_encoder: Encoder key for texts (``clip:...`` uses the text tower), ``None`` to skip.
        batch_size: Items per forward pass.
        device: Torch device.
        shard: ``"i/n"``: encode this shard's chunks only (see ``encode_catalog``).
        progress: Show progress bars.
        missing: ``"error"`` or ``"zeros"`` for items without image / with empty text.
        text_field: ``"text"``, ``"title"`` or ``"title+text"``.
        chunk_size: Items per resumable chunk.

    Returns:
        ``{modality: entry folder}`` with reuse and completeness flags.

    Example:
        >>> import tempfile
        >>> from befa_viz.testing import toy_dataset
        >>> ws = Workspace(tempfile.mkdtemp())
        >>> _ = toy_dataset().save(ws.dataset_dir("toy"))
        >>> r = encode_dataset(ws, image_encoder="tiny:cnn", text_encoder="tiny:text")
        >>> sorted(r), r.reused
        (['image', 'text'], {'image': False, 'text': False})
    """
    import logging

    from befa_viz.cache import Cache
    from befa_viz.encoders import create_encoder
    from befa_viz.encoders.store import encode_catalog

    log = logging.getLogger(__name__)
    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    name = ws.resolve_dataset(dataset)
    if dataset is None:
        log.info("Using the most recent dataset %r of %s", name, ws.root)
    ds = ws.load_dataset(name)
    result = EncodeResult(name)
    for modality, key in (("image", image_encoder), ("text", text_encoder)):
        if not key:
            continue
        encoder = create_encoder(key, modality=modality)
        table = encode_catalog(
            ds.catalog, encoder, dataset_fingerprint=ds.fingerprint(),
            cache=Cache(ws.features_dir), dataset_name=name, batch_size=batch_size,
            chunk_size=chunk_size, device=device, progress=progress, shard=shard,
            missing=missing,  # type: ignore[arg-type]  # validated by encode_catalog
            text_field=text_field,  # type: ignore[arg-type]  # validated by encode_catalog
        )
        assert table.path is not None
        result[modality] = table.path
        result.tables[modality] = table
        result.reused[modality] = bool(table.manifest.get("reused", False))
        result.complete[modality] = table.manifest.get("complete", True) is not False
    return result


# ---- train / evaluate / compare / sweep verbs --------------------------------------------
__all__ += ["compare_adapter", "evaluate_run", "latest_features", "load_run", "resolve_run",
            "run_sweep", "train_model"]


def _train_ws(workspace: Workspace | str | os.PathLike[str] | None) -> Workspace:
    return workspace if isinstance(workspace, Workspace) else Workspace(workspace)


def latest_features(
    workspace: Workspace | str | os.PathLike[str] | None = None,
    dataset: str | None = None,
    modalities: Any = None,
) -> dict[str, Path]:
    """The newest complete feature entry per modality of a workspace dataset.

    Encoded entries (``features/<dataset>/<key>/manifest.json``) computed from the dataset's
    current fingerprint come first; features imported with the dataset are the fallback.

    Args:
        workspace: Workspace (or its folder).
        dataset: Dataset name; default the most recent one.
        modalities: Restrict to these modalities.

    Returns:
        ``{modality: feature folder}`` (may be empty).
    """
    ws = _train_ws(workspace)
    name = ws.resolve_dataset(dataset)
    fp = ws.load_dataset(name).fingerprint()  # what the feature store records
    found: dict[str, tuple[str, float, Path]] = {}
    folder = ws.features_dir / name
    for man_path in sorted(folder.glob("*/manifest.json")) if folder.is_dir() else []:
        try:
            man = json.loads(man_path.read_text())
        except json.JSONDecodeError:
            log.warning("Skipping unreadable feature manifest %s", man_path)
            continue
        mod = man.get("modality")
        if not mod or man.get("complete") is False:
            continue
        if fp and man.get("dataset_fingerprint") not in (None, fp):
            log.info("Skipping stale features %s (computed from another dataset version)",
                     man_path.parent)
            continue
        stamp = (str(man.get("created", "")), man_path.stat().st_mtime, man_path.parent)
        if mod not in found or stamp[:2] > found[mod][:2]:
            found[mod] = stamp
    out = {m: v[2] for m, v in found.items()}
    imported = ws.dataset_dir(name) / IMPORTED_FEATURES_DIR
    for npy in sorted(imported.glob("*_feat.npy")) if imported.is_dir() else []:
        out.setdefault(npy.name.removesuffix("_feat.npy"), imported)
    if modalities is not None:
        out = {m: p for m, p in out.items() if m in set(modalities)}
    return dict(sorted(out.items()))


def _train_config(
    ws: Workspace,
    *,
    model: str | None,
    config_file: Any,
    overrides: Any,
    dataset: str | None,
    features: Mapping[str, Any] | None,
    explicit: Mapping[str, Any],
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
    name = ws.resolve_dataset(dataset or cfg.dataset)
    if not (dataset or cfg.dataset):
        log.info("Using the most recent dataset %r of %s", name, ws.root)
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
    return cfg, ws.load_dataset(name)


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
        log.info("Using the most recent run %s", runs[-1].name)
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
                            explicit={"epochs": epochs, "device": device, "model": backbone})
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
    name = ws.resolve_dataset(dataset or base.get("dataset"))
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
    return sweep(ws.load_dataset(name), {**base, "sweep": grid}, runs_dir=ws.runs_dir,
                 reports_dir=ws.reports_dir, overrides=over, progress=progress)


# ---- end train verbs ---------------------------------------------------------------------

# ---- attribution / heatmap / report verbs ------------------------------------------------

# ---- demo / benchmark verbs --------------------------------------------------------------
