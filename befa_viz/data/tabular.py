"""Generic layout: an items table, an image folder and an interactions table → RecDataset.

A folder such as::

    my-shop/
      items.csv          item_id,title,text,image      (CSV, TSV or Parquet; names by options)
      images/            <item_id>.jpg ... (or paths in the items table's image column)
      interactions.csv   user_id,item_id[,rating][,timestamp]

Every item problem is handled by an explicit policy, and the outcome is recorded in
``RecDataset.info["policies"]``:

- ``missing_image``: an item whose image is absent (empty cell, no file, or, with
  ``check_images=True``, a file PIL cannot decode): ``"error"`` (default; names the item and
  file), ``"skip"`` (drop the item and its interactions) or ``"keep"`` (item without image).
- ``empty_text``: an item with empty text: ``"title"`` (default; use the title), ``"keep"``,
  ``"skip"`` or ``"error"``.
- ``unknown_items``: interactions naming an item that is not in the items table: ``"error"``
  (default; names the lines) or ``"drop"``.
- duplicate item ids in the items table are always an error naming them.

The interactions then go through :func:`~befa_viz.data.prepare.prepare_interactions`
(threshold, k-core, remapping, seeded split); items left without interactions are dropped.
Image paths are stored absolute; images are never copied.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from befa_viz.data.prepare import (
    DEFAULT_SPLIT,
    ShortUsers,
    SplitBy,
    describe_rows,
    natural_order,
    normalise_ids,
    parse_split,
    prepare_interactions,
)
from befa_viz.data.types import Catalog, RecDataset
from befa_viz.errors import ConfigError, DataError

__all__ = ["import_table", "read_table", "check_image_files", "IMAGE_EXTENSIONS"]

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
MissingImage = Literal["error", "skip", "keep"]
EmptyText = Literal["title", "keep", "skip", "error"]
UnknownItems = Literal["error", "drop"]
_AUTO = "auto"


def read_table(path: str | Path, *, what: str = "table") -> tuple[pd.DataFrame, int | None]:
    """Read a CSV/TSV/Parquet table with every CSV cell as a string.

    Returns:
        The frame and the line offset for error messages (2 for text files with a header,
        ``None`` for Parquet).

    Raises:
        DataError: If the file is missing, of an unknown type or unreadable.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"The {what} file {path} does not exist.")
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path), None
        if suffix in (".csv", ".tsv", ".tab", ".txt"):
            sep = "," if suffix == ".csv" else "\t"
            return pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False), 2
    except (ValueError, OSError, ImportError, pd.errors.ParserError) as e:
        raise DataError(f"The {what} file {path} cannot be read: {e}") from None
    raise DataError(
        f"The {what} file {path} has an unknown type {suffix!r}; accepted: .csv, .tsv, .parquet."
    )


def _find(folder: Path, option: str | Path | None, stems: Sequence[str], what: str,
          required: bool) -> Path | None:
    if option is None:
        return None
    if option != _AUTO:
        p = Path(option)
        p = p if p.is_absolute() else folder / p
        if not p.exists():
            raise DataError(f"The {what} {p} does not exist.")
        return p.resolve()
    for stem in stems:
        for ext in (".csv", ".tsv", ".parquet"):
            if (folder / f"{stem}{ext}").is_file():
                return (folder / f"{stem}{ext}").resolve()
    if required:
        looked = ", ".join(f"{s}.csv/.tsv/.parquet" for s in stems)
        raise DataError(f"No {what} found in {folder} (looked for {looked}); name it explicitly.")
    return None


def _pick_column(frame: pd.DataFrame, option: str | None, default: str, what: str,
                 source: Path) -> str | None:
    if option is None:
        return None
    if option == _AUTO:
        return default if default in frame.columns else None
    if option not in frame.columns:
        raise DataError(
            f"{source}: no {what} column {option!r}; columns are "
            f"{', '.join(map(repr, map(str, frame.columns)))}."
        )
    return option


def _read_items_table(items_path: Path, item_id_col: str, title_col: str | None,
                      text_col: str | None, image_col: str | None, extra_cols: Sequence[str]
                      ) -> tuple[pd.DataFrame, int | None, str | None, str | None, str | None]:
    """The items table, its line offset and its title / text / image columns, checked."""
    table, offset = read_table(items_path, what="items")
    if item_id_col not in table.columns:
        raise DataError(
            f"{items_path}: no item id column {item_id_col!r}; columns are "
            f"{', '.join(map(repr, map(str, table.columns)))}. Name it with item_id_col='COLUMN'."
        )
    ti_col = _pick_column(table, title_col, "title", "title", items_path)
    tx_col = _pick_column(table, text_col, "text", "text", items_path)
    im_col = _pick_column(table, image_col, "image", "image", items_path)
    missing_extra = [c for c in extra_cols if c not in table.columns]
    if missing_extra:
        raise DataError(f"{items_path}: extra column(s) {missing_extra} not found.")
    return table, offset, ti_col, tx_col, im_col


def check_image_files(paths: Sequence[str | None], *, decode: bool = False) -> np.ndarray:
    """Per path: 0 = fine, 1 = missing (empty or no such file), 2 = unreadable (``decode``).

    Example:
        >>> check_image_files(["", "/nonexistent.png"]).tolist()
        [1, 1]
    """
    status = np.zeros(len(paths), dtype=np.int8)
    for k, p in enumerate(paths):
        if not p or not os.path.isfile(p):
            status[k] = 1
        elif decode:
            from PIL import Image

            try:
                with Image.open(p) as im:
                    im.load()
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
                status[k] = 2
    return status


def _images_by_id(image_dir: Path, ids: Sequence[str]) -> list[str]:
    by_stem: dict[str, str] = {}
    for entry in sorted(os.listdir(image_dir)):
        stem, ext = os.path.splitext(entry)
        if ext.lower() not in IMAGE_EXTENSIONS:
            continue
        if stem in by_stem:
            raise DataError(
                f"{image_dir}: two images for item {stem!r} ({by_stem[stem]} and {entry}); keep "
                "one or name images in the items table's image column."
            )
        by_stem[stem] = entry
    return [str(image_dir / by_stem[i]) if i in by_stem else "" for i in ids]


def _apply_item_policies(
    items: pd.DataFrame, *, source: str, line_offset: int | None, image_source: str | None,
    missing_image: MissingImage, empty_text: EmptyText, check_images: bool,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Validate ids, then apply the image and text policies to the canonical items frame."""
    ids = items["item_id"]
    empty_id = ids.eq("").to_numpy()
    if empty_id.any():
        raise DataError(
            f"{source}: empty item id at "
            f"{describe_rows(np.flatnonzero(empty_id), line_offset=line_offset)}."
        )
    dup = ids.duplicated(keep=False).to_numpy()
    if dup.any():
        names = pd.unique(ids[dup])
        raise DataError(
            f"{source}: duplicate item id(s) {', '.join(repr(str(x)) for x in names[:5])}"
            f"{' ...' if len(names) > 5 else ''} at "
            f"{describe_rows(np.flatnonzero(dup), line_offset=line_offset)}; item ids must be "
            "unique (deduplicate the table first)."
        )
    report: dict[str, Any] = {}
    drop = np.zeros(len(items), dtype=bool)

    # images
    if image_source is None:
        report["missing_image"] = {"policy": missing_image, "image_source": None,
                                   "note": "no image column or folder: items have no image"}
    else:
        status = check_image_files(items["image"].tolist(), decode=check_images)
        bad = status > 0
        examples = [f"{items['item_id'].iat[k]} ({items['image'].iat[k] or 'no path'})"
                    for k in np.flatnonzero(bad)[:5]]
        if bad.any() and missing_image == "error":
            kinds = []
            if (status == 1).any():
                kinds.append(f"{int((status == 1).sum())} missing")
            if (status == 2).any():
                kinds.append(f"{int((status == 2).sum())} unreadable")
            raise DataError(
                f"{source}: {' and '.join(kinds)} image(s), e.g. item {', '.join(examples)}. "
                "Fix the files, or choose missing_image='skip' (drop those items) or 'keep' "
                "(keep them without image)."
            )
        if missing_image == "skip":
            drop |= bad
        elif missing_image == "keep":
            items.loc[bad, "image"] = ""
        report["missing_image"] = {
            "policy": missing_image, "image_source": image_source, "checked_decode": check_images,
            "missing": int((status == 1).sum()), "unreadable": int((status == 2).sum()),
            "examples": examples,
        }

    # texts
    empty = items["text"].str.strip().eq("").to_numpy()
    filled = 0
    if empty.any():
        if empty_text == "error":
            rows = np.flatnonzero(empty)
            raise DataError(
                f"{source}: {len(rows)} item(s) have empty text, e.g. item "
                f"{', '.join(repr(str(x)) for x in items['item_id'].iloc[rows[:5]])} at "
                f"{describe_rows(rows, line_offset=line_offset)}. Fill them, or choose "
                "empty_text='title', 'keep' or 'skip'."
            )
        if empty_text == "title":
            has_title = items["title"].str.strip().ne("").to_numpy()
            fill = empty & has_title
            items.loc[fill, "text"] = items.loc[fill, "title"]
            filled = int(fill.sum())
        elif empty_text == "skip":
            drop |= empty
    still_empty = items["text"].str.strip().eq("").to_numpy() & ~drop
    report["empty_text"] = {"policy": empty_text, "empty": int(empty.sum()),
                            "filled_from_title": filled, "left_empty": int(still_empty.sum())}
    report["items_dropped_by_policies"] = int(drop.sum())
    return items.loc[~drop].reset_index(drop=True), report


def assemble_dataset(
    name: str,
    items: pd.DataFrame,
    inter: pd.DataFrame,
    *,
    items_source: str,
    items_line_offset: int | None,
    inter_source: str,
    inter_line_offset: int | None,
    user_col: str,
    item_col: str,
    rating_col: str | None,
    timestamp_col: str | None,
    image_source: str | None,
    missing_image: MissingImage,
    empty_text: EmptyText,
    unknown_items: UnknownItems,
    check_images: bool,
    prepare: dict[str, Any],
    info: dict[str, Any],
) -> RecDataset:
    """Shared back end of the table and MovieLens importers.

    ``items`` has the columns ``item_id, title, text, image`` (strings; ``image`` absolute or
    empty) plus any meta columns to keep; ``inter`` is the raw interaction table.
    """
    for policy, value, accepted in (("missing_image", missing_image, ("error", "skip", "keep")),
                                    ("empty_text", empty_text, ("title", "keep", "skip", "error")),
                                    ("unknown_items", unknown_items, ("error", "drop"))):
        if value not in accepted:
            raise ConfigError(f"{policy}={value!r}; accepted: {', '.join(accepted)}.")
    n_items_in = len(items)
    all_ids = set(items["item_id"])
    items, policies = _apply_item_policies(
        items.copy(), source=items_source, line_offset=items_line_offset,
        image_source=image_source, missing_image=missing_image, empty_text=empty_text,
        check_images=check_images,
    )

    # interactions naming unknown items (error/drop), or items dropped by a policy
    inter_items = normalise_ids(inter[item_col])
    unknown = ~inter_items.isin(all_ids).to_numpy()
    if unknown.any() and unknown_items == "error":
        rows = np.flatnonzero(unknown)
        raise DataError(
            f"{inter_source}: {len(rows)} interaction(s) name items not in {items_source}, e.g. "
            f"{', '.join(repr(str(x)) for x in pd.unique(inter_items.iloc[rows[:5]]))} at "
            f"{describe_rows(rows, line_offset=inter_line_offset)}. Add the items, or pass "
            "unknown_items='drop'."
        )
    policies["unknown_items"] = {"policy": unknown_items, "rows_dropped": int(unknown.sum())}
    skipped = ~inter_items.isin(items["item_id"]).to_numpy() & ~unknown
    policies["interactions_dropped_with_skipped_items"] = int(skipped.sum())
    kept_rows = np.flatnonzero(~(unknown | skipped))
    if len(kept_rows) == 0:
        raise DataError(f"{inter_source}: no interaction is left after the item policies.")
    prepared = prepare_interactions(
        inter.iloc[kept_rows].reset_index(drop=True), user_col=user_col, item_col=item_col,
        rating_col=rating_col, timestamp_col=timestamp_col,
        item_order=items["item_id"].tolist(), source=inter_source,
        line_offset=inter_line_offset, row_numbers=kept_rows, **prepare,
    )
    table = items.set_index("item_id").loc[prepared.item_ids].reset_index()
    meta_cols = [c for c in table.columns if c not in ("item_id", "title", "text", "image")]
    catalog = Catalog(
        table["item_id"].tolist(), table["title"].tolist(), table["text"].tolist(),
        [p or None for p in table["image"].tolist()],
        meta=table[meta_cols].reset_index(drop=True) if meta_cols else None,
    )
    info = dict(info)
    info["policies"] = policies
    info["prepare"] = prepared.report
    info["counts"] = {
        "items_in": n_items_in,
        "items_after_policies": len(items),
        "items": len(catalog),
        "items_with_image": int(sum(bool(p) for p in catalog.image_paths)),
        "items_with_text": int(sum(bool(t.strip()) for t in catalog.texts)),
        "interaction_rows_in": len(inter),
        "users": prepared.interactions.n_users,
        "interactions": prepared.interactions.n_interactions,
        "split": prepared.report["split"]["counts"],
    }
    return RecDataset(name, catalog, prepared.interactions, info)


def import_table(
    path: str | Path,
    *,
    name: str | None = None,
    items: str | Path | None = _AUTO,
    interactions: str | Path | None = _AUTO,
    image_dir: str | Path | None = _AUTO,
    item_id_col: str = "item_id",
    title_col: str | None = _AUTO,
    text_col: str | None = _AUTO,
    image_col: str | None = _AUTO,
    extra_cols: Sequence[str] = (),
    user_col: str = "user_id",
    inter_item_col: str | None = None,
    rating_col: str | None = _AUTO,
    timestamp_col: str | None = _AUTO,
    missing_image: MissingImage = "error",
    empty_text: EmptyText = "title",
    unknown_items: UnknownItems = "error",
    check_images: bool = False,
    min_rating: float | None = None,
    k_core: int = 1,
    min_user_interactions: int | None = None,
    min_item_interactions: int | None = None,
    split: str | Sequence[float] = DEFAULT_SPLIT,
    split_by: SplitBy = "auto",
    seed: int = 0,
    short_users: ShortUsers = "train",
) -> RecDataset:
    """Import the generic layout (items table + image folder + interactions table).

    Args:
        path: Dataset folder; relative file options are resolved against it.
        name: Dataset name; default: the folder's name.
        items: Items table; ``"auto"`` = ``items.csv|.tsv|.parquet`` if present; ``None`` = no
            table (items come from the interactions, with empty titles and texts).
        interactions: Interactions table; ``"auto"`` = ``interactions.*`` or ``ratings.*``;
            ``None`` (``-o interactions=none``) = import the items only (a shop's products, a
            photo set): no users or splits, so it can be encoded and explained with
            model-free targets but not trained on. Items then come from the items table, or
            without one from the image folder's files (item id = file name without suffix).
        image_dir: Image folder; ``"auto"`` = ``images/`` if present; ``None`` = none. Images
            are the image column's paths (relative to it, else to ``path``) or, without an image
            column, ``<image_dir>/<item_id>.<jpg|png|...>``.
        item_id_col: Item id column of the items table.
        title_col: Title column (``"auto"`` = ``title`` if present; ``None`` = none).
        text_col: Text column (``"auto"`` = ``text`` if present; ``None`` = none).
        image_col: Image path column (``"auto"`` = ``image`` if present; ``None`` = none).
        extra_cols: Further item columns to keep as ``Catalog.meta``.
        user_col: User id column of the interactions.
        inter_item_col: Item id column of the interactions; default ``item_id_col``.
        rating_col: Rating column (``"auto"`` = ``rating`` if present).
        timestamp_col: Timestamp column (``"auto"`` = ``timestamp`` if present).
        missing_image: ``"error"``, ``"skip"`` or ``"keep"`` (see module doc).
        empty_text: ``"title"``, ``"keep"``, ``"skip"`` or ``"error"``.
        unknown_items: ``"error"`` or ``"drop"``.
        check_images: Decode every image with PIL; unreadable ones follow ``missing_image``.
        min_rating: Keep interactions with ``rating >= min_rating``.
        k_core: Iterative k-core minimum for users and items.
        min_user_interactions: Overrides ``k_core`` for users.
        min_item_interactions: Overrides ``k_core`` for items.
        split: Ratios (train, valid, test).
        split_by: ``"auto"``, ``"time"`` or ``"random"``.
        seed: Split seed.
        short_users: ``"train"``, ``"drop"`` or ``"error"`` (see ``prepare_interactions``).

    Returns:
        The prepared dataset; ``info`` records the source, options, counts and policy outcomes.

    Raises:
        DataError: Naming the file, line or item of any bad input.
        ConfigError: For invalid options.

    Example:
        >>> import tempfile
        >>> d = Path(tempfile.mkdtemp())
        >>> _ = (d / "items.csv").write_text("item_id,title\\na,A\\nb,B\\n")
        >>> _ = (d / "interactions.csv").write_text("user_id,item_id\\nu,a\\nu,b\\nv,a\\n")
        >>> ds = import_table(d, split="1,0,0")
        >>> ds.n_users, ds.catalog.item_ids, ds.catalog.texts
        (2, ['a', 'b'], ['A', 'B'])
    """
    folder = Path(path).expanduser().resolve()
    if not folder.is_dir():
        raise DataError(f"Dataset folder {folder} does not exist or is not a folder.")
    items_path = _find(folder, items, ("items",), "items table", required=False)
    inter_path = _find(folder, interactions, ("interactions", "ratings"), "interactions table",
                       required=False)
    if inter_path is None and interactions is not None:
        raise DataError(
            f"No interactions table found in {folder} (looked for interactions.csv/.tsv/"
            ".parquet and ratings.*). Name it with interactions='FILE', or pass "
            "interactions='none' to import the items only (encode and model-free heatmaps; "
            "no training)."
        )
    img_dir: Path | None
    if image_dir == _AUTO:
        img_dir = (folder / "images").resolve() if (folder / "images").is_dir() else None
    elif image_dir is None:
        img_dir = None
    else:
        img_dir = Path(image_dir) if Path(image_dir).is_absolute() else folder / image_dir
        if not img_dir.is_dir():
            raise DataError(f"Image folder {img_dir} does not exist.")
        img_dir = img_dir.resolve()

    if inter_path is None:
        return _import_items_only(
            folder, name=name, items_path=items_path, img_dir=img_dir, item_id_col=item_id_col,
            title_col=title_col, text_col=text_col, image_col=image_col, extra_cols=extra_cols,
            missing_image=missing_image, empty_text=empty_text, check_images=check_images)
    inter, inter_off = read_table(inter_path, what="interactions")
    inter_item = inter_item_col or item_id_col
    for col, what in ((user_col, "user id"), (inter_item, "item id")):
        if col not in inter.columns:
            raise DataError(
                f"{inter_path}: no {what} column {col!r}; columns are "
                f"{', '.join(map(repr, map(str, inter.columns)))}. Name it with "
                f"{'user_col' if what == 'user id' else 'inter_item_col'}='COLUMN'."
            )
    r_col = _pick_column(inter, rating_col, "rating", "rating", inter_path)
    t_col = _pick_column(inter, timestamp_col, "timestamp", "timestamp", inter_path)

    if items_path is not None:
        table, items_off, ti_col, tx_col, im_col = _read_items_table(
            items_path, item_id_col, title_col, text_col, image_col, extra_cols)
        ids = normalise_ids(table[item_id_col])
        n = len(table)

        def text_of(col: str | None) -> pd.Series:
            if col is None:
                return pd.Series([""] * n, dtype=str)
            return table[col].fillna("").astype(str).reset_index(drop=True)

        frame = pd.DataFrame({"item_id": ids.reset_index(drop=True), "title": text_of(ti_col),
                              "text": text_of(tx_col)})
        items_source = str(items_path)
    else:
        ti_col = tx_col = im_col = None
        items_off = None
        uniq = np.asarray(pd.unique(normalise_ids(inter[inter_item])), dtype=str)
        uniq = uniq[uniq != ""]
        uniq = uniq[natural_order(uniq)]
        frame = pd.DataFrame({"item_id": uniq, "title": "", "text": ""})
        items_source = f"{inter_path} (item ids)"
        n = len(frame)

    if im_col is not None:
        base = img_dir or folder
        frame["image"] = [
            "" if not p else str(Path(p) if Path(p).is_absolute() else (base / p).resolve())
            for p in table[im_col].fillna("").astype(str).str.strip()
        ]
        image_source = f"column {im_col!r}"
    elif img_dir is not None:
        frame["image"] = _images_by_id(img_dir, frame["item_id"].tolist())
        image_source = f"folder {img_dir} by item id"
    else:
        frame["image"] = ""
        image_source = None
    for c in extra_cols:
        frame[c] = table[c].reset_index(drop=True)

    name = name or folder.name
    prepare = {"min_rating": min_rating, "k_core": k_core,
               "min_user_interactions": min_user_interactions,
               "min_item_interactions": min_item_interactions, "split": parse_split(split),
               "split_by": split_by, "seed": seed, "short_users": short_users}
    info: dict[str, Any] = {
        "source": {"kind": "table", "path": str(folder),
                   "items": str(items_path) if items_path else None,
                   "interactions": str(inter_path), "image_dir": str(img_dir) if img_dir else None},
        "columns": {"item_id": item_id_col, "title": ti_col, "text": tx_col, "image": im_col,
                    "extra": list(extra_cols), "user": user_col, "interaction_item": inter_item,
                    "rating": r_col, "timestamp": t_col},
        "options": {"missing_image": missing_image, "empty_text": empty_text,
                    "unknown_items": unknown_items, "check_images": check_images,
                    **{k: list(v) if isinstance(v, tuple) else v for k, v in prepare.items()}},
    }
    ds = assemble_dataset(
        name, frame, inter, items_source=items_source, items_line_offset=items_off,
        inter_source=str(inter_path), inter_line_offset=inter_off, user_col=user_col,
        item_col=inter_item, rating_col=r_col, timestamp_col=t_col, image_source=image_source,
        missing_image=missing_image, empty_text=empty_text, unknown_items=unknown_items,
        check_images=check_images, prepare=prepare, info=info,
    )
    log.info("imported %s: %d users, %d items, %d interactions", folder, ds.n_users, ds.n_items,
             ds.interactions.n_interactions)
    return ds


def _import_items_only(
    folder: Path, *, name: str | None, items_path: Path | None, img_dir: Path | None,
    item_id_col: str, title_col: str | None, text_col: str | None, image_col: str | None,
    extra_cols: Sequence[str], missing_image: MissingImage, empty_text: EmptyText,
    check_images: bool,
) -> RecDataset:
    """``import_table(..., interactions=None)``: a catalog without interactions."""
    for policy, value, accepted in (("missing_image", missing_image, ("error", "skip", "keep")),
                                    ("empty_text", empty_text, ("title", "keep", "skip", "error"))):
        if value not in accepted:
            raise ConfigError(f"{policy}={value!r}; accepted: {', '.join(accepted)}.")
    im_col: str | None = None
    ti_col = tx_col = None
    if items_path is not None:
        table, offset, ti_col, tx_col, im_col = _read_items_table(
            items_path, item_id_col, title_col, text_col, image_col, extra_cols)
        n = len(table)

        def text_of(col: str | None) -> pd.Series:
            if col is None:
                return pd.Series([""] * n, dtype=str)
            return table[col].fillna("").astype(str).reset_index(drop=True)

        frame = pd.DataFrame({"item_id": normalise_ids(table[item_id_col]).reset_index(drop=True),
                              "title": text_of(ti_col), "text": text_of(tx_col)})
        source = str(items_path)
    elif img_dir is not None:
        stems = sorted({os.path.splitext(e)[0] for e in os.listdir(img_dir)
                        if os.path.splitext(e)[1].lower() in IMAGE_EXTENSIONS})
        if not stems:
            raise DataError(f"Image folder {img_dir} has no images ({', '.join(IMAGE_EXTENSIONS)}).")
        ids = np.asarray(stems, dtype=str)[natural_order(np.asarray(stems, dtype=str))]
        frame = pd.DataFrame({"item_id": ids, "title": "", "text": ""})
        table, offset, n = frame, None, len(frame)
        source = f"{img_dir} (image files)"
    else:
        raise DataError(
            f"Nothing to import from {folder}: no items table (items.csv/.tsv/.parquet), no "
            "image folder and no interactions. Add an items table or an images/ folder."
        )
    if im_col is not None:
        base = img_dir or folder
        frame["image"] = [
            "" if not p else str(Path(p) if Path(p).is_absolute() else (base / p).resolve())
            for p in table[im_col].fillna("").astype(str).str.strip()
        ]
        image_source: str | None = f"column {im_col!r}"
    elif img_dir is not None:
        frame["image"] = _images_by_id(img_dir, frame["item_id"].tolist())
        image_source = f"folder {img_dir} by item id"
    else:
        frame["image"] = ""
        image_source = None
    for c in extra_cols:
        frame[c] = table[c].reset_index(drop=True)
    kept, policies = _apply_item_policies(
        frame, source=source, line_offset=offset, image_source=image_source,
        missing_image=missing_image, empty_text=empty_text, check_images=check_images)
    if kept.empty:
        raise DataError(f"{source}: no item is left after the item policies.")
    meta_cols = [c for c in kept.columns if c not in ("item_id", "title", "text", "image")]
    catalog = Catalog(kept["item_id"].tolist(), kept["title"].tolist(), kept["text"].tolist(),
                      [p or None for p in kept["image"].tolist()],
                      meta=kept[meta_cols].reset_index(drop=True) if meta_cols else None)
    info: dict[str, Any] = {
        "source": {"kind": "table", "path": str(folder),
                   "items": str(items_path) if items_path else None, "interactions": None,
                   "image_dir": str(img_dir) if img_dir else None},
        "columns": {"item_id": item_id_col, "title": ti_col, "text": tx_col, "image": im_col,
                    "extra": list(extra_cols)},
        "options": {"missing_image": missing_image, "empty_text": empty_text,
                    "check_images": check_images, "interactions": None},
        "items_only": True,
        "policies": policies,
        "counts": {"items_in": len(frame), "items": len(catalog),
                   "items_with_image": int(sum(bool(p) for p in catalog.image_paths)),
                   "items_with_text": int(sum(bool(t.strip()) for t in catalog.texts)),
                   "users": 0, "interactions": 0},
    }
    log.info("imported %s as items only: %d items", folder, len(catalog))
    return RecDataset.items_only_of(name or folder.name, catalog, info)
