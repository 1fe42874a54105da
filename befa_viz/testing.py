"""Tiny seeded datasets and encoders for tests, doctests, notebooks and the app demo.

Everything here builds in milliseconds and downloads nothing. The toy dataset has a planted
preference structure: each user prefers one colour, and an item's colour shows both as a
square in its image and as a word in its title.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from befa_viz.data.types import Catalog, Interactions, RecDataset
from befa_viz.encoders.tiny import TinyCNN, TinyText

__all__ = ["toy_dataset", "tiny_image_encoder", "tiny_text_encoder", "toy_images"]

_COLOURS = {"red": (220, 40, 40), "blue": (40, 60, 220), "green": (40, 180, 60)}
_SHAPES = ("box", "ball", "cup", "hat")
_toy_dirs: dict[tuple[int, int, int], Path] = {}


def toy_images(n_items: int = 12, size: int = 32, seed: int = 0) -> tuple[list, np.ndarray]:
    """RGB PIL images of coloured squares on grey noise, and the square masks ``[n, size, size]``."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    colours = list(_COLOURS.values())
    images, masks = [], np.zeros((n_items, size, size), dtype=bool)
    for i in range(n_items):
        arr = rng.integers(100, 140, size=(size, size, 3)).astype(np.uint8)
        side = size // 3
        y, x = rng.integers(0, size - side, size=2)
        arr[y : y + side, x : x + side] = colours[i % len(colours)]
        masks[i, y : y + side, x : x + side] = True
        images.append(Image.fromarray(arr))
    return images, masks


def toy_dataset(
    n_users: int = 8, n_items: int = 12, seed: int = 0, folder: str | Path | None = None
) -> RecDataset:
    """A seeded toy dataset (8 users, 12 items, 32 px images, short titles).

    Images are written once per process to ``folder`` (a temporary folder by default).

    Example:
        >>> ds = toy_dataset()
        >>> ds.catalog.titles[0], ds.catalog.image(0).size
        ('red box', (32, 32))
    """
    key = (n_users, n_items, seed)
    if folder is None:
        if key not in _toy_dirs:
            _toy_dirs[key] = Path(tempfile.mkdtemp(prefix="befa-toy-"))
        folder = _toy_dirs[key]
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    images, _ = toy_images(n_items, seed=seed)
    names = list(_COLOURS)
    paths = []
    for i, im in enumerate(images):
        p = folder / f"item{i}.png"
        if not p.exists():
            im.save(p)
        paths.append(str(p))
    titles = [f"{names[i % 3]} {_SHAPES[i % 4]}" for i in range(n_items)]
    texts = [f"a {t} for sale, great value" for t in titles]
    catalog = Catalog([f"i{i}" for i in range(n_items)], titles, texts, paths)

    rng = np.random.default_rng(seed)
    users, items = [], []
    for u in range(n_users):
        liked = [i for i in range(n_items) if i % 3 == u % 3]
        other = [i for i in range(n_items) if i % 3 != u % 3]
        chosen = list(rng.permutation(liked)) + list(rng.choice(other, size=1))
        users += [u] * len(chosen)
        items += [int(i) for i in chosen]
    users_a, items_a = np.array(users), np.array(items)
    split = np.zeros(len(users_a), dtype=np.int8)
    for u in range(n_users):  # last two interactions of each user: valid, test
        rows = np.flatnonzero(users_a == u)
        split[rows[-2]], split[rows[-1]] = 1, 2
    ts = np.arange(len(users_a), dtype=np.int64)
    inter = Interactions(users_a, items_a, split, n_users, n_items, timestamp=ts,
                         user_ids=[f"u{u}" for u in range(n_users)])
    return RecDataset("toy", catalog, inter, info={"source": "befa_viz.testing.toy_dataset",
                                                    "seed": seed})


def tiny_image_encoder(dim: int = 32, seed: int = 0) -> TinyCNN:
    """Random-weight 32 px CNN (``tiny:cnn``)."""
    return TinyCNN(dim=dim, seed=seed)


def tiny_text_encoder(dim: int = 32, seed: int = 0) -> TinyText:
    """Random-weight hashed-vocabulary text encoder (``tiny:text``)."""
    return TinyText(dim=dim, seed=seed)
