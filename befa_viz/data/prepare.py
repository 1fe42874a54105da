"""Turn a raw interaction table into prepared, split, contiguously indexed interactions.

The steps, in order (each one reported in :attr:`PreparedInteractions.report`):

1. **validate** the columns and values (ids present, ratings/timestamps numeric);
2. **threshold**: keep rows with ``rating >= min_rating`` (explicit → implicit feedback);
3. **deduplicate** (user, item) pairs, keeping the earliest row (by timestamp when there is one,
   else by file order);
4. **iterative k-core**: drop users with fewer than ``min_user_interactions`` and items with fewer
   than ``min_item_interactions`` rows, repeatedly, until both hold;
5. **remap** raw ids to contiguous indices. Users are numbered in natural raw-id order (numeric
   when every id is an integer, else lexicographic); items follow ``item_order`` (the catalog's
   order) when given, else natural raw-id order. Items and users left without interactions
   disappear; the raw ids of the survivors are kept (row = index);
6. **split** per user with ratios ``(train, valid, test)`` (8:1:1 by default): chronologically when
   there are timestamps (``split_by="auto"`` or ``"time"``; the earliest interactions train, the
   latest test), else in a seeded random order. Ties in time are broken by the seeded random key,
   so the result never depends on the input's row order.

Per-user split sizes: ``n_test = max(1, round_half_up(n * test))`` and likewise for valid (0 when
that ratio is 0), then shrunk (test first) until the user keeps at least one training interaction.
A user with fewer than ``1 + (valid > 0) + (test > 0)`` interactions is *short* and handled by
``short_users``: ``"train"`` (default, all of them train: the user is trained on but never
evaluated), ``"drop"`` (removed, as part of the k-core loop, so item counts stay consistent) or
``"error"``. Every user always has at least one training interaction.

The same inputs and ``seed`` give identical arrays, so :meth:`RecDataset.save` writes identical
bytes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from befa_viz.data.types import Interactions
from befa_viz.errors import ConfigError, DataError

__all__ = [
    "PreparedInteractions",
    "prepare_interactions",
    "parse_split",
    "natural_order",
    "describe_rows",
    "normalise_ids",
    "DEFAULT_SPLIT",
]

log = logging.getLogger(__name__)

DEFAULT_SPLIT: tuple[float, float, float] = (0.8, 0.1, 0.1)
SplitBy = Literal["auto", "time", "random"]
ShortUsers = Literal["train", "drop", "error"]
_SHORT_POLICIES = ("train", "drop", "error")
_SPLIT_BY = ("auto", "time", "random")


@dataclass(frozen=True, eq=False)
class PreparedInteractions:
    """Result of :func:`prepare_interactions`.

    Attributes:
        interactions: Contiguous user/item indices with split labels; ``user_ids`` holds the raw
            user ids (row = user index); rows are ordered by user, then split order.
        item_ids: Raw item id of every item index (use it to build the ``Catalog``).
        report: Counts before/after each step and the options used (JSON-able).
    """

    interactions: Interactions
    item_ids: list[str]
    report: dict[str, Any] = field(default_factory=dict)


def describe_rows(rows: Sequence[int] | np.ndarray, *, line_offset: int | None = 2,
                  limit: int = 5) -> str:
    """Name up to ``limit`` rows of an input table for an error message.

    Args:
        rows: 0-based data-row positions.
        line_offset: Added to a row to get the 1-based text-file line (2 = one header line);
            ``None`` names 0-based rows instead (Parquet, in-memory frames).
        limit: How many to list before "and N more".

    Example:
        >>> describe_rows([0, 4])
        'lines 2, 6'
        >>> describe_rows([3], line_offset=None)
        'row 3'
    """
    rows = [int(r) for r in np.asarray(rows).ravel()]
    word = "line" if line_offset is not None else "row"
    shown = [str(r + (line_offset or 0)) for r in rows[:limit]]
    more = f" and {len(rows) - limit} more" if len(rows) > limit else ""
    return f"{word}{'s' if len(rows) > 1 else ''} {', '.join(shown)}{more}"


def parse_split(split: str | Sequence[float]) -> tuple[float, float, float]:
    """Validate split ratios ``(train, valid, test)``; a string like ``"0.8,0.1,0.1"`` works too.

    Example:
        >>> parse_split("8,1,1")
        (0.8, 0.1, 0.1)
    """
    if isinstance(split, str):
        try:
            parts = [float(p) for p in split.replace(":", ",").split(",") if p.strip()]
        except ValueError:
            raise ConfigError(
                f"Split {split!r} is not three numbers; use e.g. '0.8,0.1,0.1' or '8:1:1'."
            ) from None
    else:
        parts = [float(p) for p in split]
    if len(parts) != 3 or any(not np.isfinite(p) or p < 0 for p in parts) or sum(parts) <= 0:
        raise ConfigError(
            f"Split {split!r} must be three non-negative ratios (train, valid, test), e.g. "
            "0.8,0.1,0.1."
        )
    total = sum(parts)
    train, valid, test = (round(p / total, 10) for p in parts)  # length checked above
    if train <= 0:
        raise ConfigError(f"Split {split!r} gives no training share; the train ratio must be > 0.")
    return train, valid, test


def natural_order(ids: Sequence[str] | np.ndarray) -> np.ndarray:
    """Positions that sort raw ids numerically when all are integers, else as strings.

    Example:
        >>> ids = ["10", "9", "100"]
        >>> [ids[i] for i in natural_order(ids)]
        ['9', '10', '100']
    """
    arr = np.asarray(ids, dtype=str)
    if len(arr) == 0:
        return np.zeros(0, dtype=np.int64)
    num = pd.to_numeric(pd.Series(arr), errors="coerce").to_numpy(dtype=float)
    if np.isfinite(num).all() and (num == np.round(num)).all():
        return np.lexsort((arr, num))  # numeric, ties ("07" vs "7") by string
    return np.argsort(arr, kind="stable")


class _Where:
    """Names rows of the caller's source file in error messages."""

    def __init__(self, line_offset: int | None, row_numbers: np.ndarray | None, n: int) -> None:
        if row_numbers is not None and len(row_numbers) != n:
            raise ValueError(f"row_numbers has {len(row_numbers)} entries for {n} rows")
        self.line_offset = line_offset
        self.row_numbers = None if row_numbers is None else np.asarray(row_numbers)

    def __call__(self, positions: np.ndarray) -> str:
        rows = positions if self.row_numbers is None else self.row_numbers[positions]
        return describe_rows(rows, line_offset=self.line_offset)


def normalise_ids(values: pd.Series) -> pd.Series:
    """Raw ids as stripped strings; integral floats lose ``.0``; missing ids become ``""``.

    Example:
        >>> normalise_ids(pd.Series([12.0, None, 3.0])).tolist()
        ['12', '', '3']
    """
    missing = values.isna().to_numpy()
    if pd.api.types.is_float_dtype(values):
        fl = values.to_numpy(dtype=float)
        ok = ~missing
        if (fl[ok] == np.round(fl[ok])).all():  # 12.0 read from a float column is id "12"
            out = np.where(ok, np.nan_to_num(fl).astype(np.int64).astype(str), "")
            return pd.Series(out, index=values.index, dtype=object)
    out = values.astype(str).str.strip().to_numpy(dtype=object)
    out[missing] = ""
    return pd.Series(out, index=values.index, dtype=object)


def _id_column(frame: pd.DataFrame, col: str, what: str, source: str,
               where: _Where) -> np.ndarray:
    ids = normalise_ids(frame[col])
    missing = (ids == "").to_numpy()
    if missing.any():
        raise DataError(
            f"{source}: column {col!r} ({what} id) is empty at "
            f"{where(np.flatnonzero(missing))}; every "
            "interaction needs a user and an item."
        )
    return ids.to_numpy(dtype=str)


def _unix_seconds(values: pd.Series) -> np.ndarray:
    """Datetimes (any resolution, naive = UTC) as int64 unix seconds."""
    dt = pd.to_datetime(values, utc=True, format="ISO8601")
    return ((dt - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).to_numpy(np.int64)


def _numeric_column(frame: pd.DataFrame, col: str, what: str, source: str,
                    where: _Where) -> np.ndarray:
    values = frame[col]
    if pd.api.types.is_bool_dtype(values):
        values = values.astype(np.int64)
    if pd.api.types.is_datetime64_any_dtype(values):
        bad = values.isna().to_numpy()
        num = _unix_seconds(values.fillna(pd.Timestamp(0)))
    else:
        coerced = pd.to_numeric(values, errors="coerce")
        bad = coerced.isna().to_numpy().copy()
        if what == "timestamp" and bad.any() and not values.isna().to_numpy()[bad].any():
            # not numbers: try dates (ISO strings), stored as unix seconds
            as_dt = pd.to_datetime(values, errors="coerce", utc=True, format="ISO8601")
            if not as_dt.isna().any():
                return _unix_seconds(as_dt)
        num = coerced.to_numpy()
        bad = bad | ~np.isfinite(num.astype(float))
    if bad.any():
        raise DataError(
            f"{source}: column {col!r} ({what}) is missing or not a number at "
            f"{where(np.flatnonzero(bad))} (e.g. "
            f"{values.iloc[int(np.flatnonzero(bad)[0])]!r}); fix or remove those rows."
        )
    if what == "timestamp":
        return np.asarray(num).astype(np.int64)
    num = np.asarray(num)
    if np.issubdtype(num.dtype, np.integer):
        return num.astype(np.int64)
    return num.astype(np.float64)


def _k_core(u: np.ndarray, i: np.ndarray, n_u: int, n_i: int, min_u: int, min_i: int
            ) -> tuple[np.ndarray, int]:
    """Boolean row mask of the iterative (min_u, min_i)-core, and the number of passes."""
    keep = np.ones(len(u), dtype=bool)
    passes = 0
    while True:
        uc = np.bincount(u[keep], minlength=n_u)
        ic = np.bincount(i[keep], minlength=n_i)
        ok = keep & (uc[u] >= min_u) & (ic[i] >= min_i)
        passes += 1
        if (ok == keep).all():
            return keep, passes
        keep = ok


def _split_sizes(n: np.ndarray, ratios: tuple[float, float, float]
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Per-user (n_valid, n_test) for users with at least the minimum count."""
    _, rv, rt = ratios
    eps = 1e-9  # 5 * 0.1 must round up to 1 whatever the float error
    n_valid = np.floor(n * rv + 0.5 + eps).astype(np.int64)
    n_test = np.floor(n * rt + 0.5 + eps).astype(np.int64)
    if rv > 0:
        n_valid = np.maximum(n_valid, 1)
    if rt > 0:
        n_test = np.maximum(n_test, 1)
    over = np.maximum(0, n_valid + n_test - (n - 1))  # keep >= 1 training interaction
    take = np.minimum(over, n_test - int(rt > 0))
    n_test -= take
    over -= take
    n_valid -= np.minimum(over, n_valid - int(rv > 0))
    return n_valid, n_test


def prepare_interactions(
    frame: pd.DataFrame,
    *,
    user_col: str = "user_id",
    item_col: str = "item_id",
    rating_col: str | None = None,
    timestamp_col: str | None = None,
    min_rating: float | None = None,
    k_core: int = 1,
    min_user_interactions: int | None = None,
    min_item_interactions: int | None = None,
    split: str | Sequence[float] = DEFAULT_SPLIT,
    split_by: SplitBy = "auto",
    seed: int = 0,
    short_users: ShortUsers = "train",
    item_order: Sequence[str] | None = None,
    source: str = "interactions",
    line_offset: int | None = 2,
    row_numbers: np.ndarray | None = None,
) -> PreparedInteractions:
    """Threshold, deduplicate, k-core filter, remap and split raw interactions (see module doc).

    Args:
        frame: One row per interaction, in file order.
        user_col: Column with raw user ids.
        item_col: Column with raw item ids.
        rating_col: Column with ratings; needed for ``min_rating``.
        timestamp_col: Column with timestamps (numbers, or dates stored as unix seconds);
            enables the chronological split.
        min_rating: Keep only rows with ``rating >= min_rating``; ``None`` keeps all.
        k_core: Minimum interactions per user and per item (1 = no filtering).
        min_user_interactions: Overrides ``k_core`` for users.
        min_item_interactions: Overrides ``k_core`` for items.
        split: Ratios (train, valid, test), normalised to sum 1; ``"0.8,0.1,0.1"`` works too.
        split_by: ``"time"`` (needs timestamps), ``"random"`` (seeded), or ``"auto"`` (time
            when there are timestamps).
        seed: Seed of the random order (random split) and of tie-breaking (time split).
        short_users: Policy for users too short for every split: ``"train"``, ``"drop"`` or
            ``"error"``.
        item_order: Raw item ids in catalog order; kept items are numbered in this order.
            Every item in ``frame`` must be in it.
        source: Name of the input (a file path) for error messages and the report.
        line_offset: Added to a 0-based row to give its text-file line; ``None`` for Parquet
            or in-memory frames (errors then name 0-based rows).
        row_numbers: Original 0-based row of each row of ``frame`` in the source file, when
            the caller removed rows before; errors then name the original lines.

    Returns:
        Split interactions, the raw item id of each item index, and a report.

    Raises:
        DataError: If a column is missing, a value is invalid (naming the rows), nothing is
            left after filtering, or ``short_users="error"`` meets a short user.
        ConfigError: If an option is invalid.

    Example:
        >>> df = pd.DataFrame({"user_id": ["a"] * 5 + ["b"] * 5,
        ...                    "item_id": ["x", "y", "z", "v", "w"] * 2,
        ...                    "ts": list(range(10))})
        >>> p = prepare_interactions(df, timestamp_col="ts", seed=0)
        >>> p.interactions.split.tolist()
        [0, 0, 0, 1, 2, 0, 0, 0, 1, 2]
        >>> p.item_ids
        ['v', 'w', 'x', 'y', 'z']
    """
    ratios = parse_split(split)
    if split_by not in _SPLIT_BY:
        raise ConfigError(f"split_by={split_by!r}; accepted: {', '.join(_SPLIT_BY)}.")
    if short_users not in _SHORT_POLICIES:
        raise ConfigError(f"short_users={short_users!r}; accepted: {', '.join(_SHORT_POLICIES)}.")
    min_u = int(k_core if min_user_interactions is None else min_user_interactions)
    min_i = int(k_core if min_item_interactions is None else min_item_interactions)
    if min_u < 1 or min_i < 1:
        raise ConfigError(f"k-core minimums must be >= 1; got users {min_u}, items {min_i}.")

    needed = [c for c in (user_col, item_col, rating_col, timestamp_col) if c is not None]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise DataError(
            f"{source}: missing column(s) {', '.join(map(repr, missing))}; found "
            f"{', '.join(map(repr, map(str, frame.columns)))}. Name the right columns with the "
            "importer's column options."
        )
    if len(frame) == 0:
        raise DataError(f"{source}: the interaction table is empty.")
    if min_rating is not None and rating_col is None:
        raise ConfigError(
            f"min_rating={min_rating} needs a rating column, but {source} has none selected; "
            "name it (e.g. --rating-col rating) or drop the threshold."
        )
    if split_by == "time" and timestamp_col is None:
        raise ConfigError(
            f"split_by='time' needs a timestamp column, but {source} has none selected; name "
            "it or use split_by='random'."
        )

    where = _Where(line_offset, row_numbers, len(frame))
    users = _id_column(frame, user_col, "user", source, where)
    items = _id_column(frame, item_col, "item", source, where)
    rating = (None if rating_col is None
              else _numeric_column(frame, rating_col, "rating", source, where))
    ts = (None if timestamp_col is None
          else _numeric_column(frame, timestamp_col, "timestamp", source, where))
    report: dict[str, Any] = {
        "source": source,
        "rows_in": len(frame),
        "users_in": int(pd.unique(users).size),
        "items_in": int(pd.unique(items).size),
    }
    rows = np.arange(len(frame))

    # 2. threshold
    if min_rating is not None:
        assert rating is not None
        keep = rating >= min_rating
        rows = rows[keep]
        report["rows_after_threshold"] = int(keep.sum())
        if not keep.any():
            raise DataError(
                f"{source}: no rating is >= {min_rating} (ratings range {rating.min()} to "
                f"{rating.max()}); lower --min-rating."
            )

    # 3. deduplicate (user, item): keep the earliest row
    if ts is not None:
        rows = rows[np.argsort(ts[rows], kind="stable")]
    pair = pd.DataFrame({"u": users[rows], "i": items[rows]})
    first = ~pair.duplicated(keep="first").to_numpy()
    report["duplicates_dropped"] = int((~first).sum())
    rows = np.sort(rows[first])

    # item catalog order (the caller resolved unknown items already)
    if item_order is not None:
        order_ids = np.asarray([str(x) for x in item_order], dtype=str)
        codes = pd.Index(order_ids).get_indexer(items[rows])
        if (codes < 0).any():
            bad = rows[codes < 0]
            raise DataError(
                f"{source}: item id(s) "
                f"{', '.join(repr(str(x)) for x in pd.unique(items[bad])[:5])} at "
                f"{where(bad)} are not in the item catalog."
            )
        i_all = codes.astype(np.int64)
        n_i_all = len(order_ids)
    else:
        uniq_i = pd.unique(items[rows])
        order_ids = np.asarray(uniq_i, dtype=str)[natural_order(uniq_i)]
        i_all = pd.Index(order_ids).get_indexer(items[rows]).astype(np.int64)
        n_i_all = len(order_ids)
    uniq_u = pd.unique(users[rows])
    user_order = np.asarray(uniq_u, dtype=str)[natural_order(uniq_u)]
    u_all = pd.Index(user_order).get_indexer(users[rows]).astype(np.int64)

    # 4. k-core (+ dropping short users, which is a user minimum too)
    min_len = 1 + int(ratios[1] > 0) + int(ratios[2] > 0)
    eff_min_u = max(min_u, min_len) if short_users == "drop" else min_u
    keep, passes = _k_core(u_all, i_all, len(user_order), n_i_all, eff_min_u, min_i)
    report.update({"k_core": {"min_user_interactions": min_u, "min_item_interactions": min_i,
                              "passes": passes}, "rows_after_k_core": int(keep.sum())})
    if not keep.any():
        raise DataError(
            f"{source}: no interaction survives the k-core filter (users >= {eff_min_u}, items "
            f">= {min_i}); lower --k-core."
        )
    rows, u_all, i_all = rows[keep], u_all[keep], i_all[keep]

    # 5. remap to contiguous indices (order preserved)
    used_u = np.flatnonzero(np.bincount(u_all, minlength=len(user_order)))
    used_i = np.flatnonzero(np.bincount(i_all, minlength=n_i_all))
    u_new = np.full(len(user_order), -1, np.int64)
    u_new[used_u] = np.arange(len(used_u))
    i_new = np.full(n_i_all, -1, np.int64)
    i_new[used_i] = np.arange(len(used_i))
    u, i = u_new[u_all], i_new[i_all]
    n_users, n_items = len(used_u), len(used_i)

    counts = np.bincount(u, minlength=n_users)
    short = counts < min_len
    if short.any() and short_users == "error":
        bad = np.flatnonzero(short)
        ids = ", ".join(f"{str(user_order[used_u[b]])!r} ({counts[b]})" for b in bad[:5])
        raise DataError(
            f"{source}: {len(bad)} user(s) have fewer than {min_len} interactions, too few for "
            f"train/valid/test: {ids}{' ...' if len(bad) > 5 else ''}. Use short_users='train' "
            "(keep them for training only) or 'drop', or raise --k-core."
        )

    # 6. split: canonical order (user, item) → seeded random key → per-user order
    rng = np.random.default_rng(seed)
    canon = np.lexsort((i, u))
    rows, u, i = rows[canon], u[canon], i[canon]
    tie = rng.random(len(u))
    use_time = ts is not None and split_by in ("auto", "time")
    if use_time and ts is not None:  # (use_time implies ts is not None)
        order = np.lexsort((tie, ts[rows], u))
    else:
        order = np.lexsort((tie, u))
    rows, u, i = rows[order], u[order], i[order]
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    pos = np.arange(len(u)) - starts[u]
    n_valid, n_test = _split_sizes(counts, ratios)
    n_valid[short], n_test[short] = 0, 0
    n_train = counts - n_valid - n_test
    labels = np.where(pos < n_train[u], 0, np.where(pos < (n_train + n_valid)[u], 1, 2))

    inter = Interactions(
        u, i, labels.astype(np.int8), n_users, n_items,
        timestamp=None if ts is None else ts[rows],
        rating=None if rating is None else rating[rows],
        user_ids=[str(x) for x in user_order[used_u]],
    )
    split_counts = {name: int((labels == code).sum())
                    for code, name in enumerate(("train", "valid", "test"))}
    report.update({
        "users": n_users,
        "items": n_items,
        "interactions": len(u),
        "short_users": {"policy": short_users, "min_interactions": min_len,
                        "n": int(short.sum())},
        "split": {"ratios": list(ratios), "by": "time" if use_time else "random",
                  "seed": int(seed), "counts": split_counts},
    })
    log.debug("prepared %s: %s", source, report)
    return PreparedInteractions(inter, [str(x) for x in order_ids[used_i]], report)
