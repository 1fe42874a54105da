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
        ConfigError: For an option the importer does not take, a value outside its type or
            choices (see ``check_importer_options``), or a bad name.
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
    from befa_viz.data.registry import DATASETS, check_importer_options
    from befa_viz.data.validate import check_dataset
    from befa_viz.errors import ConfigError, DataError

    ws = _data_ws(workspace)
    importer = DATASETS.get(source_kind)
    options = check_importer_options(source_kind, options)
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
    include_features: bool = True,
) -> Path:
    """Export a workspace dataset in MMRec's format (``<name>.inter`` + ``*_feat.npy``).

    Without ``features``, the dataset's features go along: per modality the newest complete
    encoded entry of the current dataset (what ``train`` would pick, see
    :func:`latest_features`), else the features imported with it. Their provenance (encoder,
    fingerprints, source folder) is written to ``features.json``. Entries that cannot be
    exported (shards pending, computed from an older version of the dataset) are named in a
    warning, never skipped silently.

    Args:
        out: Output folder.
        dataset: Dataset name; default: the latest imported one.
        workspace: Workspace (or its folder).
        features: ``{modality: [n_items, dim]}`` to write instead of the stored ones.
        name: Base name of the ``.inter`` file; default: the dataset's name.
        include_features: ``False`` exports the interactions and items only.

    Returns:
        The output folder.

    Raises:
        DataError: The dataset has no interactions (MMRec's format is interactions), or a
            feature entry does not match the dataset's items.
    """
    from befa_viz.cache import atomic_write_bytes
    from befa_viz.data.mmrec import export_mmrec as _export
    from befa_viz.errors import DataError

    ws = _data_ws(workspace)
    ds_name = ws.resolve_dataset(dataset)
    ds = ws.load_dataset(ds_name)
    if ds.interactions.n_interactions == 0:
        raise DataError(
            f"Dataset {ds_name!r} has no interactions (imported as items only); MMRec's format "
            "is an interaction file, so there is nothing to export. Import the interactions "
            "too (befa-viz data import table ... -o interactions=FILE)."
        )
    provenance: dict[str, Any] = {}
    if features is None and include_features:
        features, provenance = _exportable_features(ws, ds_name, ds)
    folder = _export(ds, out, features=features or {}, name=name)
    if provenance:
        atomic_write_bytes(folder / "features.json", (json.dumps(
            {"dataset": ds_name, "dataset_fingerprint": ds.fingerprint(),
             "modalities": provenance}, indent=2, sort_keys=True) + "\n").encode())
    return folder


def _exportable_features(ws: Workspace, name: str, ds: Any) -> tuple[dict[str, Any],
                                                                    dict[str, Any]]:
    """The features :func:`export_mmrec` writes, and their provenance."""
    from befa_viz.data.mmrec import load_feature_arrays
    from befa_viz.encoders.store import load_features
    from befa_viz.errors import DataError

    found = latest_features(ws, name)
    arrays: dict[str, Any] = {}
    prov: dict[str, Any] = {}
    imported_dir = ws.dataset_dir(name) / IMPORTED_FEATURES_DIR
    imported: dict[str, Any] | None = None
    for modality, folder in found.items():
        if folder == imported_dir:
            if imported is None:
                imported = load_feature_arrays(folder, n_items=ds.n_items)
            arrays[modality] = imported[modality]
            prov[modality] = {"source": "imported with the dataset", "path": str(folder)}
            continue
        table = load_features(folder, dataset_fingerprint=ds.fingerprint(), modality=modality)
        if list(table.item_ids) != list(ds.catalog.item_ids):
            raise DataError(
                f"The {modality} features in {folder} list their items in another order than "
                f"dataset {name!r}; re-encode them with 'befa-viz encode -d {name}'."
            )
        arrays[modality] = table.values
        prov[modality] = {"source": "encoded", "path": str(folder), "encoder": table.encoder_key,
                          "encoder_fingerprint": table.encoder_fingerprint,
                          "shape": list(table.values.shape)}
    store = ws.features_dir / name
    for man_path in sorted(store.glob("*/manifest.json")) if store.is_dir() else []:
        try:
            man = json.loads(man_path.read_text())
        except json.JSONDecodeError:
            continue
        mod = man.get("modality")
        if mod in arrays:
            continue
        if man.get("complete") is False:
            why = "only some shards are encoded; finish with 'befa-viz encode' (no --shard)"
        elif man.get("dataset_fingerprint") not in (None, ds.fingerprint()):
            why = "it was computed from another version of the dataset; re-encode it"
        else:
            continue
        log.warning("%s features in %s not exported: %s", mod, man_path.parent, why)
    for partial in sorted(store.glob("*/.partial")) if store.is_dir() else []:
        if not (partial.parent / "manifest.json").is_file():
            log.warning("features in %s not exported: the encoding was interrupted; rerun "
                        "'befa-viz encode' to finish it", partial.parent)
    return arrays, prov


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

from dataclasses import dataclass as _masks_dataclass  # noqa: E402


@_masks_dataclass
class MasksResult:
    """What :func:`make_masks` made: the truth summary and the contact sheets' paths."""

    dataset: str
    summary: dict[str, Any]
    ground_truth: Path
    sheets: dict[str, Path]
    reused: bool


def make_masks(
    dataset: str | None = None,
    *,
    workspace: Workspace | str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    sheet_items: int = 48,
    progress: bool = False,
) -> MasksResult:
    """Make garment masks (ground truth) of a dataset of packshots, with contact sheets.

    The masks and weak token labels go to ``<dataset>/ground_truth/``
    (:func:`befa_viz.data.truth.make_garment_truth`); two contact sheets of masks over photos
    go to ``<workspace>/reports/masks-<dataset>/``: ``contact-sheet.png`` (``sheet_items``
    evenly spaced items) and ``unusable.png`` (up to 96 items whose mask is unusable or
    low-contrast). Masks made from the same dataset version and knobs are reused.

    Args:
        dataset: Dataset name; default: the latest imported one.
        workspace: Workspace (or its folder).
        overwrite: Remake masks made for another version of the dataset.
        sheet_items: Items on the main contact sheet.
        progress: Show a progress bar over the photos.

    Returns:
        The summary (usable share, reasons), the ground-truth folder and the sheets.

    Raises:
        DataError: If the dataset is a synthetic shop, has no photos, a photo is unreadable,
            or masks for another version exist and ``overwrite`` is false.
    """
    import io
    from dataclasses import asdict as _asdict

    import numpy as np
    from PIL import Image

    from befa_viz.cache import atomic_write_bytes
    from befa_viz.data.garment import MaskParams
    from befa_viz.data.truth import load_ground_truth, make_garment_truth
    from befa_viz.errors import DataError
    from befa_viz.viz import mask_contact_sheet

    ws = _data_ws(workspace)
    name = ws.resolve_dataset(dataset)
    folder = ws.dataset_dir(name)
    ds = ws.load_dataset(name)
    meta_path = folder / "ground_truth" / "truth.json"
    reused = False
    if meta_path.is_file():
        old = json.loads(meta_path.read_text())
        if old.get("dataset_fingerprint") == ds.fingerprint() and \
                old.get("params") == _asdict(MaskParams()):
            summary, reused = old["summary"], True
            log.info("garment masks of %r are up to date in %s", name, meta_path.parent)
        elif not overwrite:
            raise DataError(f"Garment masks of {name!r} were made for another version of the "
                            "dataset or with other knobs; pass overwrite=True (--overwrite).")
    if not reused:
        summary = make_garment_truth(folder, overwrite=True, progress=progress)
    gt = load_ground_truth(folder)
    assert gt.usable is not None and gt.reasons is not None
    out = ws.reports_dir / f"masks-{name}"
    out.mkdir(parents=True, exist_ok=True)
    with_photo = [i for i in range(ds.n_items) if ds.catalog.has_image(i)]
    pick = sorted({with_photo[int(round(k))] for k in
                   np.linspace(0, len(with_photo) - 1, min(int(sheet_items), len(with_photo)))})
    flagged = [i for i in with_photo if not gt.usable[i] or gt.reasons[i] == "low_contrast"]
    sheets: dict[str, Path] = {}
    for fname, items in (("contact-sheet.png", pick), ("unusable.png", flagged[:96])):
        if not items:
            continue
        arr = mask_contact_sheet(
            [ds.catalog.image(i) for i in items], [gt.relevant[i] for i in items],
            labels=[f"{ds.catalog.item_ids[i]} {gt.reasons[i][:14]}" for i in items],
            usable=[bool(gt.usable[i]) for i in items], n_cols=12)
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="PNG")
        atomic_write_bytes(out / fname, buf.getvalue())
        sheets[fname] = out / fname
    return MasksResult(name, summary, folder / "ground_truth", sheets, reused)


__all__ += ["MasksResult", "make_masks"]

# ---- encode verbs ------------------------------------------------------------------------
__all__ += ["EncodeResult", "encode_dataset"]

DEFAULT_IMAGE_ENCODER = "torchvision:mobilenet_v2"
DEFAULT_TEXT_ENCODER = "hf:minilm"


class EncodeResult(dict[str, Path]):  # a dict subclass: callers keep using it as one
    """``{modality: entry folder}`` from :func:`encode_dataset`, plus what happened.

    Attributes:
        dataset: The dataset encoded.
        tables: ``{modality: FeatureTable}``.
        reused: ``{modality: True if the stored entry was reused}``.
        complete: ``{modality: False if only this shard's rows exist so far}``.
        resumed: ``{modality: chunks kept by an interrupted run and not encoded again}``.
    """

    def __init__(self, dataset: str) -> None:
        super().__init__()
        self.dataset = dataset
        self.tables: dict = {}
        self.reused: dict[str, bool] = {}
        self.complete: dict[str, bool] = {}
        self.resumed: dict[str, int] = {}


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
    resize: str | None = None,
    pad_fill: str | None = None,
    engine: Any = None,
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
        resize: Image resize mode, ``"pad"`` (default), ``"squash"`` or ``"crop"`` (see
            :mod:`befa_viz.encoders.base`); part of the feature key.
        pad_fill: ``"edge"`` (default) or ``"mean"`` for ``resize="pad"``.
        engine: A :class:`~befa_viz.distributed.RayEngine` to encode on Ray actors (same
            entries, keys and resume as here); ``None`` encodes in this process.

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
    from befa_viz.cache import Cache
    from befa_viz.encoders import create_encoder
    from befa_viz.encoders.store import encode_catalog

    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    name = ws.resolve_dataset(dataset)
    ds = ws.load_dataset(name)
    result = EncodeResult(name)
    for modality, key in (("image", image_encoder), ("text", text_encoder)):
        if not key:
            continue
        opts = {"resize": resize, "pad_fill": pad_fill} if modality == "image" else {}
        if engine is not None:
            table = _encode_on_ray(ds, name, ws, key, modality, opts, engine, shard=shard,
                                   batch_size=batch_size, chunk_size=chunk_size, device=device,
                                   missing=missing, text_field=text_field)
        else:
            table = encode_catalog(
                ds.catalog, create_encoder(key, modality=modality, **opts),
                dataset_fingerprint=ds.fingerprint(),
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
        result.resumed[modality] = int(table.manifest.get("resumed_chunks", 0) or 0)
    return result


def _encode_on_ray(ds: Any, name: str, ws: Workspace, key: str, modality: str,
                   opts: dict[str, Any], engine: Any, *, shard: Any, **kwargs: Any) -> Any:
    from befa_viz.cache import Cache
    from befa_viz.distributed import encode_catalog_ray
    from befa_viz.errors import ConfigError

    if shard is not None:
        raise ConfigError("--shard and --engine ray exclude each other: Ray splits the catalog "
                          "itself. Drop --shard.")
    return encode_catalog_ray(ds.catalog, key, modality=modality, engine=engine,
                              dataset_fingerprint=ds.fingerprint(), cache=Cache(ws.features_dir),
                              dataset_name=name, encoder_options=opts, **kwargs)


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


__all__ += ["track_runs"]

# ---- end train verbs ---------------------------------------------------------------------

# ---- attribution / heatmap / report verbs ------------------------------------------------
# Attributions are computed per (run, item) and stored in the workspace cache
# (befa_viz.attribution.cache); a "variant" is one side of the with/without-adapter pair:
# "without" (adapter 'none') or "with" (adapter 'befa', ...).
# Warm requests (the explorer's item switch) must not run the encoder at all: scores computed
# from a map (faithfulness curves, drift/omission) are cached beside it (ScoreCache, keyed by
# the map's key, the digests of the map and relevance map, and the scoring parameters), and
# encoders and runs are kept in small in-process memos (see "in-process memos" below).
__all__ += ["HeatmapReport", "ItemExplanation", "clear_memos", "encoder_for_run",
            "explain_item", "explain_items", "find_paired_run", "heatmap_report",
            "resolve_attribution_run", "write_item_report", "write_item_reports"]

import threading  # noqa: E402
from collections import OrderedDict as _OrderedDict  # noqa: E402
from dataclasses import dataclass as _dataclass  # noqa: E402
from dataclasses import field as _field  # noqa: E402

import numpy as np  # noqa: E402

#: Default target: comparable with and without the adapter (see DESIGN.md, "Attribution").
DEFAULT_TARGET = "content_score"
#: Default baseline per modality (an explicit, recorded choice; see befa_viz.attribution).
DEFAULT_BASELINES = {"image": "blur", "text": "pad"}
VARIANTS = ("without", "with")
_VARIANT_TITLES = {"without": "without adapter", "with": "with adapter"}
_MEAN_PIXEL_ITEMS = 64  # images averaged for the "mean" baseline
#: Version of the score definitions; part of every score cache key (2: the faithfulness AUCs
#: are NaN when f(x) − f(baseline) cannot normalise the curve, see metrics.perturbation_auc).
SCORING_VERSION = 2


# ---- in-process memos -------------------------------------------------------------------
# Rebuilding an encoder costs ~0.5 s (MobileNetV2) to ~1 s (MiniLM) and opening a run (YAML,
# dataset, features, model) tens of ms to seconds, on every request. These memos keep the most
# recently used ones, bounded (LRU, sizes below), keyed so that they never serve a stale object:
#
# * encoders: (encoder key, modality, the fingerprint the run's features recorded, device).
#   Only an encoder whose weights hash equalled that fingerprint when it was built is stored,
#   and every hit is checked again, so a hit is exactly the encoder that made the features
#   (replaced weights on disk are noticed, and refused, after clear_memos()).
# * runs: (run folder, device), used only while the stat (mtime, size) of the run's files
#   (run.json, config.yaml, metrics.json, model.safetensors), its feature files and manifests
#   and its dataset files is unchanged: new weights (a resumed run, a replaced file) or changed
#   features reload the run, which re-checks their fingerprints.
# * the config identity of candidate runs (find_paired_run), the synthetic shop's ground truth
#   and the "mean" baseline's pixel, by the stat of the files they were read from.
#
# Memoised runs and encoders are shared objects: callers treat them as read-only. Computations
# that run them (maps, faithfulness curves, sanity controls) hold _COMPUTE_LOCK, since methods
# hook into modules and the explorer serves its sessions from threads. clear_memos() empties
# them all (the disk cache is untouched).
ENCODER_MEMO_SIZE = 4
RUN_MEMO_SIZE = 8
_COMPUTE_LOCK = threading.RLock()


class _Memo:
    """A small thread-safe LRU dict: at most ``size`` entries, the least recently used go."""

    def __init__(self, size: int) -> None:
        self.size = int(size)
        self._items: _OrderedDict[Any, Any] = _OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any:
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key: Any, value: Any) -> Any:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


_ENCODERS = _Memo(ENCODER_MEMO_SIZE)
_RUNS = _Memo(RUN_MEMO_SIZE)
_RUN_IDENTITIES = _Memo(256)
_GROUND_TRUTHS = _Memo(2)
_MEAN_PIXELS = _Memo(16)


def clear_memos() -> None:
    """Forget the memoised encoders, runs, ground truth and weight digests of this process.

    The next request rebuilds them (checking every fingerprint again); the disk cache is
    untouched. Memos already drop stale runs by themselves; call this after replacing an
    encoder's weights in place, or to free memory.

    Example:
        >>> clear_memos()
    """
    for memo in (_ENCODERS, _RUNS, _RUN_IDENTITIES, _GROUND_TRUTHS, _MEAN_PIXELS):
        memo.clear()
    _WEIGHT_DIGESTS.clear()


def _file_stamp(path: Path) -> tuple[Any, ...]:
    try:
        st = path.stat()
    except OSError:
        return (str(path),)
    return (str(path), st.st_mtime_ns, st.st_size)


def _dir_stamp(folder: Path) -> tuple[Any, ...]:
    """Stamps of a folder's files (not recursive)."""
    try:
        files = sorted(p for p in Path(folder).iterdir() if p.is_file())
    except OSError:
        return (str(folder),)
    return tuple(_file_stamp(p) for p in files)


_RUN_FILES = ("run.json", "config.yaml", "metrics.json", "model.safetensors")


def _run_stamp(run: Any) -> tuple[Any, ...]:
    """What a memoised run depends on: its files, its feature files and its dataset's files."""
    parts: list[Any] = [_file_stamp(run.path / n) for n in _RUN_FILES]
    for _, feat in sorted(run.features.items()):
        parts += [_file_stamp(Path(feat.path)), _file_stamp(Path(feat.path).parent
                                                            / "manifest.json")]
    if run.dataset.path is not None:
        parts.append(_dir_stamp(Path(run.dataset.path)))
    return tuple(parts)


def _open_run(path: Path, device: str | None = None) -> Any:  # -> Run
    """``Run.load`` through the run memo, with dataset and features loaded (and checked)."""
    from befa_viz.train import Run

    key = (str(Path(path).resolve()), device)
    hit = _RUNS.get(key)
    if hit is not None:
        run, stamp = hit
        if _run_stamp(run) == stamp:
            return run
        log.debug("Run %s changed on disk; reloading it", run.name)
    run = Run.load(path, device=device)
    _ = run.dataset, run.features  # fingerprint checks happen here, and the stamp covers them
    _RUNS.put(key, (run, _run_stamp(run)))
    return run


def _run_identity(path: Path) -> dict[str, Any]:
    """A run folder's config identity (memoised by the stat of its config and run.json)."""
    from befa_viz.train import Run

    key = (str(Path(path).resolve()), _file_stamp(path / "config.yaml"),
           _file_stamp(path / "run.json"))
    hit = _RUN_IDENTITIES.get(key)
    if hit is None:
        hit = _RUN_IDENTITIES.put(key, Run.load(path).config.identity())
    return dict(hit)


def _variant_of(run: Any) -> str:
    return "without" if str(run.info.get("adapter", run.config.adapter)) == "none" else "with"


@_dataclass(eq=False)
class ItemExplanation:
    """One item explained with one target and method, without and/or with the adapter.

    Attributes:
        item_id: Raw item id (the dataset's original id).
        item_idx: The item's index in the dataset and the models.
        modality: ``"image"`` or ``"text"``.
        item: Metadata for figures: ``id``, ``title``, ``text``, the dataset, the number of
            training users, and the catalog's extra columns.
        attributions: ``{"without": Attribution, "with": Attribution}`` (one entry when the
            run has no paired run or no comparison was asked for).
        scores: Per variant: ``drift``, ``omission`` (with ``q``, see
            :mod:`befa_viz.metrics.attribution`) against ``relevance``, ``deletion_auc`` /
            ``insertion_auc`` (faithfulness of the attributed target; ``None`` when
            f(x) − f(baseline) is too small next to the curve's swing to normalise it, see
            ``deletion_resolution`` / ``insertion_resolution``, ``faithfulness_f_x`` /
            ``faithfulness_f_baseline`` and :func:`befa_viz.metrics.perturbation_auc`),
            ``delta`` (IG completeness error) and ``mass_in_mask`` (ground truth only).
        relevance: ``{"source": "ground_truth" | "behaviour_alignment", "note": str,
            "map": array}``: what drift and omission are measured against.
        runs: Run name per variant.
        gate: Per variant: the run's adapter gate distribution for this modality (empty
            without the adapter) plus this item's ``item_gate_mean`` / ``min`` / ``max``.
        params: The request: target, method, options, user, encoder, dataset.
        cached: Per variant, whether the map came from the cache.
        sanity: Per variant, the item's Spearman ρ with each sanity control and whether it
            passes (``None`` unless asked for).
        scores_cached: Per variant, whether its scores came from the score cache (no encoder
            pass was needed).
    """

    item_id: str
    item_idx: int
    modality: str
    item: dict[str, Any]
    attributions: dict[str, Any]
    scores: dict[str, dict[str, Any]]
    relevance: dict[str, Any]
    runs: dict[str, str]
    gate: dict[str, dict[str, Any]]
    params: dict[str, Any]
    cached: dict[str, bool] = _field(default_factory=dict)
    sanity: dict[str, dict[str, Any]] | None = None
    scores_cached: dict[str, bool] = _field(default_factory=dict)

    @property
    def variants(self) -> list[str]:
        """The variants present, ``"without"`` first."""
        return [v for v in VARIANTS if v in self.attributions]

    def figure_pairs(self) -> Any:
        """``(without, with)`` for a pair, else the single Attribution (for ``viz``)."""
        if len(self.attributions) == 2:
            return self.attributions["without"], self.attributions["with"]
        return next(iter(self.attributions.values()))

    def figure_scores(self) -> dict[str, dict[str, Any]]:
        """Scores keyed by readable variant labels, numbers only (for ``viz`` tables)."""
        keys = ("drift", "omission", "deletion_auc", "insertion_auc", "mass_in_mask", "delta")
        return {_VARIANT_TITLES[v]: {k: self.scores[v][k] for k in keys
                                     if self.scores[v].get(k) is not None}
                for v in self.variants}

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary (no arrays)."""
        return {
            "item_id": self.item_id, "item_idx": self.item_idx, "modality": self.modality,
            "item": self.item, "runs": self.runs, "params": self.params,
            "relevance": {k: v for k, v in self.relevance.items() if k != "map"},
            "scores": self.scores, "gate": self.gate, "cached": self.cached,
            "scores_cached": self.scores_cached, "sanity": self.sanity,
            "attributions": {v: {"method": a.method, "target": a.target, "delta": a.delta,
                                 "shape": list(np.shape(a.values))}
                             for v, a in self.attributions.items()},
        }

    def csv_row(self) -> dict[str, Any]:
        """One flat row: item, request, then ``<score>_<variant>`` columns."""
        row: dict[str, Any] = {"item_id": self.item_id, "title": self.item.get("title", ""),
                               "modality": self.modality, "target": self.params["target"],
                               "method": self.params["method"],
                               "relevance": self.relevance["source"]}
        for v in self.variants:
            row[f"run_{v}"] = self.runs[v]
            for k in ("drift", "omission", "deletion_auc", "insertion_auc", "mass_in_mask",
                      "delta", "verdict", "unscored"):
                row[f"{k}_{v}"] = self.scores[v].get(k)
            if self.gate.get(v, {}).get("item_gate_mean") is not None:
                row[f"item_gate_mean_{v}"] = self.gate[v]["item_gate_mean"]
        return row


def _attr_ws(workspace: Workspace | str | os.PathLike[str] | None) -> Workspace:
    return workspace if isinstance(workspace, Workspace) else Workspace(workspace)


def _feature_of(run: Any, modality: str) -> Any:
    from befa_viz.errors import ConfigError

    feats = run.features
    if modality not in feats:
        have = ", ".join(sorted(feats)) or "none"
        raise ConfigError(
            f"Run {run.name} (model {run.config.model!r}) has no {modality} features (it has: "
            f"{have}), so its {modality} content cannot be attributed. Choose --modality "
            f"{next(iter(sorted(feats)), 'image')} or a run trained with {modality} features."
        )
    return feats[modality]


def encoder_for_run(run: Any, modality: str = "image", *, device: str | None = None,
                    reuse: bool = True) -> Any:
    """Rebuild the encoder that produced a run's features, checking its fingerprint.

    The encoder key comes from the run's feature manifest; the rebuilt encoder's fingerprint
    (key, weights, preprocessing) must equal the one the manifest recorded, so a heatmap is
    never computed with other weights than the features were made with.

    Encoders are memoised in-process by (key, modality, recorded fingerprint, device): the
    most recent :data:`ENCODER_MEMO_SIZE` are reused, their fingerprint checked again on every
    hit (see :func:`clear_memos`).

    Args:
        run: A :class:`~befa_viz.train.Run`.
        modality: ``"image"`` or ``"text"``.
        device: Torch device (default: the run's).
        reuse: Take the encoder from (and keep it in) the memo; ``False`` builds a private
            one that the caller may modify.

    Returns:
        The encoder, in eval mode (shared with other callers when ``reuse``: do not modify
        it).

    Raises:
        ConfigError: If the run has no features of ``modality``.
        DataError: If the features record no encoder (e.g. imported MMRec arrays).
        StaleArtifactError: If the encoder available now differs from the recorded one.

    Example:
        >>> from befa_viz.testing import toy_workspace
        >>> ws = toy_workspace()
        >>> encoder_for_run(load_run(ws), "image").key
        'tiny:cnn'
    """
    from befa_viz.encoders import create_encoder
    from befa_viz.errors import DataError, StaleArtifactError

    feat = _feature_of(run, modality)
    key = feat.encoder_key
    if not key:
        raise DataError(
            f"The {modality} features of run {run.name} ({feat.path}) record no encoder (they "
            "were imported, not encoded here), so their pixels/tokens cannot be attributed. "
            "Encode the dataset with 'befa-viz encode' and train the run on those features."
        )
    recorded = feat.encoder_fingerprint
    if not recorded:
        raise DataError(
            f"The {modality} feature manifest of run {run.name} ({feat.path}) records encoder "
            f"{key!r} but not its fingerprint; re-encode with 'befa-viz encode' and retrain."
        )
    memo_key = (key, modality, recorded, str(device or run.device))
    encoder = _ENCODERS.get(memo_key) if reuse else None
    built = encoder is None
    if encoder is None:
        # the resize mode the features were made with (stores from before "pad" say "squash")
        pre = getattr(feat, "manifest", {}).get("preprocessing") or {}
        resize = {"resize": pre["resize"], "pad_fill": pre.get("pad_fill")} \
            if modality == "image" and pre.get("resize") else {}
        encoder = create_encoder(key, modality=modality, **resize)
    current = encoder.fingerprint()
    if current != recorded:
        raise StaleArtifactError(
            f"Run {run.name}'s {modality} features were made by encoder {key!r} with "
            f"fingerprint {recorded}, but the {key!r} available now has fingerprint {current} "
            "(other weights or preprocessing). Attributions would explain another model: "
            "restore the original weights, or re-encode ('befa-viz encode') and retrain."
        )
    if built:
        encoder.eval()
        encoder = encoder.to(device or run.device)
        if reuse:
            _ENCODERS.put(memo_key, encoder)
    return encoder


def find_paired_run(
    workspace: Workspace | str | os.PathLike[str] | None, run: Any
) -> Any:  # -> Run | None
    """The run with the same dataset, backbone, seed and features but the other adapter setting.

    Candidates are the complete runs beside ``run`` (and in ``workspace``); among several, the
    one whose other hyper-parameters match most, then the newest, is chosen.

    Args:
        workspace: Workspace (or its folder); ``None`` looks only beside ``run``.
        run: A :class:`~befa_viz.train.Run`.

    Returns:
        The paired run, or ``None``.

    Example:
        >>> from befa_viz.testing import toy_workspace
        >>> ws = toy_workspace()
        >>> run = load_run(ws, ws.run_dirs()[0])
        >>> run.config.adapter, find_paired_run(ws, run).config.adapter
        ('none', 'befa')
    """
    from befa_viz.train import Run

    found = _find_paired_dir(workspace, run)
    return None if found is None else Run.load(found, device=run.device)


def _find_paired_dir(workspace: Workspace | str | os.PathLike[str] | None,
                     run: Any) -> Path | None:
    """The folder of :func:`find_paired_run`'s choice (candidate configs read via a memo)."""
    folders = {run.path.parent.resolve()}
    if workspace is not None:
        folders.add(_attr_ws(workspace).runs_dir.resolve())
    want_without = _variant_of(run) == "with"
    feats = {m: p.get("fingerprint") for m, p in run.info.get("features", {}).items()}
    ident = run.config.identity()
    best: tuple[tuple[int, float], Path] | None = None
    for folder in sorted(folders):
        if not folder.is_dir():
            continue
        for p in folder.iterdir():
            meta_path = p / "run.json"
            if p.resolve() == run.path.resolve() or not meta_path.is_file():
                continue
            try:
                info = json.loads(meta_path.read_text())
            except json.JSONDecodeError:
                log.warning("Skipping unreadable %s", meta_path)
                continue
            if (info.get("status", "complete") != "complete"
                    or info.get("dataset_fingerprint") != run.info.get("dataset_fingerprint")
                    or info.get("model") != run.info.get("model")
                    or info.get("seed") != run.info.get("seed")
                    or (str(info.get("adapter")) == "none") != want_without
                    or {m: q.get("fingerprint") for m, q in info.get("features", {}).items()}
                    != feats):
                continue
            other = _run_identity(p)
            same = sum(1 for k, v in ident.items()
                       if not k.startswith("adapter") and other.get(k) == v)
            rank = (same, meta_path.stat().st_mtime)
            if best is None or rank > best[0]:
                best = (rank, p)
    return None if best is None else best[1]


def resolve_attribution_run(
    workspace: Workspace | str | os.PathLike[str] | None = None,
    run: Any = None,
    modality: str = "image",
    dataset: str | None = None,
) -> Any:  # -> Run
    """The run to explain: a :class:`~befa_viz.train.Run`, a name or folder, or (``None``) the
    newest complete run of ``dataset`` (default: the latest) that has ``modality`` features.

    A name, folder or ``None`` opens the run through the in-process run memo (see
    :func:`clear_memos`): the returned run may be shared, treat it as read-only."""
    from befa_viz.errors import DataError
    from befa_viz.train import Run

    if isinstance(run, Run):
        return run
    ws = _attr_ws(workspace)
    if run is not None:
        return _open_run(resolve_run(ws, run))
    dataset = ws.resolve_dataset(dataset)
    runs = ws.run_dirs(dataset=dataset)
    with_mod = [p for p in runs
                if modality in json.loads((p / "run.json").read_text()).get("features", {})]
    if not with_mod:
        detail = (f"its runs ({', '.join(p.name for p in runs)}) have no {modality} features"
                  if runs else "it has no complete run")
        raise DataError(
            f"Nothing to explain for dataset {dataset!r} in {ws.root}: {detail}. Train a "
            f"multimodal run, e.g. 'befa-viz train --model vbpr --adapter none' and "
            f"'--adapter befa', or pass --run."
        )
    log.log(logging.WARNING if len(with_mod) > 1 else logging.INFO,
            "using run %s, the newest of %d run(s) of dataset %r with %s features; pass --run "
            "to choose another", with_mod[-1].name, len(with_mod), dataset, modality)
    return _open_run(with_mod[-1])


def _item_text(ds: Any, idx: int, feat: Any) -> str:
    """The text the features were computed from (the manifest's ``text_field``)."""
    from befa_viz.encoders.store import item_text

    return item_text(ds.catalog, idx, (feat.manifest.get("policies") or {}).get("text_field", "text"))


def _item_meta(ds: Any, idx: int, n_train_users: int) -> dict[str, Any]:
    cat = ds.catalog
    meta: dict[str, Any] = {"id": cat.item_ids[idx], "title": cat.titles[idx],
                            "text": cat.texts[idx], "dataset": ds.name,
                            "training users": n_train_users}
    if cat.meta is not None:
        for k, v in cat.meta.iloc[idx].items():
            if k not in meta and isinstance(v, (str, int, float, bool, np.generic)):
                meta[str(k)] = v.item() if isinstance(v, np.generic) else v
    return meta


def _dataset_mean_pixel(ds: Any, encoder: Any) -> list[float]:
    """Mean colour in [0, 1] of up to ``_MEAN_PIXEL_ITEMS`` evenly spaced item images."""
    import torch

    key = (str(ds.path), ds.fingerprint(), encoder.fingerprint())
    hit = _MEAN_PIXELS.get(key)
    if hit is not None:
        return list(hit)
    with_image = [i for i in range(ds.n_items) if ds.catalog.has_image(i)]
    pick = [with_image[int(j)] for j in
            np.linspace(0, len(with_image) - 1, min(_MEAN_PIXEL_ITEMS, len(with_image)))]
    images = [ds.catalog.image(i) for i in pick]
    with torch.no_grad():
        px = encoder.load_pixels(images)
    mean = px.mean(dim=(0, 2, 3))
    boxes = encoder.content_boxes(images)
    s = px.shape[-1]
    if any(tuple(b) != (0, 0, s, s) for b in boxes):  # padded photos: the pad is no colour of theirs
        inside = torch.zeros(px.shape[0], 1, s, s, dtype=torch.bool)
        for j, (top, left, h, w) in enumerate(boxes):
            inside[j, 0, top: top + h, left: left + w] = True
        mean = (px * inside).sum(dim=(0, 2, 3)) / inside.sum()
    return list(_MEAN_PIXELS.put(key, tuple(round(float(v), 6) for v in mean)))


def default_recipe(workspace: Workspace | str | os.PathLike[str] | None = None,
                   run: Any = None, modality: str = "image", dataset: str | None = None
                   ) -> Any:  # -> MethodDefault
    """The evidence-chosen attribution recipe for a run's encoder, as ``heatmap`` uses it.

    Frontends (explorer, notebooks) call this so their default method is the one the
    benchmark chose (:func:`befa_viz.attribution.defaults.default_method`: the workspace's
    own benchmark first, then the package defaults); text keeps ``ig``.

    Args:
        workspace: Workspace (or its folder).
        run: Run (or name/folder); default the newest explainable run of ``dataset``.
        modality: ``"image"`` or ``"text"``.
        dataset: Dataset of the default run.

    Returns:
        The :class:`~befa_viz.attribution.defaults.MethodDefault` (method, target, baseline,
        steps, whether it passed its controls, and its evidence).
    """
    from befa_viz.attribution.defaults import MethodDefault, default_method

    ws = _attr_ws(workspace)
    if modality != "image":
        return MethodDefault(method="ig", target=DEFAULT_TARGET, baseline=None,
                             source="text: ig (the benchmark ranks image methods only)")
    r = resolve_attribution_run(ws, run, modality, dataset)
    key = str(getattr(r.features[modality], "encoder_key", "") or "") or None
    return default_method(key, workspace=ws)


def workspace_defaults_path(workspace: Workspace | str | os.PathLike[str]) -> Path:
    """Where ``befa-viz benchmark`` records a workspace's evidence-chosen defaults."""
    from befa_viz.attribution.defaults import workspace_defaults_path as path

    return path(workspace)


__all__ += ["default_recipe", "workspace_defaults_path"]


def _default_recipe(ws: Workspace, run: Any, modality: str, target: str | None,
                    baseline: str | None, n_steps: int | None, user: str | None
                    ) -> tuple[str, str | None, str | None, int | None, Any]:
    """Method, target, baseline and steps from the evidence-chosen default of the run's
    encoder (text keeps ``ig``: the shop benchmark ranks image methods only)."""
    from befa_viz.attribution.defaults import default_method

    if modality != "image":
        return "ig", target, baseline, n_steps, None
    key = str(getattr(run.features[modality], "encoder_key", "") or "") or None
    rec = default_method(key, workspace=ws)
    log.info("default attribution for %s: %s / %s (%s; passes its controls: %s)", key,
             rec.method, rec.target, rec.source, rec.passes)
    return (rec.method, target or (None if user is not None else rec.target),
            baseline or rec.baseline, n_steps if n_steps is not None else rec.n_steps, rec)


def _method_options(method: str, modality: str, n_steps: int | None, baseline: str | None,
                    ds: Any, encoder: Any) -> dict[str, Any]:
    """The method's options from the common knobs; knobs it does not take are left out."""
    import inspect

    from befa_viz.attribution import ATTRIBUTIONS, method_modalities
    from befa_viz.errors import ConfigError

    if modality not in method_modalities(method):
        ok = [m for m in ATTRIBUTIONS.names() if modality in method_modalities(m)]
        raise ConfigError(f"Method {method!r} does not support the {modality} modality; "
                          f"choose one of {', '.join(ok)}.")
    from befa_viz.attribution.ig import DEFAULT_N_STEPS

    accepted = inspect.signature(ATTRIBUTIONS.get(method)).parameters
    opts: dict[str, Any] = {}
    if "n_steps" in accepted:
        if n_steps is not None:
            opts["n_steps"] = int(n_steps)
        elif accepted["n_steps"].default is not None:  # else: the method's adaptive schedule
            opts["n_steps"] = DEFAULT_N_STEPS
    if "baseline" in accepted:
        opts["baseline"] = baseline or DEFAULT_BASELINES[modality]
        if opts["baseline"] == "mean" and modality == "image":
            opts["mean_pixel"] = _dataset_mean_pixel(ds, encoder)
    return opts


def _target_for(variant: str, target: str) -> str:
    """Target name per side; ``content_score`` is called ``adapted_alignment`` with the adapter."""
    if target in ("content_score", "adapted_alignment"):
        return "adapted_alignment" if variant == "with" else "content_score"
    return target


@_dataclass
class _Job:
    """Everything shared by the items of one explain_items call."""

    ws: Workspace
    ds: Any
    encoder: Any
    runs: dict[str, Any]  # variant -> Run
    modality: str
    target: str
    method: str
    options: dict[str, Any]
    user_idx: int | None
    user: str | None
    seed: int
    cache: Any  # AttributionCache
    scores: Any  # ScoreCache
    use_cache: bool
    batch_size: int
    dataset_fingerprint: str = ""
    bar: Any = None
    kept: int = 0  # maps computed and stored in the cache by this call (for Ctrl-C)


def _inputs(job: _Job, idx: list[int]) -> list[Any]:
    if job.modality == "image":
        return [job.ds.catalog.image(i) for i in idx]
    feat = next(iter(job.runs.values())).features[job.modality]
    return [_item_text(job.ds, i, feat) for i in idx]


_WEIGHT_DIGESTS: dict[tuple[str, int, int], str] = {}


def _weights_digest(run: Any) -> str:
    """Digest of the run's ``model.safetensors`` as it is on disk now (memoised by mtime/size).

    The cache key uses this rather than the digest recorded at training time, so weights
    changed in place (a resumed run, a replaced file) never get an old map.
    """
    import hashlib

    from befa_viz.errors import DataError

    path = run.path / "model.safetensors"
    if not path.is_file():
        raise DataError(f"Run {run.name} has no model.safetensors (status {run.status!r}); "
                        "resume or retrain it.")
    st = path.stat()
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    if key not in _WEIGHT_DIGESTS:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        _WEIGHT_DIGESTS[key] = h.hexdigest()[:16]
    return _WEIGHT_DIGESTS[key]


def _key(job: _Job, run: Any, item: int, target: str, options: dict[str, Any]) -> Any:
    from befa_viz.attribution.cache import AttributionKey

    feat = run.features[job.modality]
    return AttributionKey(
        run=_weights_digest(run), dataset=job.dataset_fingerprint, encoder=job.encoder.key,
        encoder_fingerprint=job.encoder.fingerprint(), features=feat.fingerprint,
        item_id=job.ds.catalog.item_ids[item], modality=job.modality, target=target,
        method=job.method, adapter=_variant_of(run) == "with",
        target_params={"user": job.user} if target == "user_score" else {},
        method_params=options, seed=job.seed)


def _attributions(job: _Job, variant: str, items: list[int], target: str
                  ) -> tuple[list[Any], list[bool]]:
    """Maps of ``items`` for one variant (cached, misses computed in batches)."""
    from befa_viz.attribution import explain

    run = job.runs[variant]
    keys = [_key(job, run, i, target, job.options) for i in items]

    # a random target draws one direction per position in the batch: one item per call keeps
    # an item's direction (and so its cached map) independent of the other items asked for
    step = 1 if target == "random" else job.batch_size

    def compute(missing: list[int]) -> list[Any]:
        with _COMPUTE_LOCK:  # shared (memoised) encoder and model: one computation at a time
            return _compute(missing)

    def _compute(missing: list[int]) -> list[Any]:
        out: list[Any] = []
        for s in range(0, len(missing), step):
            chunk = [items[j] for j in missing[s: s + step]]
            res = explain(
                job.encoder, run.model, _inputs(job, chunk), chunk, target=target,
                method=job.method, modality=job.modality,
                item_ids=[job.ds.catalog.item_ids[i] for i in chunk],
                users=job.ds.interactions.train(), user_idx=job.user_idx, seed=job.seed,
                **job.options)
            for j, a in zip(missing[s: s + step], res, strict=True):
                a.params.update(run=run.name, variant=variant,
                                pair=f"{variant}_adapter", user=job.user)
                if job.use_cache:  # stored at once, so that Ctrl-C keeps what is done
                    job.cache.put(keys[j], a)
                    job.kept += 1
            out.extend(res)
            if job.bar is not None:
                job.bar.update(len(chunk))
        return out

    return job.cache.get_or_compute(keys, compute, use_cache=job.use_cache)


def _ground_truth(ds: Any) -> Any:
    """The dataset's ground truth (synthetic shop or garment masks; ``None`` without),
    memoised by file stats."""
    from befa_viz.data.truth import has_ground_truth, load_ground_truth

    folder = getattr(ds, "path", None)
    if folder is None or not has_ground_truth(folder):
        return None
    folder = Path(folder)
    key = (str(folder.resolve()), _file_stamp(folder / "generator.json"),
           _dir_stamp(folder / "ground_truth"))
    hit = _GROUND_TRUTHS.get(key)
    return hit if hit is not None else _GROUND_TRUTHS.put(key, load_ground_truth(folder))


def _text_truth(gt: Any, item_id: str, field_: str, text: str, att: Any) -> np.ndarray | None:
    """Ground-truth word labels aligned to the attribution's words (``None`` if they differ)."""
    entry = gt.tokens.get(item_id, {}).get(field_)
    if entry is None or att.tokens is None:
        return None
    labels = np.zeros(len(att.tokens), dtype=bool)
    special = att.params.get("special") or [False] * len(att.tokens)
    low, cursor = text.lower(), 0
    for j, (word, is_special) in enumerate(zip(att.tokens, special, strict=True)):
        if is_special or not word.strip():
            continue
        pos = low.find(word.lower(), cursor)
        if pos < 0:
            return None  # the tokenizer changed the text (accents, casing): cannot align
        cursor = pos + len(word)
        for (a, b), lab in zip(entry["spans"], entry["labels"], strict=True):
            if a < cursor and pos < b and lab:
                labels[j] = True
    return labels


def _faithfulness(job: _Job, variant: str, item: int, target: str, att: Any,
                  n_steps: int) -> dict[str, float | str | None]:
    """Deletion / insertion AUC of the attributed target, perturbing in |map| order."""
    import warnings

    import torch

    from befa_viz.attribution import create_target, make_baseline
    from befa_viz.attribution.explain import prepare_inputs
    from befa_viz.attribution.methods import special_token_ids
    from befa_viz.metrics import perturbation_auc

    run = job.runs[variant]
    model = run.model
    inputs = prepare_inputs(job.encoder, _inputs(job, [item]))
    # prepare_inputs gives pixels for the image modality, the tokenize mapping for text
    with torch.no_grad():
        if isinstance(inputs, torch.Tensor):
            reference = job.encoder(inputs)
        else:
            reference = job.encoder(inputs["input_ids"], inputs["attention_mask"])
    tgt = create_target(target, model=model, modality=job.modality, item_idx=[item],
                        reference=reference, users=job.ds.interactions.train(),
                        user_idx=job.user_idx, dim=int(job.encoder.dim), seed=job.seed)
    tgt = tgt.to(job.encoder.device).eval()
    dev = job.encoder.device
    if isinstance(inputs, torch.Tensor):
        base = make_baseline(inputs, _faithfulness_baseline(job),
                             mean_pixel=job.options.get("mean_pixel"))
        x, b = inputs[0].cpu().numpy(), base[0].cpu().numpy()
        amap = np.abs(np.asarray(att.values, dtype=np.float64))
        box = att.params.get("content_box")  # a padded input: perturb the photo only

        def f(batch: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                t = torch.from_numpy(np.ascontiguousarray(batch)).to(dev)
                rows = torch.zeros(t.shape[0], dtype=torch.long, device=dev)
                return tgt(job.encoder(t), rows).cpu().numpy()
    else:
        token_values = att.extras.get("token_values")
        box = None
        ids = inputs["input_ids"][0]
        keep = inputs["attention_mask"][0].bool()
        ids = ids[keep]
        if token_values is None or len(token_values) != ids.numel():
            return {"deletion_auc": None, "insertion_auc": None,
                    "faithfulness_steps": int(n_steps)}
        pad = int(getattr(job.encoder, "pad_token_id", 0))
        special = special_token_ids(job.encoder)
        base_ids = torch.tensor([int(t) if int(t) in special else pad for t in ids.tolist()])
        x, b = ids.cpu().numpy().astype(np.float32), base_ids.numpy().astype(np.float32)
        amap = np.abs(np.asarray(token_values, dtype=np.float64))

        def f(batch: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                t = torch.from_numpy(np.rint(batch)).long().to(dev)
                rows = torch.zeros(t.shape[0], dtype=torch.long, device=dev)
                return tgt(job.encoder(t, torch.ones_like(t)), rows).cpu().numpy()
    # f(x) == f(baseline), or a curve whose ends are too close to normalise it (resolution
    # below metrics.MIN_RESOLUTION), gives NaN: recorded as null, with the resolution beside it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", UserWarning)
        d = perturbation_auc(f, x, b, amap, n_steps=n_steps, seed=job.seed, box=box)
        ins = perturbation_auc(f, x, b, amap, insert=True, n_steps=n_steps, seed=job.seed,
                               box=box)
    return {"deletion_auc": _num(d["auc"]), "insertion_auc": _num(ins["auc"]),
            "deletion_resolution": _num(d["resolution"]),
            "insertion_resolution": _num(ins["resolution"]),
            "faithfulness_f_x": _num(d["f_x"]), "faithfulness_f_baseline": _num(d["f_baseline"]),
            "faithfulness_baseline": _faithfulness_baseline(job),
            "faithfulness_steps": int(n_steps)}


def _faithfulness_baseline(job: _Job) -> str:
    return (str(job.options.get("baseline", DEFAULT_BASELINES["image"]))
            if job.modality == "image" else "pad")


def _variant_scores(job: _Job, variant: str, item: int, target: str, att: Any,
                    rel_map: np.ndarray, is_mask: bool, q: float, faithfulness_steps: int
                    ) -> tuple[dict[str, Any], bool]:
    """One variant's scores, from the score cache when possible; and whether they all were.

    Two entries per map (:class:`~befa_viz.attribution.cache.ScoreCache`): ``regions``
    (drift, omission, mass in mask: keyed by the map's and the relevance map's digests and
    ``q``) and ``faithfulness`` (the deletion / insertion curves, the only part that runs the
    encoder: keyed by the map's digest, the curve points and baseline), so changing ``q``
    never reruns the curves.
    """
    from befa_viz.attribution.cache import array_digest, attribution_digest
    from befa_viz.viz.verdict import unscored_reason

    reason = unscored_reason(att)
    if reason is not None:  # numbers from such a map would look like evidence: the reason
        empty = {k: None for k in ("drift", "omission", "deletion_auc", "insertion_auc")}
        return {**empty, **({"mass_in_mask": None} if is_mask else {}), "q": float(q),
                "delta": _num(att.delta), "unscored": reason}, False
    key = _key(job, job.runs[variant], item, target, job.options) if job.use_cache else None
    digest = attribution_digest(att) if job.use_cache else ""

    def cached(part: str, inputs: dict[str, str], params: dict[str, Any],
               compute: Any) -> tuple[dict[str, Any], bool]:
        params = {**params, "version": SCORING_VERSION}
        if key is not None:
            hit = job.scores.get(key, part, inputs, params)
            if hit is not None:
                return hit, True
        out = compute()
        if key is not None:
            job.scores.put(key, part, inputs, params, out)
        return out, False

    def faithfulness() -> dict[str, Any]:
        with _COMPUTE_LOCK:
            return _faithfulness(job, variant, item, target, att, faithfulness_steps)

    # a padded input's scores read only its content box: the box is part of their key (a
    # whole-map box is left out, so entries scored before boxes existed stay valid)
    box = att.params.get("content_box") if att.modality == "image" else None
    shape = list(np.asarray(att.values).shape)
    boxed = {"content_box": [int(v) for v in box]} \
        if box is not None and [int(v) for v in box] != [0, 0, *shape] else {}
    regions, hit_r = cached(
        "regions",
        {"map": digest, "relevance": array_digest(rel_map) if key is not None else ""},
        {"q": float(q), "is_mask": bool(is_mask), **boxed},
        lambda: _scores(att, rel_map, is_mask, q))
    faith, hit_f = cached(
        "faithfulness", {"map": digest},
        {"steps": int(faithfulness_steps), "baseline": _faithfulness_baseline(job), **boxed},
        faithfulness)
    return {**regions, **faith}, hit_r and hit_f


def _num(v: Any) -> float | None:
    return None if v is None or not np.isfinite(v) else float(v)


def _scores(att: Any, relevance: np.ndarray, is_mask: bool, q: float) -> dict[str, Any]:
    import warnings

    from befa_viz.metrics import drift_omission, fit_to_box, mass_in_mask

    values = np.asarray(att.values, dtype=np.float64)
    rel = relevance
    # a padded input's photo is its content box: masks at the photo's aspect go into the box,
    # and only the box is scored (the pad counts nowhere)
    box = att.params.get("content_box") if att.modality == "image" else None
    if rel.ndim == 2 and rel.shape != values.shape:
        rel = fit_to_box(rel, values.shape, box)
    with warnings.catch_warnings():  # all-zero map → NaN, recorded as null
        warnings.simplefilter("ignore", UserWarning)
        do = drift_omission(values, rel, q, box=box)
    out = {"drift": _num(do["drift"]), "omission": _num(do["omission"]), "q": float(q),
           "delta": _num(att.delta)}
    if is_mask:
        out["mass_in_mask"] = _num(mass_in_mask(values, rel, box=box))
    return out


def _item_gate(run: Any, modality: str, item: int) -> dict[str, Any]:
    import torch

    out: dict[str, Any] = dict(run.gate.get(modality, {}))
    if _variant_of(run) == "with":
        model = run.model
        with torch.no_grad():
            g = model.gate(modality, model.raw_features(modality)[item: item + 1])
        out.update(item_gate_mean=float(g.mean()), item_gate_min=float(g.min()),
                   item_gate_max=float(g.max()))
    return out


def explain_items(
    item_ids: Any = None,
    *,
    top_drift: int | None = None,
    workspace: Workspace | str | os.PathLike[str] | None = None,
    run: Any = None,
    modality: str = "image",
    target: str | None = None,
    method: str | None = None,
    n_steps: int | None = None,
    baseline: str | None = None,
    user: str | None = None,
    compare_adapter: bool = True,
    use_cache: bool = True,
    cache: Any = None,
    sanity: bool = False,
    q: float = 0.5,
    faithfulness_steps: int = 20,
    batch_size: int = 8,
    seed: int = 0,
    progress: bool = False,
    engine: Any = None,
) -> list[ItemExplanation]:
    """Explain several items (or the ``top_drift`` most drifting ones) with and without BeFA.

    Items are batched: all uncached maps of one variant are computed in chunks of
    ``batch_size`` items (items and integration steps in one pass, see
    :mod:`befa_viz.attribution.methods`). Maps are cached in the workspace
    (:mod:`befa_viz.attribution.cache`), and so are the scores computed from them (keyed by
    the map's key, the digests of the map and relevance map, ``q`` and
    ``faithfulness_steps``): a repeated request runs no encoder pass. Encoders and runs are
    reused across calls through in-process memos (:func:`clear_memos`).

    Drift and omission are measured against a relevance map: the dataset's ground-truth mask
    when it has one (the synthetic shop's product mask; for text, its relevant words), else
    the behaviour-alignment map (cos(ċ(E(x)), e_i), same method) of the run without the
    adapter (of the run itself when there is no pair; that target never uses the adapter).

    Args:
        item_ids: Raw item ids (the dataset's original ids), or one id.
        top_drift: Instead of ids: explain every item that has the modality (and, for
            ``content_score``, training users) and keep the ``top_drift`` with the largest
            drift of the explained run's variant. Costs one map per item and variant.
        workspace: Workspace (or its folder).
        run: A :class:`~befa_viz.train.Run`, a run name or folder; default the newest
            complete run of the current dataset with ``modality`` features.
        modality: ``"image"`` or ``"text"``.
        target: Name in ``befa_viz.attribution.TARGETS``; default ``content_score`` (the
            content pathway's score for the item's users, comparable with and without the
            adapter), or ``user_score`` when ``user`` is given.
        method: Name in ``befa_viz.attribution.ATTRIBUTIONS``.
        n_steps: Integration steps (path methods).
        baseline: ``black``, ``white``, ``blur``, ``mean`` (images) or ``pad`` (text);
            default ``blur`` / ``pad``.
        user: Raw user id for ``user_score``.
        compare_adapter: Explain the paired run with the other adapter setting too (an error
            when there is none).
        use_cache: Read and write the attribution cache.
        cache: A :class:`~befa_viz.cache.Cache` (default: the workspace's).
        sanity: Also run the sanity controls (model / target randomisation, input only).
        q: Mass share defining the top regions of drift and omission.
        faithfulness_steps: Points of the deletion / insertion curves.
        batch_size: Items per attribution call.
        seed: Seed for random targets and noisy methods.
        progress: Show a progress bar.
        engine: A :class:`~befa_viz.distributed.RayEngine`: compute the maps and scores on
            Ray actors first (into the attribution cache, which this call then reads);
            ``None`` computes them here.

    Returns:
        One explanation per item, in the order asked (``top_drift``: most drifting first).

    Raises:
        UnknownNameError: Unknown item, user, target or method (closest names suggested).
        DataError: An item without an image (image modality) or without text, or without
            training users for ``content_score``.
        ConfigError: ``n_steps`` ≤ 0, no paired run for ``compare_adapter``, a run without
            ``modality`` features, a ``user`` with a target that takes none.
        StaleArtifactError: The run's features came from another encoder than the one
            available now.
    """
    from befa_viz.attribution import ATTRIBUTIONS, TARGETS, sanity_check
    from befa_viz.attribution.cache import AttributionCache, ScoreCache
    from befa_viz.cache import Cache
    from befa_viz.errors import ConfigError, DataError

    if (item_ids is None) == (top_drift is None):
        raise ConfigError("Give item ids or top_drift=N (not both, not neither).")
    if top_drift is not None and int(top_drift) < 1:
        raise ConfigError(f"top_drift must be >= 1; got {top_drift}.")
    if n_steps is not None and int(n_steps) < 1:
        raise ConfigError(f"n_steps (--steps) must be >= 1; got {n_steps}.")
    if modality not in DEFAULT_BASELINES:
        raise ConfigError(f"modality must be 'image' or 'text'; got {modality!r}.")
    if int(batch_size) < 1:
        raise ConfigError(f"batch_size must be >= 1; got {batch_size}.")
    if method is not None:
        ATTRIBUTIONS.get(method)
    ws = _attr_ws(workspace)
    main_run = resolve_attribution_run(ws, run, modality)
    recipe = None
    if method is None:  # the evidence-chosen default (befa_viz.attribution.default_method)
        method, target, baseline, n_steps, recipe = _default_recipe(
            ws, main_run, modality, target, baseline, n_steps, user)
    target = target or ("user_score" if user is not None else DEFAULT_TARGET)
    TARGETS.get(target)
    if user is not None and target != "user_score":
        raise ConfigError(f"A user was given but target {target!r} does not use one; use "
                          "target 'user_score' (--target user_score) or drop --user.")
    runs = {_variant_of(main_run): main_run}
    if compare_adapter:
        pair_dir = _find_paired_dir(ws, main_run)
        pair = None if pair_dir is None else _open_run(pair_dir, main_run.device)
        if pair is None:
            other = "none" if _variant_of(main_run) == "with" else "befa"
            raise ConfigError(
                f"Run {main_run.name} has no paired run with adapter {other!r} (same dataset "
                f"{main_run.info.get('dataset')!r}, model {main_run.config.model!r}, seed "
                f"{main_run.config.seed}, features). Train it with 'befa-viz train --model "
                f"{main_run.config.model} --adapter {other} --seed {main_run.config.seed} "
                f"--dataset {main_run.info.get('dataset')}', or use --compare none."
            )
        runs[_variant_of(pair)] = pair
    runs = {v: runs[v] for v in VARIANTS if v in runs}
    encoder = encoder_for_run(main_run, modality)
    for r in runs.values():
        _feature_of(r, modality)
    ds = main_run.dataset
    user_idx = ds.user_index_of(user) if user is not None else None
    train_users = np.bincount(ds.interactions.train().item_idx, minlength=ds.n_items)
    needs_users = target in ("content_score", "adapted_alignment")

    if top_drift is not None:
        if modality == "image":
            pool = [i for i in range(ds.n_items) if ds.catalog.has_image(i)]
        else:
            feat = main_run.features["text"]
            pool = [i for i in range(ds.n_items) if _item_text(ds, i, feat).strip()]
        if needs_users:
            pool = [i for i in pool if train_users[i] > 0]
        log.info("top_drift: explaining %d of %d items (the rest lack %s%s)", len(pool),
                 ds.n_items, modality, " or training users" if needs_users else "")
        idx = pool
        if not idx:
            raise DataError(f"No item of dataset {ds.name!r} can be explained with {modality}.")
    else:
        ids = [item_ids] if isinstance(item_ids, (str, int)) else list(item_ids)
        if not ids:
            raise ConfigError("No item ids given.")
        idx = [ds.catalog.index_of(i) for i in ids]
        for i in idx:
            iid = ds.catalog.item_ids[i]
            if modality == "image" and not ds.catalog.has_image(i):
                raise DataError(f"Item {iid!r} has no image in dataset {ds.name!r}; explain "
                                "its text instead (--modality text).")
            if needs_users and train_users[i] == 0:
                raise DataError(
                    f"Item {iid!r} has no training interactions, so target {target!r} (its "
                    "users' content score) is undefined. Use --target behaviour_alignment, "
                    "or --user ID with --target user_score.")
        if modality == "text":
            feat = main_run.features["text"]
            empty = [ds.catalog.item_ids[i] for i in idx if not _item_text(ds, i, feat).strip()]
            if empty:
                raise DataError(f"Item {empty[0]!r} has no text in dataset {ds.name!r}; "
                                "explain its image instead (--modality image).")

    options = _method_options(method, modality, n_steps, baseline, ds, encoder)
    cache_obj = cache if isinstance(cache, Cache) else (Cache(cache) if cache else ws.cache())
    if engine is not None:  # the same calls on Ray actors, one batch of items per task
        from befa_viz.distributed import prefill_attributions

        engine.progress = engine.progress or progress
        prefill_attributions(
            [ds.catalog.item_ids[i] for i in idx],
            {"workspace": str(ws.root), "run": str(main_run.path), "modality": modality,
             "target": target, "method": method, "n_steps": n_steps, "baseline": baseline,
             "user": user, "compare_adapter": compare_adapter, "use_cache": use_cache,
             "cache": str(cache_obj.root), "q": q, "faithfulness_steps": faithfulness_steps,
             "batch_size": batch_size, "seed": seed}, engine, items_per_task=int(batch_size))
    job = _Job(ws=ws, ds=ds, encoder=encoder, runs=runs, modality=modality, target=target,
               method=method, options=options, user_idx=user_idx, user=user, seed=seed,
               cache=AttributionCache(cache_obj), scores=ScoreCache(cache_obj),
               use_cache=use_cache,
               batch_size=int(batch_size), dataset_fingerprint=ds.fingerprint())

    gt = _ground_truth(ds)
    rel_variant = "without" if "without" in runs else next(iter(runs))
    need_rel_maps = gt is None or modality == "text" or \
        not all(gt.is_usable(i) for i in idx)  # unusable garment masks: behaviour relevance
    total = len(idx) * (len(runs) + (1 if need_rel_maps else 0))
    if progress:
        from tqdm.auto import tqdm

        job.bar = tqdm(total=total, desc=f"{method} {modality}", unit="map")
    try:
        maps: dict[str, list[Any]] = {}
        hits: dict[str, list[bool]] = {}
        rel_hits: list[bool] = []
        for v in runs:
            maps[v], hits[v] = _attributions(job, v, idx, _target_for(v, target))
        rel_maps: list[Any] | None = None
        if need_rel_maps:
            if target == "behaviour_alignment" and rel_variant in maps:
                rel_maps = maps[rel_variant]
            else:
                rel_maps, rel_hits = _attributions(job, rel_variant, idx,
                                                   "behaviour_alignment")
    except KeyboardInterrupt:
        from befa_viz.errors import Interrupted

        if not use_cache:
            raise Interrupted("interrupted; nothing kept (--no-cache)") from None
        raise Interrupted(f"interrupted; {job.kept} of {total} maps kept in the cache, rerun "
                          "resumes") from None
    finally:
        if job.bar is not None:
            job.bar.close()
    n_hits = sum(map(sum, hits.values())) + sum(rel_hits)
    if use_cache and 0 < n_hits < total:
        log.info("resumed: %d of %d maps came from the cache, %d computed", n_hits, total,
                 job.kept)

    sanity_out: dict[str, Any] = {}
    if sanity:
        for v, r in runs.items():
            with _COMPUTE_LOCK:
                rep = sanity_check(encoder, r.model, _inputs(job, idx), idx,
                                   target=_target_for(v, target), method=method, seed=seed,
                                   attributions=maps[v], modality=modality,
                                   users=ds.interactions.train(), user_idx=user_idx,
                                   **options)
            sanity_out[v] = rep

    text_field = (main_run.features[modality].manifest.get("policies") or {}).get(
        "text_field", "text") if modality == "text" else None
    from befa_viz.viz.verdict import benchmark_verdicts, map_verdict

    bench = benchmark_verdicts(ws, ds.name) if modality == "image" else None
    out: list[ItemExplanation] = []
    for j, i in enumerate(idx):
        iid = ds.catalog.item_ids[i]
        relevance: dict[str, Any]
        rel_map, is_mask = None, False
        if gt is not None and modality == "image" and gt.is_usable(i):
            rel_map, is_mask = gt.relevant[i], True
            relevance = {"source": "ground_truth",
                         "note": "planted product mask of the synthetic shop" if gt.planted
                         else "garment mask from the packshot background"}
        elif gt is not None and modality == "text" and text_field in ("text", "title"):
            rel_map = _text_truth(gt, iid, str(text_field), _inputs(job, [i])[0],
                                  maps[next(iter(maps))][j])
            is_mask = rel_map is not None
            relevance = {"source": "ground_truth",
                         "note": "planted relevant words" if gt.planted else
                         "weak labels: attribute words (colour, type, pattern) in the text"}
        if rel_map is None:
            assert rel_maps is not None
            rel_map = np.asarray(rel_maps[j].values, dtype=np.float64)
            relevance = {"source": "behaviour_alignment",
                         "note": f"{method} map of cos(projected content, behaviour embedding)"
                                 f" of run {runs[rel_variant].name}"}
            if gt is not None:
                relevance["note"] += " (the ground-truth words could not be aligned)"
        relevance["map"] = rel_map
        scores: dict[str, dict[str, Any]] = {}
        scores_hit: dict[str, bool] = {}
        for v in runs:
            sc, scores_hit[v] = _variant_scores(job, v, i, _target_for(v, target), maps[v][j],
                                                rel_map, is_mask, q, faithfulness_steps)
            scores[v] = {**sc, "relevance": relevance["source"]}
        san = None
        if sanity:
            san = {v: {"rho": {c: _num(rep.rho[c][j]) for c in rep.rho},
                       "passes": bool(rep.item_passes[j]),
                       "method_passes": bool(rep.passes), "max_rho": rep.max_rho}
                   for v, rep in sanity_out.items()}
        for v in runs:  # every map carries its verdict (figures read params["verdict"])
            verdict = map_verdict(maps[v][j], benchmark=bench,
                                  sanity=None if san is None else san.get(v))
            maps[v][j].params["verdict"] = verdict.to_dict()
            scores[v]["verdict"] = verdict.label()
        out.append(ItemExplanation(
            item_id=iid, item_idx=int(i), modality=modality,
            item=_item_meta(ds, i, int(train_users[i])),
            attributions={v: maps[v][j] for v in runs}, scores=scores, relevance=relevance,
            runs={v: r.name for v, r in runs.items()},
            gate={v: _item_gate(r, modality, i) for v, r in runs.items()},
            params={"target": target, "method": method, **options, "run": main_run.name,
                    "default_from": None if recipe is None else recipe.source,
                    "variant": _variant_of(main_run),
                    "user": user, "seed": seed, "encoder": encoder.key,
                    "encoder_fingerprint": encoder.fingerprint(), "dataset": ds.name,
                    "dataset_fingerprint": job.dataset_fingerprint, "q": q},
            cached={v: hits[v][j] for v in runs}, sanity=san, scores_cached=scores_hit))
    if top_drift is not None:
        rank_v = _variant_of(main_run)

        def drift_of(e: ItemExplanation) -> float:
            d = e.scores[rank_v]["drift"]
            return -1.0 if d is None else float(d)

        out = sorted(out, key=drift_of, reverse=True)[: int(top_drift)]
    return out


def explain_item(
    item_id: str | int,
    *,
    workspace: Workspace | str | os.PathLike[str] | None = None,
    run: Any = None,
    modality: str = "image",
    target: str | None = None,
    method: str | None = None,
    n_steps: int | None = None,
    baseline: str | None = None,
    user: str | None = None,
    compare_adapter: bool = True,
    use_cache: bool = True,
    sanity: bool = False,
    progress: bool = False,
    **kwargs: Any,
) -> ItemExplanation:
    """Explain one item's image or text without and with the BeFA adapter, with scores.

    See :func:`explain_items` for the arguments, the relevance map and the errors.

    Returns:
        The item's :class:`ItemExplanation` (``attributions``, ``scores``, ``gate``, ...).

    Example:
        >>> from befa_viz.testing import toy_workspace
        >>> ws = toy_workspace()
        >>> e = explain_item("i3", workspace=ws, n_steps=4)
        >>> e.variants, e.relevance["source"], {"drift", "deletion_auc"} <= set(e.scores["with"])
        (['without', 'with'], 'behaviour_alignment', True)
    """
    return explain_items(
        [item_id], workspace=workspace, run=run, modality=modality, target=target,
        method=method, n_steps=n_steps, baseline=baseline, user=user,
        compare_adapter=compare_adapter, use_cache=use_cache, sanity=sanity,
        progress=progress, **kwargs)[0]


def _slug(s: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(s)).strip("_.") or "item"


def _write_error(path: Path, exc: OSError) -> Exception:
    from befa_viz.errors import ConfigError

    return ConfigError(f"Cannot write the report to '{path}': {exc.strerror or exc}. Choose a "
                       "writable output folder (--out).")


def _check_out_dir(out_dir: Path) -> None:
    from befa_viz.errors import ConfigError

    probe = out_dir
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise ConfigError(f"Cannot write the report to '{out_dir}': '{probe}' is a file, not a "
                          "folder. Choose another output folder (--out).")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"Cannot write the report to '{out_dir}': '{probe}' is not writable. "
                          "Choose a writable output folder (--out).")


def _write_files(e: ItemExplanation, folder: Path, formats: tuple[str, ...]) -> dict[str, Path]:
    from befa_viz import viz

    paths: dict[str, Path] = {}
    fig_formats = tuple(f for f in formats if f != "html")
    pair = e.figure_pairs()
    is_pair = isinstance(pair, tuple)
    title = f"{e.item_id}: {e.item.get('title', '')}".rstrip(": ")
    sanity_rows = ({_VARIANT_TITLES[v]: {**{f"ρ {c}": r for c, r in s["rho"].items()},
                                         "passes": s["passes"]}
                    for v, s in e.sanity.items()} if e.sanity else None)
    # the caption names the runs; say what drift and omission are measured against
    item_meta = {**e.item, "drift/omission vs": e.relevance["source"].replace("_", " ")}
    kwargs = {"image_pairs": pair} if e.modality == "image" else {"text_pairs": pair}
    report = None
    if fig_formats or "html" in formats:
        report = viz.item_report_figure(item_meta, scores=e.figure_scores(),
                                        sanity=sanity_rows, **kwargs)
    if fig_formats:
        assert report is not None
        for p in viz.save_figure(report, folder / "report", fig_formats):
            paths[f"report.{p.suffix[1:]}"] = p
        if e.modality == "image":
            heat = (viz.pair_figure(*pair, title=title) if is_pair
                    else viz.heatmap_figure(pair, title=title))
        else:
            heat = (viz.token_pair_figure(*pair, title=title) if is_pair
                    else viz.token_figure(pair, title=title))
        for p in viz.save_figure(heat, folder / "heatmap", fig_formats):
            paths[f"heatmap.{p.suffix[1:]}"] = p
    token_html = None
    if e.modality == "text":
        token_html = viz.token_pair_html(*pair) if is_pair else viz.token_html(pair)
        (folder / "tokens.html").write_text(
            f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>'
            f"{_slug(e.item_id)}</title></head><body>{token_html}</body></html>\n",
            encoding="utf-8")
        paths["tokens.html"] = folder / "tokens.html"
    if report is not None and "html" in formats:
        sections = [viz.Section(title="Item report", figures=[report]),
                    viz.Section(title="Scores", table=e.figure_scores(),
                                text=f"Drift and omission against the {e.relevance['source']} "
                                     f"map ({e.relevance['note']}).", html=token_html)]
        (folder / "report.html").write_text(viz.html_report(sections, title=title),
                                            encoding="utf-8")
        paths["report.html"] = folder / "report.html"
    paths["attributions.npz"] = viz.save_arrays(
        {v: e.attributions[v] for v in e.variants}, folder / "attributions.npz")
    np.save(folder / "relevance.npy", np.asarray(e.relevance["map"]), allow_pickle=False)
    paths["relevance.npy"] = folder / "relevance.npy"
    (folder / "scores.json").write_text(json.dumps(e.to_dict(), indent=2, default=str) + "\n")
    paths["scores.json"] = folder / "scores.json"
    return paths


def write_item_report(
    explanation: ItemExplanation,
    out_dir: str | os.PathLike[str],
    formats: Any = ("png", "svg"),
) -> dict[str, Path]:
    """Write one item's report into ``<out_dir>/<item>-<modality>-<method>-<target>/``.

    The folder holds ``report.<fmt>`` (item page: image/text heatmaps, scores, metadata;
    :func:`befa_viz.viz.item_report_figure`), ``heatmap.<fmt>`` (the with/without pair on one
    colour scale), ``tokens.html`` (text), ``report.html`` (when ``"html"`` is in
    ``formats``), ``attributions.npz`` (raw signed maps), ``relevance.npy`` and
    ``scores.json``. It is built in a temporary folder and moved into place, so a failed
    write leaves nothing half-written (an existing report of the same request is replaced).

    Args:
        explanation: From :func:`explain_item`.
        out_dir: Parent folder.
        formats: Figure formats (``png``, ``svg``, ``pdf``) and optionally ``html``; empty
            writes only the arrays, scores and token HTML (fast, for large batches).

    Returns:
        ``{file name: path}`` of the written files (paths in the final folder).

    Raises:
        ConfigError: If the folder cannot be written or a format is unknown.
    """
    from befa_viz.cache import atomic_dir
    from befa_viz.errors import ConfigError

    formats = tuple([formats] if isinstance(formats, str) else formats)
    bad = [f for f in formats if f not in ("png", "svg", "pdf", "html")]
    if bad:
        raise ConfigError(f"Unknown report format(s) {bad}; use png, svg, pdf or html.")
    e = explanation
    out = Path(out_dir).expanduser()
    _check_out_dir(out)
    folder = out / _slug(f"{e.item_id}-{e.modality}-{e.params['method']}-{e.params['target']}")
    try:
        with atomic_dir(folder) as tmp:
            written = _write_files(e, Path(tmp), formats)
    except OSError as exc:
        raise _write_error(folder, exc) from exc
    return {name: folder / p.name for name, p in written.items()}


def write_item_reports(
    explanations: Any,
    out_dir: str | os.PathLike[str],
    formats: Any = ("png", "svg"),
) -> dict[str, Any]:
    """Write a report per item plus ``scores.csv`` (one row per item) and ``scores.json``.

    Returns:
        ``{"items": {item_id: {file: path}}, "csv": path, "json": path}``.
    """
    import pandas as pd

    from befa_viz.cache import atomic_write_bytes

    out = Path(out_dir).expanduser()
    _check_out_dir(out)
    items = {e.item_id: write_item_report(e, out, formats) for e in explanations}
    rows = pd.DataFrame([e.csv_row() for e in explanations])
    try:
        atomic_write_bytes(out / "scores.csv", rows.to_csv(index=False).encode())
        atomic_write_bytes(out / "scores.json", (json.dumps(
            [e.to_dict() for e in explanations], indent=2, default=str) + "\n").encode())
    except OSError as exc:
        raise _write_error(out, exc) from exc
    return {"items": items, "csv": out / "scores.csv", "json": out / "scores.json"}


@_dataclass
class HeatmapReport:
    """What :func:`heatmap_report` did: the explanations and where their reports went."""

    explanations: list[ItemExplanation]
    out_dir: Path
    paths: dict[str, Any]

    def table(self) -> str:
        """A compact fixed-width score table (one line per item and variant)."""
        cols = ("drift", "omission", "deletion_auc", "insertion_auc", "delta")
        head = ["item", "variant", "drift", "omission", "deletion", "insertion", "delta",
                "cached", "verdict"]
        rows = []
        for e in self.explanations:
            for v in e.variants:
                s = e.scores[v]
                vals = ["–" if s.get(k) is None else
                        (f"{s[k]:.2g}" if k == "delta" else f"{s[k]:.3f}") for k in cols]
                rows.append([e.item_id if v == e.variants[0] else "", v, *vals,
                             "yes" if e.cached.get(v) else "no", str(s.get("verdict", ""))])
            if len(e.variants) == 2:
                from befa_viz.viz.verdict import pair_ratio

                r = pair_ratio(e.attributions["without"], e.attributions["with"])
                rows.append(["", "Σ|with|/Σ|without|", "undefined" if r is None else f"{r:.3g}",
                             *[""] * (len(head) - 3)])
        widths = [max(len(r[c]) for r in [head, *rows]) for c in range(len(head))]
        return "\n".join("  ".join(x.ljust(w) for x, w in zip(r, widths, strict=True)).rstrip()
                         for r in [head, *rows])


def heatmap_report(
    item_ids: Any = None,
    *,
    top_drift: int | None = None,
    workspace: Workspace | str | os.PathLike[str] | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    formats: Any = ("png", "svg"),
    **kwargs: Any,
) -> HeatmapReport:
    """Explain items and write their reports: what ``befa-viz heatmap`` runs.

    Args:
        item_ids: Raw item ids (one id or several).
        top_drift: Instead of ids, the N most drifting items (see :func:`explain_items`).
        workspace: Workspace (or its folder).
        out_dir: Output folder; default ``<workspace>/reports/heatmaps/<run name>``.
        formats: Figure formats (and ``html``).
        **kwargs: Passed to :func:`explain_items` (``run``, ``target``, ``method``, ...).

    Returns:
        The explanations, the output folder and the written paths (one id given as a string:
        ``{file: path}`` of its folder; a list or ``top_drift``: see
        :func:`write_item_reports`, with ``scores.csv``).
    """
    ws = _attr_ws(workspace)
    if out_dir is not None:  # fail before the (possibly long) attribution
        _check_out_dir(Path(out_dir).expanduser())
    exps = explain_items(item_ids, top_drift=top_drift, workspace=ws, **kwargs)
    out = Path(out_dir).expanduser() if out_dir is not None else (
        ws.reports_dir / "heatmaps" / exps[0].params["run"])
    single = top_drift is None and isinstance(item_ids, (str, int))
    paths = (write_item_report(exps[0], out, formats) if single
             else write_item_reports(exps, out, formats))
    return HeatmapReport(exps, out, paths)


#: Targets that need no trained model: they explain the pretrained encoder alone.
MODEL_FREE_TARGETS = ("content_focus", "random")


@_dataclass
class ContentHeatmaps:
    """Model-free heatmaps of a dataset's items (:func:`content_heatmaps`).

    Attributes:
        dataset: The dataset explained.
        encoder: Key of the encoder whose features were explained.
        attributions: One per item, in the order asked.
        out_dir: Output folder (``None`` if nothing was written).
        paths: ``{item_id: [written files]}``.
    """

    dataset: str
    encoder: str
    attributions: list[Any]
    out_dir: Path | None = None
    paths: dict[str, list[Path]] = _field(default_factory=dict)


def has_explainable_run(workspace: Workspace | str | os.PathLike[str] | None = None,
                        dataset: str | None = None, modality: str = "image") -> bool:
    """Whether ``dataset`` (default: the latest) has a complete run with ``modality``
    features, i.e. whether model targets can be explained at all."""
    ws = _attr_ws(workspace)
    name = ws.resolve_dataset(dataset)
    if ws.load_dataset(name).items_only:
        return False
    return any(modality in json.loads((p / "run.json").read_text()).get("features", {})
               for p in ws.run_dirs(dataset=name))


def content_heatmaps(
    item_ids: Any,
    *,
    workspace: Workspace | str | os.PathLike[str] | None = None,
    dataset: str | None = None,
    modality: str = "image",
    target: str = "content_focus",
    method: str | None = None,
    n_steps: int | None = None,
    baseline: str | None = None,
    encoder: str | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    formats: Any = ("png",),
    seed: int = 0,
    device: str | None = None,
    progress: bool = False,
) -> ContentHeatmaps:
    """Explain items with a model-free target (the pretrained encoder alone), no run needed.

    This is what an items-only catalog (imported without interactions) can be explained
    with, and what any dataset without a trained run offers: ``content_focus`` attributes
    ⟨E(x), E(x₀)/‖E(x₀)‖⟩, i.e. what the encoder's feature of the item is built from.

    Args:
        item_ids: Raw item ids, or one id.
        workspace: Workspace (or its folder).
        dataset: Dataset name; default the latest (announced).
        modality: ``"image"`` or ``"text"``.
        target: ``content_focus`` or ``random`` (:data:`MODEL_FREE_TARGETS`).
        method: Name in ``befa_viz.attribution.ATTRIBUTIONS``; default the evidence-chosen
            method of the encoder (:func:`befa_viz.attribution.defaults.default_method`) for
            images, ``ig`` for text.
        n_steps: Integration steps (path methods); default the chosen recipe's.
        baseline: Baseline of path methods (default ``blur`` / ``pad``).
        encoder: Encoder key; default the one that encoded the dataset's newest features
            of ``modality`` (``befa-viz encode``).
        out_dir: Write one figure (``formats``) and the attribution (``.npz``) per item
            here; ``None`` writes nothing.
        formats: Figure formats (``png``, ``svg``, ``pdf``).
        seed: Seed of random targets and noisy methods.
        device: Torch device.
        progress: Progress bar over the items.

    Returns:
        The attributions (and written paths).

    Raises:
        ConfigError: A target that needs a model, an unknown method or modality, or no
            encoder known for the dataset.
        UnknownNameError: An unknown item id.
        DataError: An item without an image (image) or text (text).
    """
    from befa_viz.attribution import ATTRIBUTIONS, explain
    from befa_viz.encoders import create_encoder
    from befa_viz.encoders.store import item_text
    from befa_viz.errors import ConfigError, DataError

    if target not in MODEL_FREE_TARGETS:
        raise ConfigError(
            f"Target {target!r} needs a trained recommender; without a run only the model-free "
            f"targets {', '.join(MODEL_FREE_TARGETS)} apply (--target content_focus)."
        )
    if modality not in DEFAULT_BASELINES:
        raise ConfigError(f"modality must be 'image' or 'text'; got {modality!r}.")
    if method is not None:
        ATTRIBUTIONS.get(method)
    ws = _attr_ws(workspace)
    name = ws.resolve_dataset(dataset)
    ds = ws.load_dataset(name)
    text_field = "text"
    if encoder is None:
        found = latest_features(ws, name, [modality]).get(modality)
        man = found / "manifest.json" if found is not None else None
        if man is None or not man.is_file() or not json.loads(man.read_text()).get("encoder"):
            raise ConfigError(
                f"No encoder is known for the {modality} of dataset {name!r}: encode it first "
                f"('befa-viz encode -d {name}') or name one (--encoder KEY, e.g. "
                f"{DEFAULT_IMAGE_ENCODER if modality == 'image' else DEFAULT_TEXT_ENCODER})."
            )
        manifest = json.loads(man.read_text())
        encoder = str(manifest["encoder"])
        text_field = str((manifest.get("policies") or {}).get("text_field", "text"))
        log.info("explaining with encoder %s (it encoded %s)", encoder, found)
    if method is None:  # the evidence-chosen default; its target needs a model, ours is model-free
        from befa_viz.attribution.defaults import default_method

        rec = default_method(encoder, workspace=ws) if modality == "image" else None
        method = rec.method if rec is not None else "ig"
        baseline = baseline or (rec.baseline if rec is not None else None)
        n_steps = n_steps if n_steps is not None or rec is None else rec.n_steps
        log.info("default attribution method for %s: %s", encoder, method)
    enc = create_encoder(encoder, modality=modality)
    if device is not None:
        enc.to(device)
    ids = [item_ids] if isinstance(item_ids, (str, int)) else list(item_ids)
    if not ids:
        raise ConfigError("No item ids given.")
    idx = [ds.catalog.index_of(i) for i in ids]
    inputs: list[Any] = []
    for i in idx:
        iid = ds.catalog.item_ids[i]
        if modality == "image":
            if not ds.catalog.has_image(i):
                raise DataError(f"Item {iid!r} has no image in dataset {name!r}; explain its "
                                "text instead (--modality text).")
            inputs.append(ds.catalog.image(i))
        else:
            text = item_text(ds.catalog, i, text_field)
            if not text.strip():
                raise DataError(f"Item {iid!r} has no text in dataset {name!r}; explain its "
                                "image instead (--modality image).")
            inputs.append(text)
    options = _method_options(method, modality, n_steps, baseline, ds, enc)
    atts: list[Any] = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(idx), desc=f"{method} {modality}", unit="map")
    try:
        for j, i in enumerate(idx):  # one item at a time: content_focus's reference is per item
            with _COMPUTE_LOCK:
                (att,) = explain(enc, None, [inputs[j]], [i], target=target, method=method,
                                 modality=modality, item_ids=[ds.catalog.item_ids[i]],
                                 seed=seed, **dict(options))
            att.params.update({"dataset": name, "dataset_fingerprint": ds.fingerprint(),
                               "encoder": encoder, "encoder_fingerprint": enc.fingerprint()})
            atts.append(att)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    result = ContentHeatmaps(name, encoder, atts)
    if out_dir is not None:
        result.out_dir = _write_content_files(atts, Path(out_dir).expanduser(), formats)
        result.paths = {a.item_id: sorted(result.out_dir.glob(f"{_slug(a.item_id)}.*"))
                        for a in atts}
    return result


def _write_content_files(atts: list[Any], out: Path, formats: Any) -> Path:
    from befa_viz.viz import heatmap_figure, save_figure, token_figure

    _check_out_dir(out)
    out.mkdir(parents=True, exist_ok=True)
    for att in atts:
        base = out / _slug(att.item_id)
        fig = heatmap_figure(att) if att.modality == "image" else token_figure(att)
        save_figure(fig, base, tuple(f for f in formats if f != "html"))
        att.save(base.with_suffix(".npz"))
    return out


__all__ += ["ContentHeatmaps", "MODEL_FREE_TARGETS", "content_heatmaps", "has_explainable_run"]

# ---- end attribution verbs ---------------------------------------------------------------

# ---- demo / benchmark verbs --------------------------------------------------------------
# The planted-truth benchmark (befa_viz.benchmark) and the `make demo` job (befa_viz.demo).
from befa_viz.benchmark import BenchmarkResult, run_benchmark  # noqa: E402
from befa_viz.demo import DemoResult, run_demo  # noqa: E402

__all__ += ["BenchmarkResult", "DemoResult", "run_benchmark", "run_demo"]
# ---- end demo / benchmark verbs ----------------------------------------------------------

# ---- explore verbs (explorer app and notebooks; implemented in befa_viz.explore) -----------
from befa_viz.explore import (  # noqa: E402
    MASK_COLOURS,
    RunPair,
    ScoreJob,
    adapter_metrics,
    explainable_items,
    explanation_json,
    explanation_npz,
    explanation_png,
    find_workspace,
    item_attributes,
    item_details,
    item_masks,
    item_space,
    item_thumbnails,
    mask_colour,
    mask_overlay,
    method_names,
    nearest_items,
    open_run_pair,
    paired_scatter_figure,
    paired_test,
    recommend,
    run_pairs,
    score_histogram_figure,
    score_table,
    search_items,
    steps_apply,
    target_names,
    user_history,
    worst_items,
)

__all__ += ["MASK_COLOURS", "RunPair", "ScoreJob", "adapter_metrics", "explainable_items",
            "explanation_json", "explanation_npz", "explanation_png", "find_workspace",
            "item_attributes",
            "item_details", "item_masks", "item_space", "item_thumbnails", "mask_colour",
            "mask_overlay", "method_names", "nearest_items", "open_run_pair",
            "paired_scatter_figure", "paired_test", "recommend", "run_pairs",
            "score_histogram_figure", "score_table", "search_items", "steps_apply",
            "target_names", "user_history", "worst_items"]
# ---- end explore verbs -------------------------------------------------------------------


# ---- precomputed features (no raw media): attribution over dimensions and modalities -------
@_dataclass
class FeatureExplanation:
    """One item's precomputed-feature attribution and its modalities' shares.

    Attributes:
        item_id: Raw item id.
        attribution: IG over the feature dimensions of ``modality`` (see
            :func:`befa_viz.attribution.features.feature_attribution`).
        shares: Each modality's share of the content score change from the baseline.
        verdict: The map's verdict (:func:`befa_viz.viz.verdict.map_verdict`).
        run: The run explained.
    """

    item_id: str
    attribution: Any
    shares: dict[str, dict[str, float]]
    verdict: Any
    run: str

    def top_dims(self, k: int = 5) -> list[tuple[int, float]]:
        vals = np.asarray(self.attribution.values)
        return [(int(d), float(vals[d])) for d in self.attribution.extras["top_dims"][:k]]


def explain_features(
    item_ids: Any,
    *,
    workspace: Workspace | str | os.PathLike[str] | None = None,
    run: Any = None,
    modality: str = "audio",
    target: str = "content_score",
    baseline: str = "mean",
    n_steps: int | None = None,
) -> list[FeatureExplanation]:
    """Explain items of a modality that has only precomputed features (e.g. MMRec audio).

    Pixel or token maps need the raw media; without them the content pathway is still a
    function of the feature vector, so this attributes the target to the feature dimensions
    (Captum IG from the dataset's mean vector) and splits the item's content score by
    modality.

    Args:
        item_ids: Original item id(s).
        workspace: Workspace (or folder).
        run: Run name or folder (default: the newest run with ``modality`` features).
        modality: Feature modality of the run.
        target: ``content_score`` or ``behaviour_alignment``.
        baseline: ``"mean"`` or ``"zeros"`` feature vector.
        n_steps: Integration steps (``None``: chosen by the completeness error).

    Returns:
        One explanation per item.

    Raises:
        ConfigError: If the run has no ``modality`` features.
        DataError: If an item is unknown or (``content_score``) has no training users.
    """
    from befa_viz.attribution.features import feature_attribution, modality_shares
    from befa_viz.errors import ConfigError
    from befa_viz.viz.verdict import map_verdict

    ws = _attr_ws(workspace)
    r = resolve_attribution_run(ws, run, modality)
    if modality not in getattr(r.model, "modalities", []):
        raise ConfigError(f"Run {r.name} has no {modality!r} features (it has "
                          f"{', '.join(r.model.modalities) or 'none'}); pass --run or another "
                          f"--modality.")
    ds = r.dataset
    ids = [item_ids] if isinstance(item_ids, (str, int)) else list(item_ids)
    idx = [ds.catalog.index_of(str(i)) for i in ids]
    users = ds.interactions.train()
    atts = feature_attribution(r.model, modality, idx, target=target, users=users,
                               item_ids=[ds.catalog.item_ids[i] for i in idx],
                               baseline=baseline, n_steps=n_steps)
    return [FeatureExplanation(item_id=a.item_id, attribution=a,
                               shares=modality_shares(r.model, i, users=users,
                                                      baseline=baseline),
                               verdict=map_verdict(a), run=r.name)
            for a, i in zip(atts, idx, strict=True)]
