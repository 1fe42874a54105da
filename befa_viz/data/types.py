"""Core data types: Catalog (items), Interactions (who did what, with split labels), RecDataset."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from befa_viz._typing import SPLIT_CODES
from befa_viz.errors import DataError, UnknownNameError
from befa_viz.registry import closest

__all__ = ["Catalog", "Interactions", "RecDataset", "DATASET_FORMAT_VERSION"]

DATASET_FORMAT_VERSION = 1


def _hash_arrays(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str(a.dtype).encode() + str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


@dataclass(frozen=True, eq=False)
class Catalog:
    """The items of a dataset: raw ids, titles, texts and image paths.

    Row ``i`` of every field is item index ``i``. Image paths are absolute or relative to
    ``image_root``; ``None`` (or an empty string) means the item has no image.

    Example:
        >>> cat = Catalog(item_ids=["a", "b"], titles=["A", "B"], texts=["x", "y"])
        >>> cat.index_of("b"), len(cat)
        (1, 2)
    """

    item_ids: list[str]
    titles: list[str]
    texts: list[str]
    image_paths: list[str | None] = field(default_factory=list)
    image_root: Path | None = None
    meta: pd.DataFrame | None = None  # optional extra item columns, one row per item

    def __post_init__(self) -> None:
        n = len(self.item_ids)
        object.__setattr__(self, "item_ids", [str(i) for i in self.item_ids])
        if not self.image_paths:
            object.__setattr__(self, "image_paths", [None] * n)
        for name in ("titles", "texts", "image_paths"):
            if len(getattr(self, name)) != n:
                raise DataError(
                    f"Catalog field '{name}' has {len(getattr(self, name))} entries but there are "
                    f"{n} item ids; every item needs one entry (use '' or None for missing)."
                )
        if self.meta is not None and len(self.meta) != n:
            raise DataError(f"Catalog meta has {len(self.meta)} rows but there are {n} items.")
        if len(set(self.item_ids)) != n:
            seen: set[str] = set()
            dup = next(i for i in self.item_ids if i in seen or seen.add(i))  # type: ignore[func-returns-value]  # set.add returns None
            raise DataError(f"Duplicate item id {dup!r} in the catalog; item ids must be unique.")

    def __len__(self) -> int:
        return len(self.item_ids)

    @cached_property
    def _index(self) -> dict[str, int]:
        return {iid: i for i, iid in enumerate(self.item_ids)}

    def index_of(self, item_id: str | int) -> int:
        """Integer position of a raw item id; unknown ids raise with the closest matches."""
        key = str(item_id)
        try:
            return self._index[key]
        except KeyError:
            near = closest(key, self.item_ids)
            hint = f" Closest ids: {', '.join(near)}." if near else ""
            raise UnknownNameError(
                f"Unknown item id {key!r} ({len(self)} items; ids are the dataset's original "
                f"ids).{hint}"
            ) from None

    def has_image(self, idx: int) -> bool:
        return bool(self.image_paths[idx])

    def image_path(self, idx: int) -> Path | None:
        p = self.image_paths[idx]
        if not p:
            return None
        path = Path(p)
        if not path.is_absolute() and self.image_root is not None:
            path = self.image_root / path
        return path

    def image(self, idx: int) -> Any:
        """Load item ``idx``'s image as an RGB PIL image (lazily, on demand)."""
        from PIL import Image, UnidentifiedImageError

        path = self.image_path(idx)
        if path is None:
            raise DataError(f"Item {self.item_ids[idx]!r} has no image in this dataset.")
        try:
            with Image.open(path) as im:
                return im.convert("RGB")
        except FileNotFoundError:
            raise DataError(
                f"Image file {path} of item {self.item_ids[idx]!r} does not exist; re-import "
                "the dataset or fix the image folder."
            ) from None
        except (UnidentifiedImageError, OSError) as e:
            raise DataError(
                f"Image file {path} of item {self.item_ids[idx]!r} cannot be read ({e})."
            ) from None

    def fingerprint(self) -> str:
        """Hash of ids, titles, texts and image paths (not image bytes)."""
        h = hashlib.sha256()
        for col in (self.item_ids, self.titles, self.texts, self.image_paths):
            h.update(json.dumps(list(col)).encode())
        return h.hexdigest()[:16]

    def to_frame(self) -> pd.DataFrame:
        df = pd.DataFrame(
            {
                "item_id": self.item_ids,
                "title": self.titles,
                "text": self.texts,
                "image": [p or "" for p in self.image_paths],
            }
        )
        if self.meta is not None:
            extra = self.meta.drop(columns=[c for c in df.columns if c in self.meta.columns])
            df = pd.concat([df, extra.reset_index(drop=True)], axis=1)
        return df


@dataclass(frozen=True, eq=False)
class Interactions:
    """Implicit-feedback interactions as parallel arrays of integer indices.

    ``split`` holds 0/1/2 = train/valid/test (the MMRec ``x_label`` convention).

    Example:
        >>> it = Interactions([0, 0, 1], [1, 2, 0], [0, 2, 0], n_users=2, n_items=3)
        >>> it.train().n_interactions, it.test().item_idx.tolist()
        (2, [2])
    """

    user_idx: np.ndarray
    item_idx: np.ndarray
    split: np.ndarray
    n_users: int
    n_items: int
    timestamp: np.ndarray | None = None
    rating: np.ndarray | None = None
    user_ids: list[str] | None = None  # raw user ids, row = user index

    def __post_init__(self) -> None:
        u = np.asarray(self.user_idx, dtype=np.int64)
        i = np.asarray(self.item_idx, dtype=np.int64)
        s = np.asarray(self.split, dtype=np.int8)
        object.__setattr__(self, "user_idx", u)
        object.__setattr__(self, "item_idx", i)
        object.__setattr__(self, "split", s)
        if not (len(u) == len(i) == len(s)):
            raise DataError(
                f"Interaction arrays differ in length: users {len(u)}, items {len(i)}, split {len(s)}."
            )
        for name in ("timestamp", "rating"):
            v = getattr(self, name)
            if v is not None:
                v = np.asarray(v)
                if len(v) != len(u):
                    raise DataError(f"Interaction '{name}' has {len(v)} rows, expected {len(u)}.")
                object.__setattr__(self, name, v)
        if len(u):
            if u.min() < 0 or u.max() >= self.n_users:
                bad = int(np.flatnonzero((u < 0) | (u >= self.n_users))[0])
                raise DataError(
                    f"Interaction row {bad} names user index {u[bad]}, outside 0..{self.n_users - 1}."
                )
            if i.min() < 0 or i.max() >= self.n_items:
                bad = int(np.flatnonzero((i < 0) | (i >= self.n_items))[0])
                raise DataError(
                    f"Interaction row {bad} names item index {i[bad]}, outside 0..{self.n_items - 1}."
                )
            if not np.isin(s, (0, 1, 2)).all():
                bad = int(np.flatnonzero(~np.isin(s, (0, 1, 2)))[0])
                raise DataError(
                    f"Interaction row {bad} has split label {s[bad]}; accepted: 0 (train), "
                    "1 (valid), 2 (test)."
                )
        if self.user_ids is not None and len(self.user_ids) != self.n_users:
            raise DataError(f"{len(self.user_ids)} user ids given for {self.n_users} users.")

    @property
    def n_interactions(self) -> int:
        return len(self.user_idx)

    def subset(self, mask: np.ndarray) -> Interactions:
        """Rows where ``mask`` is true, keeping user/item counts and ids."""
        def pick(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[mask]

        return Interactions(
            self.user_idx[mask], self.item_idx[mask], self.split[mask], self.n_users,
            self.n_items, pick(self.timestamp), pick(self.rating), self.user_ids,
        )

    def of_split(self, name: str) -> Interactions:
        return self.subset(self.split == SPLIT_CODES[name])

    def train(self) -> Interactions:
        return self.of_split("train")

    def valid(self) -> Interactions:
        return self.of_split("valid")

    def test(self) -> Interactions:
        return self.of_split("test")

    def csr(self) -> Any:
        """Binary user × item matrix as ``scipy.sparse.csr_matrix`` (duplicates collapse to 1)."""
        import scipy.sparse as sp

        m = sp.csr_matrix(
            (np.ones(len(self.user_idx), dtype=np.float32), (self.user_idx, self.item_idx)),
            shape=(self.n_users, self.n_items),
        )
        m.data[:] = 1.0
        return m

    def fingerprint(self) -> str:
        parts = [self.user_idx, self.item_idx, self.split, np.array([self.n_users, self.n_items])]
        return _hash_arrays(*parts)[:16]


@dataclass(frozen=True, eq=False)
class RecDataset:
    """A named dataset: catalog + interactions, with provenance.

    Example:
        >>> from befa_viz.testing import toy_dataset
        >>> ds = toy_dataset()
        >>> ds.n_users, ds.n_items
        (8, 12)
    """

    name: str
    catalog: Catalog
    interactions: Interactions
    info: dict[str, Any] = field(default_factory=dict)  # provenance: source, options, maps
    path: Path | None = None  # folder it was loaded from, if any

    def __post_init__(self) -> None:
        if self.interactions.n_items != len(self.catalog):
            raise DataError(
                f"Dataset {self.name!r}: interactions count {self.interactions.n_items} items but "
                f"the catalog has {len(self.catalog)}."
            )

    @property
    def items_only(self) -> bool:
        """``True`` for a catalog imported without interactions (no users, no splits).

        Such a dataset can be encoded and explained with model-free targets
        (``content_focus``); training needs interactions.
        """
        return self.interactions.n_interactions == 0

    @property
    def n_users(self) -> int:
        return self.interactions.n_users

    @property
    def n_items(self) -> int:
        return self.interactions.n_items

    def fingerprint(self) -> str:
        h = hashlib.sha256((self.catalog.fingerprint() + self.interactions.fingerprint()).encode())
        return h.hexdigest()[:16]

    @property
    def user_ids(self) -> list[str]:
        return self.interactions.user_ids or [str(u) for u in range(self.n_users)]

    def user_index_of(self, user_id: str | int) -> int:
        """Integer position of a raw user id."""
        ids = self.user_ids
        key = str(user_id)
        try:
            return ids.index(key)
        except ValueError:
            near = closest(key, ids)
            hint = f" Closest ids: {', '.join(near)}." if near else ""
            raise UnknownNameError(f"Unknown user id {key!r} ({len(ids)} users).{hint}") from None

    # -- native on-disk format ---------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        """Write the dataset to ``folder`` (atomically; deterministic bytes for equal input)."""
        from befa_viz.cache import atomic_dir

        folder = Path(folder)
        it = self.interactions
        with atomic_dir(folder) as tmp:
            cat = self.catalog.to_frame()
            images = []
            for idx in range(len(self.catalog)):
                p = self.catalog.image_path(idx)
                images.append(str(p) if p is not None else "")
            cat["image"] = images
            cat.to_csv(tmp / "items.csv", index=False, lineterminator="\n")
            cols: dict[str, Any] = {"user_idx": it.user_idx, "item_idx": it.item_idx,
                                    "split": it.split}
            if it.timestamp is not None:
                cols["timestamp"] = it.timestamp
            if it.rating is not None:
                cols["rating"] = it.rating
            pd.DataFrame(cols).to_csv(tmp / "interactions.csv", index=False, lineterminator="\n")
            pd.DataFrame({"user_id": self.user_ids}).to_csv(
                tmp / "users.csv", index=False, lineterminator="\n"
            )
            meta = {
                "format": DATASET_FORMAT_VERSION,
                "name": self.name,
                "n_users": self.n_users,
                "n_items": self.n_items,
                "n_interactions": it.n_interactions,
                "fingerprint": self.fingerprint(),
                "info": self.info,
            }
            (tmp / "dataset.json").write_text(json.dumps(meta, indent=2, sort_keys=True, default=str) + "\n")
        return folder

    @classmethod
    def items_only_of(cls, name: str, catalog: Catalog, info: dict[str, Any] | None = None
                      ) -> RecDataset:
        """A dataset of ``catalog`` without interactions (see :attr:`items_only`).

        Example:
            >>> cat = Catalog(item_ids=["a", "b"], titles=["A", "B"], texts=["", ""])
            >>> ds = RecDataset.items_only_of("photos", cat)
            >>> ds.items_only, ds.n_items, ds.n_users
            (True, 2, 0)
        """
        empty = np.zeros(0, dtype=np.int64)
        inter = Interactions(empty, empty, empty, n_users=0, n_items=len(catalog), user_ids=[])
        return cls(name, catalog, inter, dict(info or {}))

    @classmethod
    def load(cls, folder: str | Path) -> RecDataset:
        """Read a dataset written by :meth:`save`."""
        folder = Path(folder)
        meta_path = folder / "dataset.json"
        if not meta_path.is_file():
            raise DataError(
                f"{folder} is not a befa-viz dataset (no dataset.json). Import one with "
                "'befa-viz data import'."
            )
        meta = json.loads(meta_path.read_text())
        items = pd.read_csv(folder / "items.csv", dtype={"item_id": str}, keep_default_na=False)
        inter = pd.read_csv(folder / "interactions.csv")
        users = pd.read_csv(folder / "users.csv", dtype={"user_id": str}, keep_default_na=False)
        base = {"item_id", "title", "text", "image"}
        extra = [c for c in items.columns if c not in base]
        catalog = Catalog(
            item_ids=items["item_id"].tolist(),
            titles=items["title"].astype(str).tolist(),
            texts=items["text"].astype(str).tolist(),
            image_paths=[p or None for p in items["image"].astype(str).tolist()],
            image_root=folder,
            meta=items[extra].copy() if extra else None,
        )
        interactions = Interactions(
            inter["user_idx"].to_numpy(), inter["item_idx"].to_numpy(), inter["split"].to_numpy(),
            n_users=int(meta["n_users"]), n_items=int(meta["n_items"]),
            timestamp=inter["timestamp"].to_numpy() if "timestamp" in inter else None,
            rating=inter["rating"].to_numpy() if "rating" in inter else None,
            user_ids=users["user_id"].tolist(),
        )
        return cls(meta["name"], catalog, interactions, meta.get("info", {}), folder)
