"""The H&M fashion sample (``hm-fashion-sample/``): real purchases of real packshots.

The folder (see its ``README.txt``) holds ``transactions.csv`` (``t_dat, customer_id,
article_id, price, sales_channel_id``; repeat purchases kept), ``articles.csv`` (H&M article
metadata and ``detail_desc`` for some of the articles) and ``images/<article_id>.jpg`` (one
360×540 JPEG packshot per article). Nothing is copied: image paths point into the folder (its
terms forbid redistribution).

Decisions (all recorded in ``RecDataset.info``):

- ``article_id`` is a string of 10 digits with its leading zero (``"0108775015"``). An id
  with fewer digits lost its zero somewhere (a spreadsheet, an integer column): that is an
  error naming the file and line, never silently padded;
- **repeat purchases** of an article by the same customer are collapsed to one interaction,
  dated by the **first** purchase (``t_dat`` of the earliest row; the later ones are dropped
  and counted in ``info["prepare"]["duplicates_dropped"]``). Prices and sales channels are not
  used;
- the split is per-user chronological on ``t_dat`` (a day: ties are frequent and broken by
  the seed), via :func:`~befa_viz.data.prepare.prepare_interactions`;
- item **text** = ``prod_name. product_type_name, colour_group_name, graphical_appearance_name.
  detail_desc`` for articles with metadata; articles without a row in ``articles.csv`` are
  **image-only** items with an empty title and text (``empty_text="keep"``; ``"skip"`` drops
  them, ``"error"`` refuses). ``befa-viz data stats`` reports the text coverage;
- the structured attributes (``ATTRIBUTE_COLUMNS``) are kept as item metadata
  (``Catalog.meta``), empty for image-only items; ``has_metadata`` says which items have them;
- an article in the transactions without a photo (or, with ``check_images=True``, with a
  photo PIL cannot decode) follows ``missing_image``: ``"error"`` (default, names the item and
  the file), ``"skip"`` (drop the item and its purchases) or ``"keep"`` (item without image).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from befa_viz.data.prepare import DEFAULT_SPLIT, ShortUsers, SplitBy, describe_rows, parse_split
from befa_viz.data.tabular import MissingImage, assemble_dataset, read_table
from befa_viz.data.types import RecDataset
from befa_viz.errors import ConfigError, DataError

__all__ = ["import_hm", "ATTRIBUTE_COLUMNS", "TRUTH_ATTRIBUTES", "hm_text"]

log = logging.getLogger(__name__)

#: ``articles.csv`` columns kept as item metadata (the ``*_name`` columns; codes are dropped).
ATTRIBUTE_COLUMNS = (
    "product_type_name", "product_group_name", "graphical_appearance_name",
    "colour_group_name", "perceived_colour_value_name", "perceived_colour_master_name",
    "department_name", "index_name", "index_group_name", "section_name", "garment_group_name",
)
#: Attributes whose words are the (weak) token truth: colour, product type, pattern.
TRUTH_ATTRIBUTES = ("colour_group_name", "product_type_name", "graphical_appearance_name")
_ID_RE = re.compile(r"\d{10}")
HmEmptyText = Literal["keep", "skip", "error"]


def _check_article_ids(ids: pd.Series, source: Path) -> pd.Series:
    """Stripped article ids; anything but 10 digits is an error naming the lines."""
    ids = ids.astype(str).str.strip()
    bad = ~ids.str.fullmatch(_ID_RE).to_numpy()
    if bad.any():
        rows = [int(r) for r in bad.nonzero()[0]]
        first = ids.iloc[rows[0]]
        if first.isdigit() and len(first) < 10:
            why = (f"article_id {first!r} has {len(first)} digits: it lost its leading zero "
                   f"(H&M ids have 10, e.g. {first.zfill(10)!r}). Re-export the file keeping "
                   "article_id as text (a spreadsheet or an integer column drops the zero)")
        else:
            why = f"article_id {first!r} is not a 10-digit H&M article id; fix or remove the row"
        raise DataError(f"{source}: {why}; at {describe_rows(rows)}.")
    return ids


def _clean(v: Any) -> str:
    return " ".join(str(v).split())


def hm_text(row: pd.Series | dict[str, Any]) -> str:
    """The item text of one ``articles.csv`` row: name, type, colour, pattern, description.

    Example:
        >>> hm_text({"prod_name": "Tights", "product_type_name": "Leggings/Tights",
        ...          "colour_group_name": "Black", "graphical_appearance_name": "Solid",
        ...          "detail_desc": "Soft tights."})
        'Tights. Leggings/Tights, Black, Solid. Soft tights.'
    """
    name = _clean(row.get("prod_name", ""))
    attrs = ", ".join(v for v in (_clean(row.get(c, "")) for c in (
        "product_type_name", "colour_group_name", "graphical_appearance_name")) if v)
    desc = _clean(row.get("detail_desc", ""))
    parts = [p.rstrip(".") + "." for p in (name, attrs) if p]
    if desc:
        parts.append(desc)
    return " ".join(parts)


def import_hm(
    path: str | Path,
    *,
    name: str | None = None,
    missing_image: MissingImage = "error",
    empty_text: HmEmptyText = "keep",
    check_images: bool = False,
    k_core: int = 1,
    min_user_interactions: int | None = None,
    min_item_interactions: int | None = None,
    split: str | Sequence[float] = DEFAULT_SPLIT,
    split_by: SplitBy = "auto",
    seed: int = 0,
    short_users: ShortUsers = "train",
) -> RecDataset:
    """Import the H&M fashion sample from its folder (see the module doc for decisions).

    Args:
        path: The ``hm-fashion-sample`` folder.
        name: Dataset name; default ``"hm"``.
        missing_image: Purchased articles without a (readable) photo: ``"error"``, ``"skip"``
            or ``"keep"``.
        empty_text: Articles without metadata (image-only): ``"keep"``, ``"skip"`` or
            ``"error"``.
        check_images: Decode every photo with PIL (a few seconds).
        k_core: Iterative k-core minimum for users and items (the sample is already a
            (3,3)-core of distinct articles).
        min_user_interactions: Overrides ``k_core`` for users.
        min_item_interactions: Overrides ``k_core`` for items.
        split: Ratios (train, valid, test).
        split_by: ``"auto"`` (chronological on ``t_dat``), ``"time"`` or ``"random"``.
        seed: Seed of the tie-break between same-day purchases (and of a random split).
        short_users: ``"train"``, ``"drop"`` or ``"error"``.

    Returns:
        The prepared dataset.

    Raises:
        DataError: If a file is missing or malformed (naming the file, line or item).
        ConfigError: For an invalid option.
    """
    if empty_text not in ("keep", "skip", "error"):
        raise ConfigError(f"empty_text={empty_text!r}; accepted for H&M: keep, skip, error "
                          "(image-only articles have no title to fall back on).")
    folder = Path(path).expanduser().resolve()
    for needed in ("transactions.csv", "articles.csv", "images"):
        if not (folder / needed).exists():
            raise DataError(f"{folder} does not look like the H&M fashion sample: {needed} is "
                            "missing (see that folder's README.txt).")
    tx_path, art_path, img_dir = (folder / "transactions.csv", folder / "articles.csv",
                                  folder / "images")
    tx, tx_off = read_table(tx_path, what="transactions")
    for col in ("t_dat", "customer_id", "article_id"):
        if col not in tx.columns:
            raise DataError(f"{tx_path}: column {col!r} is missing; found {list(tx.columns)}.")
    tx = tx.assign(article_id=_check_article_ids(tx["article_id"], tx_path))

    arts, _ = read_table(art_path, what="articles")
    if "article_id" not in arts.columns:
        raise DataError(f"{art_path}: column 'article_id' is missing; found {list(arts.columns)}.")
    arts = arts.assign(article_id=_check_article_ids(arts["article_id"], art_path))
    dup = arts["article_id"].duplicated(keep=False).to_numpy()
    if dup.any():
        raise DataError(f"{art_path}: article_id {arts['article_id'][dup].iloc[0]!r} appears "
                        f"more than once, at {describe_rows(dup.nonzero()[0])}; keep one row.")
    arts = arts.set_index("article_id")

    ids = list(pd.unique(tx["article_id"]))  # the purchased articles are the items
    meta = arts.reindex(ids)
    has_meta = meta.index.isin(arts.index)
    cols = [c for c in ATTRIBUTE_COLUMNS if c in arts.columns]
    meta_text = meta.fillna("")
    frame = pd.DataFrame({
        "item_id": ids,
        "title": [_clean(v) for v in meta_text.get("prod_name", pd.Series("", index=meta.index))],
        "text": [hm_text(r) if ok else "" for ok, (_, r) in zip(has_meta, meta_text.iterrows(),
                                                                strict=True)],
        "image": [str(img_dir / f"{i}.jpg") if (img_dir / f"{i}.jpg").is_file() else ""
                  for i in ids],
        **{c: [_clean(v) for v in meta_text[c]] for c in cols},
        "has_metadata": has_meta.astype(int),
    })
    n_image_only = int((~has_meta).sum())
    if empty_text == "error" and n_image_only:
        first = [i for i, ok in zip(ids, has_meta, strict=True) if not ok][:5]
        raise DataError(f"{art_path}: {n_image_only} purchased article(s) have no metadata row "
                        f"(image-only), e.g. {', '.join(map(repr, first))}. Add their rows, or "
                        "choose empty_text='keep' (image-only items) or 'skip'.")

    prepare: dict[str, Any] = {
        "k_core": k_core, "min_user_interactions": min_user_interactions,
        "min_item_interactions": min_item_interactions, "split": parse_split(split),
        "split_by": split_by, "seed": seed, "short_users": short_users,
    }
    info: dict[str, Any] = {
        "source": {"kind": "hm", "path": str(folder), "items": str(art_path),
                   "interactions": str(tx_path), "image_dir": str(img_dir)},
        "columns": {"item_id": "article_id", "title": "prod_name",
                    "text": "prod_name. product_type_name, colour_group_name, "
                            "graphical_appearance_name. detail_desc",
                    "image": "images/<article_id>.jpg", "user": "customer_id",
                    "timestamp": "t_dat", "meta": [*cols, "has_metadata"]},
        "options": {"missing_image": missing_image, "empty_text": empty_text,
                    "check_images": check_images,
                    **{k: list(v) if isinstance(v, tuple) else v for k, v in prepare.items()}},
        "repeat_purchases": "collapsed to one interaction dated by the first purchase",
        "text_coverage": {"articles_with_metadata": int(has_meta.sum()),
                          "image_only_articles": n_image_only},
    }
    ds = assemble_dataset(
        name or "hm", frame, tx, items_source=f"photos in {img_dir}", items_line_offset=None,
        inter_source=str(tx_path), inter_line_offset=tx_off, user_col="customer_id",
        item_col="article_id", rating_col=None, timestamp_col="t_dat",
        image_source=f"folder {img_dir} by article_id", missing_image=missing_image,
        empty_text=empty_text, unknown_items="error", check_images=check_images,
        prepare=prepare, info=info,
    )
    log.info("imported H&M from %s: %d users, %d items (%d with text), %d interactions",
             folder, ds.n_users, ds.n_items, ds.info["counts"]["items_with_text"],
             ds.interactions.n_interactions)
    return ds
