"""Data verbs: import, validate, stats, export, synthesise a dataset, make garment masks.

A dataset lives in <workspace>/datasets/<name>/ (RecDataset.save's files). Feature arrays that
came with an import (MMRec's *_feat.npy) sit beside it in features/<modality>_feat.npy with a
manifest.json; encoded features live in the feature store (<workspace>/features/...).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from befa_viz.workspace import Workspace

__all__ = ["IMPORTED_FEATURES_DIR", "MasksResult", "dataset_features", "dataset_features_dir",
           "dataset_stats", "export_mmrec", "import_dataset", "latest_features", "make_masks",
           "synth_dataset", "validate_dataset"]


log = logging.getLogger(__name__)
_DATASET_NAME_CHARS = "letters, digits, '.', '_' and '-'"
IMPORTED_FEATURES_DIR = "features"


def _data_ws(workspace: Workspace | str | os.PathLike[str] | None) -> Workspace:
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
    ws = _data_ws(workspace)
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


@dataclass
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
