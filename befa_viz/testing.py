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
    paths: list[str | None] = []
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


# ---- synthetic attributions for viz tests, doctests and demos (viz helper) ------------------
__all__ += ["synthetic_attribution"]


def synthetic_attribution(
    item: int = 0,
    variant: str = "with",
    modality: str = "image",
    *,
    grid: int | None = None,
    size: int = 32,
    seed: int = 0,
):
    """A hand-made :class:`~befa_viz.attribution.Attribution` of a toy item (no model involved).

    The values are synthetic (``method="synthetic"``), for testing and demonstrating figures only.
    Image maps: ``variant="with"`` concentrates on the item's coloured square (see
    :func:`toy_images`), ``"without"`` also spreads over a background blob (drift) — both signed
    with random signs. Text maps score the words of the toy text, ``"with"`` favouring the colour
    and shape, ``"without"`` the marketing filler.

    Args:
        item: Toy item index (as in ``toy_dataset()``).
        variant: ``"with"`` or ``"without"`` (the adapter).
        modality: ``"image"`` or ``"text"``.
        grid: For images, give the values as a coarse ``[grid, grid]`` map (like a patch-level
            similarity map) instead of one value per pixel.
        size: Image side in pixels.
        seed: Seed of the noise.

    Example:
        >>> a = synthetic_attribution(1, "without")
        >>> a.values.shape, a.image.shape, a.params["adapter"]
        ((32, 32), (32, 32, 3), False)
    """
    from befa_viz.attribution.result import Attribution

    if variant not in ("with", "without"):
        raise ValueError(f"variant={variant!r}; use 'with' or 'without'")
    rng = np.random.default_rng([seed, item, variant == "with"])
    params = {"n_steps": 32, "baseline": "blur", "adapter": variant == "with",
              "note": "synthetic values for tests and demos"}
    target = "adapted_alignment" if variant == "with" else "behaviour_alignment"
    if modality == "text":
        names = list(_COLOURS)
        tokens = ["a", names[item % 3], _SHAPES[item % 4], "for", "sale", ",", "great", "value"]
        base = (np.array([0.1, 1.0, 0.8, 0.05, 0.1, 0.0, 0.15, 0.1]) if variant == "with"
                else np.array([0.1, 0.5, 0.3, 0.1, 0.6, 0.0, 0.7, 0.5]))
        values = base * rng.choice([-1.0, 1.0], size=len(tokens), p=[0.2, 0.8])
        return Attribution(f"i{item}", "text", "synthetic", target, values, tokens=tokens,
                           delta=float(rng.uniform(1e-4, 1e-3)), params=params)
    if modality != "image":
        raise ValueError(f"modality={modality!r}; use 'image' or 'text'")
    images, masks = toy_images(item + 1, size=size, seed=0)
    image, mask = np.asarray(images[item]), masks[item]
    size = image.shape[0]
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    ys, xs = np.nonzero(mask)

    def blob(cy: float, cx: float, s: float) -> np.ndarray:
        return np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s**2))

    mag = blob(ys.mean() + 0.5, xs.mean() + 0.5, size / 10)
    if variant == "without":
        cy, cx = (size - ys.mean(), size - xs.mean())  # opposite corner: background
        mag = 0.6 * mag + 0.8 * blob(cy, cx, size / 7)
    mag = mag + 0.05 * rng.random(mag.shape)
    values = mag * rng.choice([-1.0, 1.0], size=mag.shape)
    if grid is not None:
        f = size // grid
        values = np.abs(values[: grid * f, : grid * f]).reshape(grid, f, grid, f).mean((1, 3))
    return Attribution(f"i{item}", "image", "synthetic", target, values, image=image,
                       delta=float(rng.uniform(1e-4, 1e-3)), params=params)


# ---- a toy workspace for pipeline tests, doctests, the explorer and notebooks (heatmap helper)
__all__ += ["toy_workspace"]
_toy_workspaces: dict[tuple, Path] = {}


def toy_workspace(
    path: str | Path | None = None,
    *,
    model: str = "vbpr",
    adapters: tuple[str, ...] = ("none", "befa"),
    epochs: int = 2,
    seed: int = 999,
):  # -> befa_viz.workspace.Workspace (import kept lazy)
    """A workspace with the toy dataset, tiny features and paired runs, built in seconds.

    ``<path>/datasets/toy`` (images in ``<path>/toy-images``), features from ``tiny:cnn`` and
    ``tiny:text`` in the feature store, and one short run of ``model`` per adapter setting
    (same seed and features, so they pair up for with/without comparisons). Calling it again
    on the same folder reuses what is there. The runs are *toys*: random-weight encoders and
    two epochs on 8 users; they exercise the code, they show nothing about BeFA.

    Args:
        path: Workspace folder (created); ``None``: one temporary folder per process and
            set of arguments, shared by the calls (fast doctests).
        model: Multimodal backbone in ``MODELS``.
        adapters: Adapter settings to train (``"none"``, ``"befa"``).
        epochs: Training epochs per run.
        seed: Training seed (shared by the runs).

    Returns:
        The :class:`~befa_viz.workspace.Workspace`.

    Example:
        >>> import tempfile
        >>> ws = toy_workspace(tempfile.mkdtemp())
        >>> ws.dataset_names(), len(ws.run_dirs())
        (['toy'], 2)
    """
    from befa_viz.pipeline import encode_dataset, train_model
    from befa_viz.workspace import Workspace

    if path is None:
        key = (model, tuple(adapters), epochs, seed)
        if key not in _toy_workspaces:
            _toy_workspaces[key] = Path(tempfile.mkdtemp(prefix="befa-toy-ws-"))
        path = _toy_workspaces[key]
    ws = Workspace(path)
    if not (ws.dataset_dir("toy") / "dataset.json").is_file():
        toy_dataset(folder=ws.root / "toy-images").save(ws.dataset_dir("toy"))
    encode_dataset(ws, "toy", image_encoder="tiny:cnn", text_encoder="tiny:text")
    for adapter in adapters:
        train_model(ws, model=model, adapter=adapter, dataset="toy", epochs=epochs, seed=seed,
                    resume=True)
    return ws


__all__ += ["synthetic_packshot"]


def synthetic_packshot(
    height: int = 96,
    width: int = 64,
    *,
    garment: tuple[int, int, int] = (170, 40, 50),
    background: tuple[int, int, int] = (238, 238, 236),
    vignette: float = 14.0,
    outline: int | None = None,
    shadow: float = 0.0,
    noise: float = 2.0,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """A packshot with a known garment mask: a T-shirt-like shape on a light background.

    Args:
        height: Photo height (portrait, like H&M's 540×360).
        width: Photo width.
        garment: Garment colour (RGB).
        background: Background colour at the centre (RGB).
        vignette: How much darker (0–255 units) the corners are than the centre.
        outline: Grey level of a one-pixel outline (seams, a white garment's edge); ``None``
            for none.
        shadow: Darkening of a soft shadow beside the garment (0 = none).
        noise: Standard deviation of Gaussian pixel noise (JPEG-like grain).
        seed: Noise seed.

    Returns:
        ``(uint8 [H, W, 3] photo, bool [H, W] garment mask)``.

    Example:
        >>> img, mask = synthetic_packshot()
        >>> img.shape, mask.shape, bool(0.1 < mask.mean() < 0.6)
        ((96, 64, 3), (96, 64), True)
    """
    from scipy import ndimage as ndi

    yy, xx = np.mgrid[0:height, 0:width]
    u, v = xx / (width - 1) - 0.5, yy / (height - 1) - 0.5  # [-0.5, 0.5]
    body = (np.abs(u) < 0.24) & (v > -0.3) & (v < 0.36)
    sleeves = (np.abs(u) < 0.4) & (v > -0.3) & (v < -0.08) & (np.abs(u) + 0.6 * (v + 0.3) < 0.45)
    neck = ((u / 0.09) ** 2 + ((v + 0.3) / 0.05) ** 2) < 1
    mask = (body | sleeves) & ~neck
    r2 = u**2 + v**2
    img = np.asarray(background, np.float64)[None, None, :] - vignette * (r2 / 0.5)[..., None]
    if shadow:
        sh = ndi.gaussian_filter(np.roll(mask, (2, 3), axis=(0, 1)).astype(float), 2.0)
        img = img * (1 - shadow * sh[..., None])
    img[mask] = garment
    if outline is not None:
        edge = mask & ~ndi.binary_erosion(mask)
        img[edge] = outline
    img = img + np.random.default_rng(seed).normal(0, noise, img.shape)
    return np.clip(np.round(img), 0, 255).astype(np.uint8), mask


__all__ += ["packshot_dataset"]


def packshot_dataset(folder: str | Path, *, n_items: int = 8, n_users: int = 6,
                     per_user: int = 4, size: tuple[int, int] = (90, 60)
                     ) -> tuple[RecDataset, dict[str, np.ndarray]]:
    """A small real-photo-like dataset: synthetic packshots with attribute metadata.

    Writes ``items.csv``, ``interactions.csv`` and ``images/`` into ``folder`` and imports them
    with the table importer. Every fourth garment is exactly the background's colour with no
    edge (a white-on-white photo whose mask must come out unusable); the true masks are
    returned beside the dataset (not stored: the dataset has no ground truth until
    ``make_garment_truth``).

    Returns:
        ``(RecDataset, {item_id: bool [H, W] true mask})``.

    Example:
        >>> import tempfile
        >>> ds, truth = packshot_dataset(tempfile.mkdtemp())
        >>> ds.n_items, truth["i0"].shape
        (8, (90, 60))
    """
    import pandas as pd
    from PIL import Image

    from befa_viz.data import import_table

    root = Path(folder)
    (root / "images").mkdir(parents=True, exist_ok=True)
    colours = [((170, 40, 50), "Red"), ((30, 30, 40), "Black"), ((60, 120, 60), "Green"),
               ((240, 240, 238), "White")]
    truth: dict[str, np.ndarray] = {}
    rows = []
    for k in range(n_items):
        rgb, name = colours[k % 4]
        img, m = synthetic_packshot(*size, garment=rgb, seed=k,
                                    vignette=0.0 if name == "White" else 14.0)
        Image.fromarray(img).save(root / "images" / f"i{k}.png")
        truth[f"i{k}"] = m
        rows.append({"item_id": f"i{k}", "title": f"Item {k}",
                     "text": f"A {name.lower()} shirt number {k}", "colour_group_name": name,
                     "product_type_name": "Shirt"})
    pd.DataFrame(rows).to_csv(root / "items.csv", index=False)
    pd.DataFrame([{"user_id": f"u{u}", "item_id": f"i{(u + j) % n_items}"}
                  for u in range(n_users) for j in range(per_user)]).to_csv(
        root / "interactions.csv", index=False)
    ds = import_table(root, name="packs", extra_cols=("colour_group_name", "product_type_name"))
    return ds, truth
