"""MMRec format, both ways: ``<name>.inter`` + ``<modality>_feat.npy`` files.

An MMRec dataset folder (https://github.com/enoche/MMRec, ``data/<name>/``) holds:

- ``<name>.inter``: tab-separated with a header; ``userID``, ``itemID`` (0-based integers) and
  ``x_label`` (0/1/2 = train/valid/test) are required, ``rating`` and ``timestamp`` optional
  (MMRec itself reads only the first three);
- ``<modality>_feat.npy``: float arrays ``[n_items, dim]``, row ``i`` = item ``i``
  (``image_feat.npy``, ``text_feat.npy``, any other modality name);
- optionally ``i_id_mapping.csv`` / ``u_id_mapping.csv`` (tab-separated; an ``itemID`` /
  ``userID`` column plus one column with the raw id, e.g. ``asin``), written by MMRec's
  preprocessing notebooks and by :func:`export_mmrec`;
- optionally ``items.tsv`` (befa-viz's addition): ``itemID`` plus ``title``, ``text``, ``image``.

The number of items is the feature files' row count (items without interactions are allowed),
else the items table's, else ``max(itemID) + 1``. Users are renumbered contiguously in ``userID``
order (``user_ids`` keeps the original ids). Splits are taken as they are, never re-drawn.
"""

from __future__ import annotations

import io
import logging
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from befa_viz.cache import atomic_write_bytes
from befa_viz.data.prepare import describe_rows
from befa_viz.data.types import Catalog, Interactions, RecDataset
from befa_viz.errors import ConfigError, DataError

__all__ = [
    "import_mmrec",
    "export_mmrec",
    "load_feature_arrays",
    "save_feature_arrays",
    "FEATURE_SUFFIX",
    "INTER_COLUMNS",
]

log = logging.getLogger(__name__)

FEATURE_SUFFIX = "_feat.npy"
INTER_COLUMNS = ("userID", "itemID", "rating", "timestamp", "x_label")  # MMRec's column order
_REQUIRED = ("userID", "itemID", "x_label")
_MODALITY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_ITEMS_TABLE = "items.tsv"
_ID_MAPS = {"user": ("u_id_mapping.csv", "userID"), "item": ("i_id_mapping.csv", "itemID")}


# -- feature arrays ---------------------------------------------------------------------------
def _check_feature(arr: Any, file: Path, n_items: int | None) -> np.ndarray:
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "fiub":
        raise DataError(
            f"{file}: expected a numeric array, got dtype {getattr(arr, 'dtype', '?')}."
        )
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise DataError(
            f"{file}: expected a 2-D array [n_items, dim] with row i = item i, got shape "
            f"{arr.shape}. Reshape it (e.g. arr.reshape(len(arr), -1)) before importing."
        )
    if n_items is not None and arr.shape[0] != n_items:
        raise DataError(
            f"{file}: has {arr.shape[0]} rows but the dataset has {n_items} items; row i must be "
            "item i, one row per item."
        )
    if arr.dtype.kind == "f":
        finite = np.isfinite(arr).all(axis=1)
        if not finite.all():
            bad = np.flatnonzero(~finite)
            kinds = "NaN" if np.isnan(arr[bad[0]]).any() else "inf"
            raise DataError(
                f"{file}: {len(bad)} row(s) contain NaN/inf (first: row {bad[0]} = item "
                f"{bad[0]} has {kinds}; rows {', '.join(map(str, bad[:5]))}"
                f"{' ...' if len(bad) > 5 else ''}). Re-encode those items or drop them."
            )
    return np.ascontiguousarray(arr, dtype=np.float32)


def load_feature_arrays(
    folder: str | Path,
    *,
    n_items: int | None = None,
    modalities: Sequence[str] | None = None,
) -> dict[str, np.ndarray]:
    """Load and validate every ``<modality>_feat.npy`` in ``folder`` as float32.

    Args:
        folder: Folder to scan (not recursive).
        n_items: Required row count; ``None`` only checks that all files agree.
        modalities: Load only these (each must exist); ``None`` loads all.

    Returns:
        ``{modality: array [n_items, dim]}``, sorted by modality name.

    Raises:
        DataError: If a file is unreadable, not 2-D, has NaN/inf or the wrong row count.

    Example:
        >>> import tempfile
        >>> d = Path(tempfile.mkdtemp())
        >>> np.save(d / "image_feat.npy", np.ones((3, 4)))
        >>> {m: a.shape for m, a in load_feature_arrays(d).items()}
        {'image': (3, 4)}
    """
    folder = Path(folder)
    found = {p.name[: -len(FEATURE_SUFFIX)]: p for p in sorted(folder.glob(f"*{FEATURE_SUFFIX}"))}
    if modalities is not None:
        missing = [m for m in modalities if m not in found]
        if missing:
            raise DataError(
                f"{folder}: no feature file for modality {', '.join(map(repr, missing))} "
                f"(expected {missing[0]}{FEATURE_SUFFIX}); found: "
                f"{', '.join(found) or 'none'}."
            )
        found = {m: found[m] for m in modalities}
    out: dict[str, np.ndarray] = {}
    for modality, file in found.items():
        try:
            arr = np.load(file, allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise DataError(
                f"{file}: cannot be read as a .npy array ({e}). Save features with numpy.save "
                "(no pickled objects)."
            ) from None
        out[modality] = _check_feature(arr, file, n_items)
    rows = {m: a.shape[0] for m, a in out.items()}
    if len(set(rows.values())) > 1:
        raise DataError(
            f"{folder}: feature files disagree on the number of items: "
            + ", ".join(f"{m}{FEATURE_SUFFIX} has {r} rows" for m, r in rows.items())
            + ". Row i must be item i in every file."
        )
    return out


def save_feature_arrays(
    folder: str | Path, features: Mapping[str, np.ndarray], *, n_items: int | None = None
) -> list[Path]:
    """Write ``{modality: array}`` as ``<modality>_feat.npy`` (float32, validated, atomic).

    Returns:
        The written paths, in modality order.
    """
    folder = Path(folder)
    paths = []
    for modality in sorted(features):
        if not _MODALITY_RE.match(modality):
            raise ConfigError(
                f"Modality name {modality!r} cannot be a file name; use letters, digits, '_' "
                "and '-' (e.g. 'image', 'text')."
            )
        path = folder / f"{modality}{FEATURE_SUFFIX}"
        arr = _check_feature(np.asarray(features[modality]), path, n_items)
        buf = io.BytesIO()
        np.save(buf, arr, allow_pickle=False)
        atomic_write_bytes(path, buf.getvalue())
        paths.append(path)
    return paths


# -- import -------------------------------------------------------------------------------------
def _int_column(df: pd.DataFrame, col: str, file: Path, *, allowed: tuple[int, ...] | None = None
                ) -> np.ndarray:
    raw = df[col]
    num = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(num) | (num != np.round(num)) | (num < 0)
    if allowed is not None:
        bad = bad | ~np.isin(num, allowed)
    if bad.any():
        rows = np.flatnonzero(bad)
        accepted = ("one of " + "/".join(map(str, allowed))) if allowed else "an integer >= 0"
        extra = " (0 = train, 1 = valid, 2 = test)" if col == "x_label" else ""
        raise DataError(
            f"{file}: column {col!r} must be {accepted}{extra}; got {raw.iloc[rows[0]]!r} at "
            f"{describe_rows(rows)}."
        )
    return num.astype(np.int64)


def _read_id_map(folder: Path, kind: str) -> dict[int, str] | None:
    fname, key = _ID_MAPS[kind]
    path = folder / fname
    if not path.is_file():
        return None
    df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    others = [c for c in df.columns if c != key]
    if key not in df.columns or len(others) != 1:
        raise DataError(
            f"{path}: expected two tab-separated columns, {key!r} and the raw id; found "
            f"{list(df.columns)}."
        )
    idx = _int_column(df, key, path)
    dup = pd.Series(idx).duplicated().to_numpy()
    if dup.any():
        raise DataError(
            f"{path}: {key} {idx[dup][0]} appears twice ({describe_rows(np.flatnonzero(dup))})."
        )
    return dict(zip(idx.tolist(), df[others[0]].astype(str).tolist(), strict=True))


def _read_items_table(path: Path, folder: Path, n_items: int | None
                      ) -> tuple[pd.DataFrame, int]:
    if not path.is_file():
        raise DataError(f"Item table {path} does not exist.")
    df = pd.read_csv(path, sep="\t" if path.suffix in (".tsv", ".inter") else ",", dtype=str,
                     keep_default_na=False)
    if "itemID" not in df.columns:
        raise DataError(f"{path}: needs an 'itemID' column (0-based item index); found "
                        f"{list(df.columns)}.")
    idx = _int_column(df, "itemID", path)
    dup = pd.Series(idx).duplicated().to_numpy()
    if dup.any():
        raise DataError(
            f"{path}: duplicate itemID {idx[dup][0]} at {describe_rows(np.flatnonzero(dup))}."
        )
    n = n_items if n_items is not None else len(df)
    if sorted(idx.tolist()) != list(range(n)):
        missing = sorted(set(range(n)) - set(idx.tolist()))[:5]
        raise DataError(
            f"{path}: itemID must cover 0..{n - 1} exactly once ({len(df)} rows for {n} items; "
            f"missing e.g. {missing}, out of range: {[int(i) for i in idx if i >= n][:5]})."
        )
    df = df.assign(_idx=idx).sort_values("_idx").reset_index(drop=True).drop(columns="_idx")
    if "image" in df.columns:
        df["image"] = [
            "" if not p else str(p if Path(p).is_absolute() else (folder / p).resolve())
            for p in df["image"]
        ]
    return df, n


def import_mmrec(
    path: str | Path,
    *,
    name: str | None = None,
    inter_file: str | None = None,
    items: str | Path | None = "auto",
    id_maps: bool | Literal["auto"] = "auto",
    modalities: Sequence[str] | None = None,
    extra_columns: Literal["error", "ignore"] = "error",
    duplicates: Literal["error", "drop"] = "error",
    cold_users: Literal["error", "drop"] = "error",
) -> tuple[RecDataset, dict[str, np.ndarray]]:
    """Import an MMRec dataset folder and its feature files.

    Args:
        path: Folder with ``<name>.inter`` and ``*_feat.npy`` files.
        name: Dataset name; default: the ``.inter`` file's stem.
        inter_file: File name of the interactions when the folder has several ``.inter``.
        items: Item table (``itemID`` + ``title``/``text``/``image`` columns, relative to
            ``path``); ``"auto"`` uses ``items.tsv`` if present, ``None`` none (empty titles).
        id_maps: Take raw ids from ``u_id_mapping.csv`` / ``i_id_mapping.csv``; ``"auto"`` uses
            them when present. Without them ids are the integers as strings.
        modalities: Feature files to load (``None`` = every ``*_feat.npy``).
        extra_columns: ``.inter`` columns other than userID/itemID/rating/timestamp/x_label:
            ``"error"`` or ``"ignore"`` (recorded).
        duplicates: Repeated (userID, itemID) lines: ``"error"`` or ``"drop"`` (keep the first).
        cold_users: Users with valid/test but no train lines: ``"error"``, or ``"drop"`` their
            lines as MMRec's ``filter_out_cod_start_users`` does (recorded).

    Returns:
        The dataset and ``{modality: float32 array [n_items, dim]}``.

    Raises:
        DataError: Naming the file and line/row of any malformed input.

    Example:
        >>> import tempfile
        >>> from befa_viz.testing import toy_dataset
        >>> feats = {"image": np.ones((12, 3))}
        >>> d = export_mmrec(toy_dataset(), tempfile.mkdtemp(), features=feats)
        >>> ds, feats = import_mmrec(d)
        >>> ds.n_users, ds.n_items, feats["image"].shape
        (8, 12, (12, 3))
    """
    folder = Path(path).expanduser().resolve()
    if not folder.is_dir():
        raise DataError(f"MMRec dataset folder {folder} does not exist or is not a folder.")
    if inter_file is None:
        inters = sorted(folder.glob("*.inter"))
        if len(inters) != 1:
            raise DataError(
                f"{folder}: expected exactly one <name>.inter file, found "
                f"{[p.name for p in inters] or 'none'}; pass inter_file='FILE' to choose."
            )
        inter_path = inters[0]
    else:
        inter_path = folder / inter_file
        if not inter_path.is_file():
            raise DataError(f"Interaction file {inter_path} does not exist.")
    name = name or inter_path.stem

    df = pd.read_csv(inter_path, sep="\t", dtype=str, keep_default_na=False)
    cols = [str(c) for c in df.columns]
    missing = [c for c in _REQUIRED if c not in cols]
    if missing:
        hint = " The file must be tab-separated." if len(cols) == 1 and "," in cols[0] else ""
        raise DataError(
            f"{inter_path}: header lacks {', '.join(map(repr, missing))}; found {cols}. MMRec "
            f"needs a header with userID, itemID, x_label (tab-separated).{hint}"
        )
    unknown = [c for c in cols if c not in INTER_COLUMNS]
    if unknown and extra_columns == "error":
        raise DataError(
            f"{inter_path}: unknown column(s) {', '.join(map(repr, unknown))}; accepted: "
            f"{', '.join(INTER_COLUMNS)}. Remove them or pass extra_columns='ignore'."
        )
    if len(df) == 0:
        raise DataError(f"{inter_path}: has a header but no interactions.")

    user_raw = _int_column(df, "userID", inter_path)
    item = _int_column(df, "itemID", inter_path)
    split = _int_column(df, "x_label", inter_path, allowed=(0, 1, 2))
    extras: dict[str, np.ndarray] = {}
    for col in ("rating", "timestamp"):
        if col in cols:
            num = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=float)
            if not np.isfinite(num).all():
                rows = np.flatnonzero(~np.isfinite(num))
                raise DataError(
                    f"{inter_path}: column {col!r} is not a finite number at "
                    f"{describe_rows(rows)} (got {df[col].iloc[rows[0]]!r})."
                )
            extras[col] = num.astype(np.int64) if (num == np.round(num)).all() else num
    lines = np.arange(len(df))
    policy: dict[str, Any] = {"extra_columns": {"policy": extra_columns, "ignored": unknown}}

    pairs = pd.DataFrame({"u": user_raw, "i": item})
    dup = pairs.duplicated(keep="first").to_numpy()
    if dup.any():
        if duplicates == "error":
            first_dup = int(np.flatnonzero(dup)[0])
            same = np.flatnonzero((user_raw == user_raw[first_dup]) & (item == item[first_dup]))
            raise DataError(
                f"{inter_path}: (userID {user_raw[first_dup]}, itemID {item[first_dup]}) appears "
                f"on {describe_rows(same)}; {int(dup.sum())} duplicate line(s) in all. Remove "
                "them or pass duplicates='drop' (keeps the first)."
            )
    policy["duplicates"] = {"policy": duplicates, "dropped": int(dup.sum())}
    keep = ~dup

    has_train = pd.Series(split[keep] == 0).groupby(user_raw[keep]).any()
    cold = has_train.index[~has_train.to_numpy()].to_numpy()
    if len(cold):
        rows = np.flatnonzero(np.isin(user_raw, cold) & keep)
        if cold_users == "error":
            raise DataError(
                f"{inter_path}: {len(cold)} user(s) have no training interaction (x_label 0), "
                f"e.g. userID {', '.join(map(str, cold[:5]))} at {describe_rows(rows)}. Every user "
                "needs >= 1 train line; fix the split or pass cold_users='drop' (MMRec's "
                "filter_out_cod_start_users)."
            )
        keep &= ~np.isin(user_raw, cold)
    policy["cold_users"] = {"policy": cold_users, "dropped_users": len(cold),
                            "dropped_lines": int(np.isin(user_raw, cold).sum())}
    user_raw, item, split, lines = user_raw[keep], item[keep], split[keep], lines[keep]
    extras = {k: v[keep] for k, v in extras.items()}

    # item count: feature rows > items table > max itemID + 1
    features = load_feature_arrays(folder, modalities=modalities)
    n_feat = next(iter(features.values())).shape[0] if features else None
    items_path: Path | None = None
    if items == "auto":
        items_path = folder / _ITEMS_TABLE if (folder / _ITEMS_TABLE).is_file() else None
    elif items is not None:
        items_path = Path(items) if Path(items).is_absolute() else folder / items
    table = None
    if items_path is not None:
        table, n_table = _read_items_table(items_path, folder, n_feat)
    if n_feat is not None:
        n_items = n_feat
    else:
        n_items = n_table if table is not None else int(item.max()) + 1
    if item.max() >= n_items:
        rows = lines[item >= n_items]
        what = (f"the feature files have {n_feat} rows" if n_feat is not None
                else f"{items_path} lists {n_items} items")
        raise DataError(
            f"{inter_path}: itemID {int(item.max())} at {describe_rows(rows)} is out of range: "
            f"{what} (itemIDs 0..{n_items - 1}). Wrong row count in the features or item table?"
        )

    # users: contiguous in userID order
    uniq_users = np.unique(user_raw)
    user_idx = np.searchsorted(uniq_users, user_raw)
    use_maps = id_maps is True or (id_maps == "auto")
    umap = _read_id_map(folder, "user") if use_maps else None
    imap = _read_id_map(folder, "item") if use_maps else None
    if id_maps is True and (umap is None or imap is None):
        raise DataError(f"{folder}: id_maps=True but u_id_mapping.csv / i_id_mapping.csv missing.")
    if umap is not None:
        lost = [u for u in uniq_users.tolist() if u not in umap]
        if lost:
            raise DataError(f"{folder / _ID_MAPS['user'][0]}: no raw id for userID {lost[:5]}.")
        user_ids = [umap[u] for u in uniq_users.tolist()]
    else:
        user_ids = [str(u) for u in uniq_users.tolist()]
    if imap is not None:
        lost = [i for i in range(n_items) if i not in imap]
        if lost:
            raise DataError(f"{folder / _ID_MAPS['item'][0]}: no raw id for itemID {lost[:5]}.")
        item_ids = [imap[i] for i in range(n_items)]
    else:
        item_ids = [str(i) for i in range(n_items)]

    if table is not None:
        def column(c: str) -> list[str]:
            return table[c].astype(str).tolist() if c in table.columns else [""] * n_items

        extra_cols = [c for c in table.columns if c not in ("itemID", "title", "text", "image")]
        catalog = Catalog(item_ids, column("title"), column("text"),
                          [p or None for p in column("image")],
                          meta=table[extra_cols].reset_index(drop=True) if extra_cols else None)
    else:
        catalog = Catalog(item_ids, [""] * n_items, [""] * n_items)
    inter = Interactions(user_idx, item, split, len(uniq_users), n_items,
                         timestamp=extras.get("timestamp"), rating=extras.get("rating"),
                         user_ids=user_ids)
    counts = {name_: int((split == code).sum())
              for code, name_ in enumerate(("train", "valid", "test"))}
    info = {
        "source": {"kind": "mmrec", "path": str(folder), "inter_file": inter_path.name,
                   "feature_files": {m: f"{m}{FEATURE_SUFFIX}" for m in features},
                   "items_table": items_path.name if items_path is not None else None,
                   "id_maps": umap is not None},
        "options": {"inter_file": inter_file, "items": None if items is None else str(items),
                    "id_maps": id_maps,
                    "modalities": None if modalities is None else list(modalities),
                    "extra_columns": extra_columns, "duplicates": duplicates,
                    "cold_users": cold_users},
        "counts": {"lines_in": len(df), "interactions": inter.n_interactions,
                   "users": inter.n_users, "items": n_items,
                   "items_without_interactions":
                       int((np.bincount(item, minlength=n_items) == 0).sum()),
                   "split": counts},
        "features": {m: list(a.shape) for m, a in features.items()},
        "policies": policy,
    }
    log.info("imported MMRec %s: %d users, %d items, %d interactions", inter_path,
             inter.n_users, n_items, inter.n_interactions)
    return RecDataset(name, catalog, inter, info), features


# -- export -------------------------------------------------------------------------------------
def export_mmrec(
    dataset: RecDataset,
    folder: str | os.PathLike[str],
    *,
    features: Mapping[str, np.ndarray] | None = None,
    name: str | None = None,
    items_table: bool = True,
) -> Path:
    """Write ``dataset`` (and features) in MMRec's format, readable by :func:`import_mmrec`.

    Writes ``<name>.inter`` (``userID itemID [rating] [timestamp] x_label``, tab-separated,
    ids = our contiguous indices), ``u_id_mapping.csv`` / ``i_id_mapping.csv`` (raw ids),
    ``<modality>_feat.npy`` (float32, row i = item i) and, with ``items_table``, ``items.tsv``.

    Args:
        dataset: The dataset to export.
        folder: Output folder (created; existing files of the same names are replaced).
        features: ``{modality: [n_items, dim]}`` arrays to write.
        name: Base name of the ``.inter`` file; default ``dataset.name``.
        items_table: Also write titles, texts and image paths to ``items.tsv``.

    Returns:
        The output folder.

    Example:
        >>> import tempfile
        >>> from befa_viz.testing import toy_dataset
        >>> out = export_mmrec(toy_dataset(), tempfile.mkdtemp())
        >>> sorted(p.name for p in out.iterdir())
        ['i_id_mapping.csv', 'items.tsv', 'toy.inter', 'u_id_mapping.csv']
    """
    folder = Path(folder).expanduser().resolve()
    folder.mkdir(parents=True, exist_ok=True)
    name = name or dataset.name
    if not _MODALITY_RE.match(name):
        raise ConfigError(f"MMRec dataset name {name!r} must be a plain file name.")
    it = dataset.interactions
    if features:
        save_feature_arrays(folder, features, n_items=dataset.n_items)
    # MMRec infers n_users/n_items as max id + 1: trailing ids without interactions vanish there
    if it.n_interactions and (it.item_idx.max() < dataset.n_items - 1):
        warnings.warn(
            f"Dataset {dataset.name!r}: the last item(s) (from index {it.item_idx.max() + 1}) have "
            "no interactions; MMRec infers n_items = max itemID + 1 and will see fewer items "
            "than the feature rows (befa-viz's importer reads them correctly).",
            stacklevel=2,
        )
    cols: dict[str, Any] = {"userID": it.user_idx, "itemID": it.item_idx}
    if it.rating is not None:
        cols["rating"] = it.rating
    if it.timestamp is not None:
        cols["timestamp"] = it.timestamp
    cols["x_label"] = it.split.astype(np.int64)

    def write_tsv(frame: pd.DataFrame, fname: str) -> None:
        atomic_write_bytes(folder / fname,
                           frame.to_csv(sep="\t", index=False, lineterminator="\n").encode())

    write_tsv(pd.DataFrame(cols), f"{name}.inter")
    write_tsv(pd.DataFrame({"user_id": dataset.user_ids, "userID": np.arange(dataset.n_users)}),
              "u_id_mapping.csv")
    write_tsv(pd.DataFrame({"item_id": dataset.catalog.item_ids,
                            "itemID": np.arange(dataset.n_items)}), "i_id_mapping.csv")
    if items_table:
        cat = dataset.catalog
        images = [str(cat.image_path(i)) if cat.has_image(i) else "" for i in range(len(cat))]
        write_tsv(pd.DataFrame({"itemID": np.arange(len(cat)), "title": cat.titles,
                                "text": cat.texts, "image": images}), _ITEMS_TABLE)
    log.info("exported %s to %s", dataset.name, folder)
    return folder

