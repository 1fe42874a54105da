"""MovieLens-100k with TMDB posters and plot overviews, as found in ``movielens-100k-posters/``.

The folder (see its ``README.txt``) holds ``ratings.csv`` (``user_id,movie_id,rating,
unix_timestamp``), ``items.csv`` (``movie_id,title,<19 genre flags>,year,overview,...``; 1,746 rows
for 1,682 movie ids) and ``posters/<movie_id>.jpg`` (1,663 posters, 92×138 px).

Decisions (all recorded in ``RecDataset.info``):

- ``items.csv`` is deduplicated on ``movie_id``, keeping the first row (some ids matched several
  TMDB entries);
- the item text is the TMDB ``overview``; items without one use the title (``empty_text="title"``);
- the image is ``posters/<movie_id>.jpg``, stored as an absolute path into the shared folder
  (posters are never copied: their licence forbids redistribution);
- ratings ``>= 4`` are implicit positives (``min_rating``);
- items without a poster are **skipped** by default (``missing_image="skip"``): this dataset exists
  to attribute recommendations to poster pixels, and an item without a poster would need a
  made-up image feature. ``"keep"`` keeps them without image; ``"error"`` refuses;
- the split is per-user chronological on ``unix_timestamp`` (ties broken by the seed);
- ``meta`` keeps ``year`` and ``genres`` (the genre flags joined with ``|``).

With the defaults: 942 users (one of the 943 users never rated a movie >= 4), 1,435 items
(1,447 movies have a rating >= 4, 12 of them lack a poster), 55,307 interactions.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from befa_viz.data.prepare import (
    DEFAULT_SPLIT,
    ShortUsers,
    SplitBy,
    normalise_ids,
    parse_split,
)
from befa_viz.data.tabular import EmptyText, MissingImage, assemble_dataset, read_table
from befa_viz.data.types import RecDataset
from befa_viz.errors import DataError

__all__ = ["import_movielens", "MOVIELENS_GENRES"]

log = logging.getLogger(__name__)

MOVIELENS_GENRES = (
    "genre_unknown", "Action", "Adventure", "Animation", "Children", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "FilmNoir", "Horror", "Musical", "Mystery", "Romance",
    "SciFi", "Thriller", "War", "Western",
)


def import_movielens(
    path: str | Path,
    *,
    name: str | None = None,
    min_rating: float | None = 4,
    missing_image: MissingImage = "skip",
    empty_text: EmptyText = "title",
    check_images: bool = False,
    k_core: int = 1,
    min_user_interactions: int | None = None,
    min_item_interactions: int | None = None,
    split: str | Sequence[float] = DEFAULT_SPLIT,
    split_by: SplitBy = "auto",
    seed: int = 0,
    short_users: ShortUsers = "train",
) -> RecDataset:
    """Import MovieLens-100k with posters from its folder (see the module doc for decisions).

    Args:
        path: The ``movielens-100k-posters`` folder.
        name: Dataset name; default ``"movielens-100k"``.
        min_rating: Ratings ``>=`` this become implicit positives; ``None`` keeps every rating.
        missing_image: Items without a (readable) poster: ``"skip"``, ``"keep"`` or ``"error"``.
        empty_text: Items without an overview: ``"title"``, ``"keep"``, ``"skip"``, ``"error"``.
        check_images: Decode every poster with PIL (about a second).
        k_core: Iterative k-core minimum for users and items.
        min_user_interactions: Overrides ``k_core`` for users.
        min_item_interactions: Overrides ``k_core`` for items.
        split: Ratios (train, valid, test).
        split_by: ``"auto"`` (chronological), ``"time"`` or ``"random"``.
        seed: Seed for tie-breaking (and the random split).
        short_users: ``"train"``, ``"drop"`` or ``"error"``.

    Returns:
        The prepared dataset.

    Raises:
        DataError: If a file is missing or malformed.
    """
    folder = Path(path).expanduser().resolve()
    for needed in ("ratings.csv", "items.csv", "posters"):
        if not (folder / needed).exists():
            raise DataError(
                f"{folder} does not look like movielens-100k-posters: {needed} is missing (see "
                "that folder's README.txt)."
            )
    items_path = folder / "items.csv"
    table, _ = read_table(items_path, what="items")
    for col in ("movie_id", "title", "overview"):
        if col not in table.columns:
            raise DataError(
                f"{items_path}: column {col!r} is missing; found {list(table.columns)}."
            )
    ids = normalise_ids(table["movie_id"])
    first = ~ids.duplicated(keep="first").to_numpy()
    table, ids = table.loc[first].reset_index(drop=True), ids[first].reset_index(drop=True)

    poster_dir = folder / "posters"
    posters = {p.stem for p in poster_dir.glob("*.jpg")}
    genres = [g for g in MOVIELENS_GENRES if g in table.columns]
    flags = table[genres].apply(pd.to_numeric, errors="coerce").fillna(0).to_numpy() > 0
    genre_names = np.asarray(genres, dtype=object)
    frame = pd.DataFrame({
        "item_id": ids,
        "title": table["title"].astype(str),
        "text": table["overview"].astype(str),
        "image": [str(poster_dir / f"{i}.jpg") if i in posters else "" for i in ids],
        "year": table["year"].astype(str) if "year" in table.columns else "",
        "genres": ["|".join(genre_names[row]) for row in flags],
    })

    ratings, off = read_table(folder / "ratings.csv", what="ratings")
    prepare: dict[str, Any] = {
        "min_rating": min_rating, "k_core": k_core,
        "min_user_interactions": min_user_interactions,
        "min_item_interactions": min_item_interactions, "split": parse_split(split),
        "split_by": split_by, "seed": seed, "short_users": short_users,
    }
    info: dict[str, Any] = {
        "source": {"kind": "movielens", "path": str(folder), "items": str(items_path),
                   "interactions": str(folder / "ratings.csv"), "image_dir": str(poster_dir)},
        "columns": {"item_id": "movie_id", "title": "title", "text": "overview",
                    "image": "posters/<movie_id>.jpg", "user": "user_id",
                    "rating": "rating", "timestamp": "unix_timestamp"},
        "options": {"missing_image": missing_image, "empty_text": empty_text,
                    "check_images": check_images,
                    **{k: list(v) if isinstance(v, tuple) else v for k, v in prepare.items()}},
        "items_csv": {"rows": int(len(first)), "duplicate_rows_dropped": int((~first).sum()),
                      "dedupe": "movie_id, keep first"},
    }
    ds = assemble_dataset(
        name or "movielens-100k", frame, ratings, items_source=str(items_path),
        items_line_offset=None, inter_source=str(folder / "ratings.csv"), inter_line_offset=off,
        user_col="user_id", item_col="movie_id", rating_col="rating",
        timestamp_col="unix_timestamp", image_source=f"folder {poster_dir} by movie_id",
        missing_image=missing_image, empty_text=empty_text, unknown_items="error",
        check_images=check_images, prepare=prepare, info=info,
    )
    log.info("imported MovieLens from %s: %d users, %d items, %d interactions", folder,
             ds.n_users, ds.n_items, ds.interactions.n_interactions)
    return ds
