"""A seeded synthetic shop with planted ground truth: what users choose by is known exactly.

Each item is a product of one *kind* (shirt, mug, shoe, ...) with a *colour* and a *pattern*
(solid, stripes, dots, checks), drawn at a random position and scale on a cluttered background
with irrelevant props, optionally a decoy (a blob in the product's own colour and pattern), a
"HOT" sticker, a price tag and a watermark. Its text mixes attribute words (relevant) with
marketing filler (irrelevant). Users have latent tastes over kind, colour and pattern only; each
user's interactions are sampled from those tastes mixed with item popularity, with timestamps,
and split chronologically per user.

Besides a normal befa-viz dataset, :func:`generate_shop` writes the ground truth:

``ground_truth/masks.npz``
    Boolean arrays ``[n_items, H, W]`` named ``product`` (relevant), ``props``, ``decoy``,
    ``sticker``, ``price_tag`` and ``watermark`` (irrelevant). They hold the *visible* pixels of
    each layer, so they are disjoint; pixels in none of them are background.
``ground_truth/tokens.json``
    Per item and field (``title``, ``text``): the word tokens of :func:`word_tokens`, their
    character spans and relevance labels (1 = names the item's kind, colour or pattern).
``ground_truth/attributes.csv``
    ``item_id, kind, colour, pattern, price, popularity, sticker, decoy``.
``ground_truth/tastes.npy``
    ``[n_users, n_kinds + n_colours + n_patterns]`` float32 taste weights; a user's utility
    for an item is the sum of the three weights of its attribute values (columns named in
    ``generator.json``).
``generator.json``
    All knobs, the seed, the attribute vocabularies and the ground-truth layout.

Same knobs and seed give byte-identical files.

Tuning (``benches/shop_signal.py``, project trainer, test Recall@20, defaults, seeds 0-2): a
planted-truth benchmark only means something when content helps the recommender, so the
defaults (``taste_strength=1.5``, ``popularity_share=0.2``, 20-40 interactions per user, 400
items, 300 users) were chosen where it clearly does: ID-only BPR-MF 0.143, VBPR with the true
attributes as content 0.331, VBPR with MobileNetV2 ImageNet features of the images 0.178
(whitened PCA-32: 0.180); most-popular 0.100, the generator's own choice probabilities 0.449.
Flatter tastes (``taste_strength=0.75``) or more popularity noise (``popularity_share=0.5``)
shrink the gap; fewer interactions per user widen it.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import json
import logging
import math
import os
import re
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from befa_viz.cache import atomic_dir
from befa_viz.data.synth_text import compose_text, word_tokens
from befa_viz.data.truth import GroundTruth, load_shop_truth
from befa_viz.data.types import Catalog, Interactions, RecDataset
from befa_viz.errors import ConfigError, DataError
from befa_viz.registry import closest

__all__ = [
    "ShopConfig",
    "GroundTruth",
    "generate_shop",
    "load_ground_truth",
    "render_item",
    "KINDS",
    "COLOURS",
    "PATTERNS",
    "MASK_NAMES",
    "GENERATOR_VERSION",
]

log = logging.getLogger(__name__)

GENERATOR_VERSION = 1

KINDS = ("shirt", "mug", "shoe", "hat", "bag", "lamp", "bottle", "dress")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (205, 35, 35), "blue": (35, 75, 205), "green": (35, 150, 55),
    "yellow": (235, 200, 30), "purple": (125, 50, 165), "orange": (240, 125, 20),
    "pink": (240, 115, 170), "teal": (20, 150, 150), "brown": (120, 72, 35),
    "black": (28, 28, 28),
}
PATTERNS = ("solid", "stripes", "dots", "checks")
#: Ground-truth layers in drawing order after the background; the label map value is index + 1.
MASK_NAMES = ("props", "decoy", "product", "sticker", "price_tag", "watermark")
_LABEL = {name: i + 1 for i, name in enumerate(MASK_NAMES)}
_SECONDARY = (245, 242, 232)  # the light second colour of stripes, dots and checks
_T0 = 1_700_000_000  # first timestamp (2023-11-14), seconds
_SPAN = 180 * 24 * 3600  # interactions fall within 180 days


@dataclass(frozen=True)
class ShopConfig:
    """Every knob of the synthetic shop, with its default (see :func:`generate_shop`).

    Ranges ``(lo, hi)`` are inclusive; each item or user draws uniformly from them.
    """

    name: str = "shop"  # dataset name
    seed: int = 0  # one seed for everything; same knobs + seed → byte-identical files
    n_items: int = 400  # products
    n_users: int = 300  # users
    image_size: int = 128  # square image side in px (encoders resize to their own input)
    n_kinds: int = 6  # product kinds used, the first n of KINDS (1..8)
    n_colours: int = 8  # colours used, the first n of COLOURS (1..10)
    n_patterns: int = 4  # patterns used, the first n of PATTERNS (1..4)
    product_scale: tuple[float, float] = (0.55, 0.8)  # product's longer side / image side
    n_props: tuple[int, int] = (2, 4)  # irrelevant props per image
    prop_scale: tuple[float, float] = (0.15, 0.35)  # prop size / image side
    clutter: float = 0.6  # background texture contrast: 0 flat … 1 busy
    decoy_rate: float = 0.5  # share of items with a decoy blob in the product's colour+pattern
    decoy_scale: tuple[float, float] = (0.2, 0.3)  # decoy size / image side
    sticker_rate: float = 0.3  # share of items with a "HOT" sticker (an irrelevant prop)
    prop_popularity_correlation: float = 0.0  # 0: stickers at random … 1: on the most popular
    price_tag_rate: float = 1.0  # share of items with a price tag
    watermark_rate: float = 1.0  # share of items with a watermark
    n_filler: tuple[int, int] = (2, 4)  # marketing-filler sentences per description
    interactions_per_user: tuple[int, int] = (20, 40)  # distinct items per user
    taste_strength: float = 1.5  # scale of the taste weights: higher → more peaked tastes
    attribute_weights: tuple[float, float, float] = (1.0, 1.0, 1.0)  # kind, colour, pattern
    popularity_share: float = 0.2  # share of each user's choices driven by popularity alone
    popularity_sigma: float = 1.0  # log-normal spread of item popularity
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)  # per-user chronological train/valid/test

    def __post_init__(self) -> None:
        _validate(self)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_knobs(cls, **knobs: Any) -> ShopConfig:
        """Build from keyword knobs; an unknown knob raises ConfigError with the closest name."""
        names = [f.name for f in dataclasses.fields(cls)]
        values: dict[str, Any] = {}
        for k, v in knobs.items():
            if k not in names:
                near = closest(k, names)
                hint = f" Did you mean {near[0]!r}?" if near else ""
                raise ConfigError(
                    f"generate_shop: unknown knob {k!r}.{hint} Valid knobs: {', '.join(names)}."
                )
            values[k] = _plain(v)
        return cls(**values)


def _plain(v: Any) -> Any:
    """Lists → tuples and numpy scalars → Python scalars, so knobs serialise to JSON."""
    if isinstance(v, (list, tuple)):
        return tuple(_plain(x) for x in v)
    return v.item() if isinstance(v, np.generic) else v


def _bad(knob: str, value: Any, accepted: str) -> ConfigError:
    return ConfigError(f"generate_shop: knob '{knob}' must be {accepted}, got {value!r}.")


def _validate(c: ShopConfig) -> None:
    def integer(knob: str, lo: int, hi: int | None = None) -> None:
        v = getattr(c, knob)
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo or (
                hi is not None and v > hi):
            raise _bad(knob, v, f"an integer in [{lo}, {hi if hi is not None else '∞'}]")

    def number(knob: str, lo: float, hi: float | None = None, v: Any = None) -> None:
        v = getattr(c, knob) if v is None else v
        ok = isinstance(v, (int, float, np.floating, np.integer)) and not isinstance(v, bool)
        if not ok or not math.isfinite(v) or v < lo or (hi is not None and v > hi):
            raise _bad(knob, getattr(c, knob), f"a number in [{lo}, {hi if hi is not None else '∞'}]")

    def pair(knob: str, lo: float, hi: float | None, kind: type) -> None:
        v = getattr(c, knob)
        accepted = f"a pair (lo, hi) of {kind.__name__}s with {lo} <= lo <= hi" + (
            f" <= {hi}" if hi is not None else "")
        if not isinstance(v, tuple) or len(v) != 2 or any(
                isinstance(x, bool) or not isinstance(x, (int, float, np.number)) for x in v):
            raise _bad(knob, v, accepted)
        if kind is int and any(float(x) != int(x) for x in v):
            raise _bad(knob, v, accepted)
        if not (v[0] >= lo and v[0] <= v[1] and (hi is None or v[1] <= hi)):
            raise _bad(knob, v, accepted)

    if not isinstance(c.name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", c.name):
        raise _bad("name", c.name, "a name of letters, digits, '.', '_' and '-'")
    integer("seed", 0)
    integer("n_items", 1)
    integer("n_users", 1)
    integer("image_size", 32, 1024)
    integer("n_kinds", 1, len(KINDS))
    integer("n_colours", 1, len(COLOURS))
    integer("n_patterns", 1, len(PATTERNS))
    pair("product_scale", 0.2, 1.0, float)
    pair("n_props", 0, 12, int)
    pair("prop_scale", 0.05, 0.6, float)
    number("clutter", 0.0, 1.0)
    number("decoy_rate", 0.0, 1.0)
    pair("decoy_scale", 0.05, 0.6, float)
    number("sticker_rate", 0.0, 1.0)
    number("prop_popularity_correlation", 0.0, 1.0)
    number("price_tag_rate", 0.0, 1.0)
    number("watermark_rate", 0.0, 1.0)
    pair("n_filler", 0, 14, int)
    pair("interactions_per_user", 3, None, int)
    if c.interactions_per_user[1] > c.n_items:
        raise _bad("interactions_per_user", c.interactions_per_user,
                   f"at most n_items={c.n_items} (users choose distinct items)")
    number("taste_strength", 0.0, 20.0)
    w = c.attribute_weights
    if not isinstance(w, tuple) or len(w) != 3:
        raise _bad("attribute_weights", w, "three numbers >= 0 (kind, colour, pattern)")
    for x in w:
        number("attribute_weights", 0.0, 20.0, v=x)
    number("popularity_share", 0.0, 1.0)
    number("popularity_sigma", 0.0, 5.0)
    s = c.split
    if (not isinstance(s, tuple) or len(s) != 3 or any(
            isinstance(x, bool) or not isinstance(x, (int, float)) or x < 0 for x in s)
            or not math.isclose(sum(s), 1.0, abs_tol=1e-6) or s[0] <= 0):
        raise _bad("split", s, "three shares (train, valid, test) >= 0 summing to 1, train > 0")


# ---- drawing --------------------------------------------------------------------------------
# A product is a list of parts in a unit box: (primitive, geometry, role). Roles: "main" is the
# colour+pattern texture, "shade" a dark tone of the colour, a tuple a fixed RGB (soles, stems).
# Aspect = box width / height.
_Part = tuple[str, Any, Any]
_SHAPES: dict[str, tuple[float, list[_Part]]] = {
    "shirt": (1.0, [
        ("polygon", [(0.36, 0.06), (0.16, 0.12), (0.0, 0.34), (0.12, 0.47), (0.23, 0.39),
                     (0.23, 0.97), (0.77, 0.97), (0.77, 0.39), (0.88, 0.47), (1.0, 0.34),
                     (0.84, 0.12), (0.64, 0.06), (0.5, 0.17)], "main"),
        ("line", ([(0.35, 0.06), (0.5, 0.17), (0.65, 0.06)], 0.035), "shade"),
    ]),
    "mug": (1.1, [
        ("ring", ((0.52, 0.28, 0.99, 0.8), 0.1), "main"),
        ("rect", (0.06, 0.14, 0.72, 0.97), "main"),
        ("ellipse", (0.06, 0.08, 0.72, 0.2), "shade"),
        ("ellipse", (0.11, 0.1, 0.67, 0.18), (70, 42, 22)),
    ]),
    "shoe": (1.6, [
        ("polygon", [(0.04, 0.82), (0.06, 0.3), (0.3, 0.24), (0.36, 0.4), (0.5, 0.36),
                     (0.8, 0.5), (0.98, 0.64), (0.99, 0.8)], "main"),
        ("ellipse", (0.09, 0.24, 0.33, 0.36), "shade"),
        ("line", ([(0.45, 0.44), (0.52, 0.38)], 0.03), (250, 250, 250)),
        ("line", ([(0.53, 0.48), (0.6, 0.42)], 0.03), (250, 250, 250)),
        ("polygon", [(0.01, 0.78), (0.99, 0.74), (1.0, 0.84), (0.97, 0.96), (0.03, 0.96)],
         (238, 238, 232)),
    ]),
    "hat": (1.3, [
        ("ellipse", (0.0, 0.6, 1.0, 0.92), "main"),
        ("polygon", [(0.22, 0.74), (0.25, 0.22), (0.38, 0.08), (0.62, 0.08), (0.75, 0.22),
                     (0.78, 0.74)], "main"),
        ("line", ([(0.42, 0.1), (0.5, 0.2), (0.58, 0.1)], 0.03), "shade"),
        ("rect", (0.23, 0.58, 0.77, 0.68), (25, 25, 25)),
    ]),
    "bag": (1.1, [
        ("ring", ((0.22, 0.02, 0.78, 0.75), 0.07), "shade"),
        ("polygon", [(0.12, 0.38), (0.88, 0.38), (1.0, 0.98), (0.0, 0.98)], "main"),
        ("rect", (0.44, 0.5, 0.56, 0.62), (222, 182, 60)),
    ]),
    "lamp": (0.8, [
        ("ellipse", (0.18, 0.87, 0.82, 0.99), (60, 60, 60)),
        ("rect", (0.45, 0.4, 0.55, 0.93), (150, 150, 150)),
        ("polygon", [(0.22, 0.01), (0.78, 0.01), (0.99, 0.47), (0.01, 0.47)], "main"),
    ]),
    "bottle": (0.45, [
        ("rect", (0.3, 0.0, 0.7, 0.1), (40, 40, 40)),
        ("rect", (0.34, 0.08, 0.66, 0.24), "main"),
        ("polygon", [(0.02, 0.42), (0.34, 0.2), (0.66, 0.2), (0.98, 0.42)], "main"),
        ("rrect", (0.02, 0.36, 0.98, 0.99), "main"),
    ]),
    "dress": (0.8, [
        ("polygon", [(0.33, 0.0), (0.42, 0.0), (0.45, 0.12), (0.55, 0.12), (0.58, 0.0),
                     (0.67, 0.0), (0.71, 0.3), (0.62, 0.42), (1.0, 0.98), (0.0, 0.98),
                     (0.38, 0.42), (0.29, 0.3)], "main"),
        ("rect", (0.37, 0.38, 0.63, 0.45), "shade"),
    ]),
}


@dataclass(frozen=True)
class _Spec:
    """Everything random about one item's image, drawn up front so rendering is a pure function."""

    kind: str
    colour: str
    pattern: str
    price: float
    bg: dict[str, Any]
    product: dict[str, Any]  # box (x0, y0, w, h), flip, texture params
    props: list[dict[str, Any]] = field(default_factory=list)
    decoy: dict[str, Any] | None = None
    sticker: dict[str, Any] | None = None
    price_tag: dict[str, Any] | None = None
    watermark: dict[str, Any] | None = None


@functools.lru_cache(maxsize=4)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates ``(yy, xx)``, each ``[size, size]`` (cached: never mutate)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    yy += 0.5
    xx += 0.5
    yy.setflags(write=False)
    xx.setflags(write=False)
    return yy, xx


def _texture(pattern: str, colour: tuple[int, int, int], size: int, tex: dict[str, Any]
             ) -> np.ndarray:
    """Full-image ``[H, W, 3]`` float texture of ``pattern`` in ``colour`` (vectorised)."""
    yy, xx = _grid(size)
    a = tex["angle"]
    u = xx * math.cos(a) + yy * math.sin(a) + tex["phase"][0]
    v = -xx * math.sin(a) + yy * math.cos(a) + tex["phase"][1]
    p = tex["period"]
    if pattern == "solid":
        second = np.zeros_like(u, dtype=bool)
    elif pattern == "stripes":
        second = (u % p) < 0.45 * p
    elif pattern == "dots":
        du, dv = (u % p) - p / 2, (v % p) - p / 2
        second = du * du + dv * dv < (0.3 * p) ** 2
    elif pattern == "checks":
        second = ((np.floor(u / p) + np.floor(v / p)) % 2) == 1
    else:  # pragma: no cover - patterns come from PATTERNS
        raise AssertionError(pattern)
    out = np.empty((size, size, 3), dtype=np.float32)
    out[:] = colour
    out[second] = _SECONDARY
    return out


def _noise(rng_vals: list[np.ndarray], size: int) -> np.ndarray:
    """Smooth value noise from a few low-resolution grids, upsampled bilinearly, in [-1, 1]."""
    from PIL import Image

    total = np.zeros((size, size), dtype=np.float32)
    for w, grid in enumerate(rng_vals):
        im = Image.fromarray(grid.astype(np.float32), mode="F").resize(
            (size, size), Image.Resampling.BILINEAR)
        total += np.asarray(im, dtype=np.float32) / (w + 1)
    return total / sum(1 / (w + 1) for w in range(len(rng_vals)))


def _background(bg: dict[str, Any], size: int, clutter: float) -> np.ndarray:
    yy, xx = _grid(size)
    t = (xx * math.cos(bg["angle"]) + yy * math.sin(bg["angle"])) / (size * 1.42) + 0.5
    c0, c1 = np.array(bg["c0"], np.float32), np.array(bg["c1"], np.float32)
    img = c0 + (c1 - c0) * t[..., None]
    noise = _noise([np.array(g, np.float32) for g in bg["noise"]], size)
    img += (clutter * 70.0 * noise)[..., None] * np.array(bg["tint"], np.float32)
    if bg["wall_stripes"]:
        img += (clutter * 14.0 * np.sign(np.sin(xx * 2 * math.pi / bg["wall_period"])))[..., None]
    if bg["horizon"] is not None:
        h = bg["horizon"] * size
        table = yy > h
        grain = np.sin(yy * 0.9 + 3.0 * noise * 4.0) * clutter * 18.0
        tc = np.array(bg["table"], np.float32) + grain[..., None]
        img = np.where(table[..., None], tc, img)
    return img


def _draw_mask(size: int, fn: Any) -> np.ndarray:
    """Rasterise with PIL (no anti-aliasing) into a boolean mask."""
    from PIL import Image, ImageDraw

    im = Image.new("L", (size, size), 0)
    fn(ImageDraw.Draw(im))
    return np.asarray(im) > 0


def _part_mask(size: int, prim: str, geom: Any, to_px: Any, scale: float) -> np.ndarray:
    def draw(d: Any) -> None:
        if prim == "polygon":
            d.polygon([to_px(x, y) for x, y in geom], fill=255)
        elif prim in ("rect", "ellipse", "rrect"):
            x0, y0 = to_px(geom[0], geom[1])
            x1, y1 = to_px(geom[2], geom[3])
            box = [min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)]
            if prim == "rect":
                d.rectangle(box, fill=255)
            elif prim == "ellipse":
                d.ellipse(box, fill=255)
            else:
                d.rounded_rectangle(box, radius=max(1, int(0.12 * (box[2] - box[0]))), fill=255)
        elif prim == "ring":
            (gx0, gy0, gx1, gy1), width = geom
            x0, y0 = to_px(gx0, gy0)
            x1, y1 = to_px(gx1, gy1)
            box = [min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)]
            d.ellipse(box, outline=255, width=max(1, int(round(width * scale))))
        elif prim == "line":
            pts, width = geom
            d.line([to_px(x, y) for x, y in pts], fill=255,
                   width=max(1, int(round(width * scale))))
        else:  # pragma: no cover - shapes are fixed above
            raise AssertionError(prim)
    return _draw_mask(size, draw)


def _product_layers(spec: _Spec, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The product's ``[H, W, 3]`` colours and its drawn mask (before anything covers it)."""
    aspect, parts = _SHAPES[spec.kind]
    x0, y0, w, h = spec.product["box"]
    flip = spec.product["flip"]

    def to_px(u: float, v: float) -> tuple[float, float]:
        u = 1.0 - u if flip else u
        return (x0 + u * w, y0 + v * h)

    colour = COLOURS[spec.colour]
    tex = _texture(spec.pattern, colour, size, spec.product["tex"])
    shade = tuple(int(c * 0.55) for c in colour)
    rgb = np.zeros((size, size, 3), dtype=np.float32)
    mask = np.zeros((size, size), dtype=bool)
    for prim, geom, role in parts:
        m = _part_mask(size, prim, geom, to_px, max(w, h))
        if role == "main":
            rgb[m] = tex[m]
        else:
            rgb[m] = shade if role == "shade" else role
        mask |= m
    return rgb, mask


def _blob_points(cx: float, cy: float, r: float, radii: list[float]) -> list[tuple[float, float]]:
    n = len(radii)
    return [(cx + r * q * math.cos(2 * math.pi * k / n), cy + r * q * math.sin(2 * math.pi * k / n))
            for k, q in enumerate(radii)]


def _prop_layers(prop: dict[str, Any], size: int) -> list[tuple[np.ndarray, tuple[int, ...]]]:
    """Masks and flat colours of one prop (plant, box, ball, books, vase, frame, blob)."""
    kind, (cx, cy, r) = prop["kind"], prop["at"]
    col = tuple(prop["colour"])
    out: list[tuple[np.ndarray, tuple[int, ...]]] = []

    def add(draw: Any, colour: tuple[int, ...]) -> None:
        out.append((_draw_mask(size, draw), colour))

    if kind == "plant":
        add(lambda d: d.polygon([(cx - 0.45 * r, cy + 0.2 * r), (cx + 0.45 * r, cy + 0.2 * r),
                                 (cx + 0.32 * r, cy + r), (cx - 0.32 * r, cy + r)], fill=255), col)
        for k, (dx, dy) in enumerate(prop["leaves"]):
            green = (40 + 15 * k % 50, 120 + 20 * (k % 3), 50)
            add(lambda d, dx=dx, dy=dy: d.ellipse(
                [cx + dx * r - 0.22 * r, cy + dy * r - 0.4 * r,
                 cx + dx * r + 0.22 * r, cy + dy * r + 0.4 * r], fill=255), green)
    elif kind == "box":
        add(lambda d: d.rectangle([cx - r, cy - 0.7 * r, cx + r, cy + 0.7 * r], fill=255), col)
        dark = tuple(int(c * 0.7) for c in col)
        add(lambda d: d.rectangle([cx - 0.12 * r, cy - 0.7 * r, cx + 0.12 * r, cy + 0.7 * r],
                                  fill=255), dark)
    elif kind == "ball":
        add(lambda d: d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255), col)
        add(lambda d: d.ellipse([cx - 0.55 * r, cy - 0.6 * r, cx - 0.15 * r, cy - 0.2 * r],
                                fill=255), (250, 250, 250))
    elif kind == "books":
        for k, c in enumerate(prop["spines"]):
            y = cy + r - (k + 1) * 0.4 * r
            add(lambda d, y=y, k=k: d.rectangle(
                [cx - r + 0.1 * r * k, y, cx + r - 0.08 * r * k, y + 0.36 * r], fill=255),
                tuple(c))
    elif kind == "vase":
        add(lambda d: d.ellipse([cx - 0.6 * r, cy - 0.4 * r, cx + 0.6 * r, cy + r], fill=255), col)
        add(lambda d: d.rectangle([cx - 0.22 * r, cy - r, cx + 0.22 * r, cy - 0.2 * r],
                                  fill=255), col)
    elif kind == "frame":
        add(lambda d: d.rectangle([cx - r, cy - 0.75 * r, cx + r, cy + 0.75 * r], fill=255),
            (90, 60, 30))
        add(lambda d: d.rectangle([cx - 0.8 * r, cy - 0.55 * r, cx + 0.8 * r, cy + 0.55 * r],
                                  fill=255), col)
        add(lambda d: d.polygon([(cx - 0.8 * r, cy + 0.55 * r), (cx - 0.2 * r, cy - 0.2 * r),
                                 (cx + 0.3 * r, cy + 0.55 * r)], fill=255),
            tuple(int(c * 0.6) for c in col))
    else:  # blob
        add(lambda d: d.polygon(_blob_points(cx, cy, r, prop["radii"]), fill=255), col)
    return out


def _font(px: int) -> Any:
    from PIL import ImageFont

    return ImageFont.load_default(size=max(6, px))


def _render(spec: _Spec, size: int, clutter: float, only: tuple[str, ...] | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
    """Render one item from its spec: ``(image [H, W, 3] uint8, labels [H, W] uint8)``."""
    from PIL import Image, ImageDraw

    def want(name: str) -> bool:
        return only is None or name in only

    img = (_background(spec.bg, size, clutter) if want("background")
           else np.full((size, size, 3), 255.0, np.float32))
    labels = np.zeros((size, size), dtype=np.uint8)

    def paint(mask: np.ndarray, colour: Any, label: str, alpha: float = 1.0) -> None:
        if alpha >= 1.0:
            img[mask] = colour if not isinstance(colour, np.ndarray) else colour[mask]
        else:
            src = colour if not isinstance(colour, np.ndarray) else colour[mask]
            img[mask] = (1 - alpha) * img[mask] + alpha * np.asarray(src, np.float32)
        labels[mask] = _LABEL[label]

    if want("props"):
        for prop in spec.props:
            for m, c in _prop_layers(prop, size):
                paint(m, c, "props")
    if want("decoy") and spec.decoy is not None:
        cx, cy, r = spec.decoy["at"]
        m = _draw_mask(size, lambda d: d.polygon(
            _blob_points(cx, cy, r, spec.decoy["radii"]), fill=255))
        paint(m, _texture(spec.pattern, COLOURS[spec.colour], size, spec.decoy["tex"]), "decoy")
    if want("product"):
        rgb, m = _product_layers(spec, size)
        paint(m, rgb, "product")
    if want("sticker") and spec.sticker is not None:
        cx, cy, r = spec.sticker["at"]
        n = 12
        pts = [(cx + r * (1.0 if k % 2 == 0 else 0.68) * math.cos(math.pi * k / n + 0.2),
                cy + r * (1.0 if k % 2 == 0 else 0.68) * math.sin(math.pi * k / n + 0.2))
               for k in range(2 * n)]
        paint(_draw_mask(size, lambda d: d.polygon(pts, fill=255)), (250, 215, 0), "sticker")
        paint(_draw_mask(size, lambda d: d.ellipse(
            [cx - 0.5 * r, cy - 0.5 * r, cx + 0.5 * r, cy + 0.5 * r], fill=255)),
            (215, 30, 30), "sticker")
    if want("price_tag") and spec.price_tag is not None:
        x0, y0, w, h = spec.price_tag["box"]
        paint(_draw_mask(size, lambda d: d.rounded_rectangle(
            [x0, y0, x0 + w, y0 + h], radius=max(1, int(h / 4)), fill=255)),
            (252, 252, 248), "price_tag")
        text_im = Image.new("L", (size, size), 0)
        ImageDraw.Draw(text_im).text((x0 + 0.12 * h, y0 + 0.15 * h), f"${spec.price:.2f}",
                                     fill=255, font=_font(int(h * 0.62)))
        tm = (np.asarray(text_im) > 110) & (labels == _LABEL["price_tag"])
        paint(tm, (20, 20, 20), "price_tag")
    if want("watermark") and spec.watermark is not None:
        wm = spec.watermark
        text_im = Image.new("L", (size, size), 0)
        ImageDraw.Draw(text_im).text(tuple(wm["at"]), wm["text"], fill=255,
                                     font=_font(int(wm["px"])))
        if wm["angle"]:
            text_im = text_im.rotate(wm["angle"], resample=Image.Resampling.NEAREST,
                                     center=tuple(wm["at"]))
        paint(np.asarray(text_im) > 110, wm["colour"], "watermark", alpha=wm["alpha"])
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), labels


# ---- random specs ---------------------------------------------------------------------------
def _muted(rng: np.random.Generator, lo: float, hi: float, sat: tuple[float, float]
           ) -> list[int]:
    import colorsys

    h, s, v = rng.random(), rng.uniform(*sat), rng.uniform(lo, hi)
    return [int(round(255 * x)) for x in colorsys.hsv_to_rgb(h, s, v)]


def _overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """Share of box ``a`` (x0, y0, x1, y1) that lies inside box ``b``."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    area = max(1e-9, (a[2] - a[0]) * (a[3] - a[1]))
    return w * h / area


def _place(rng: np.random.Generator, size: int, r: float, avoid: list[tuple], tries: int = 12
           ) -> tuple[float, float]:
    """A centre for a square of half-side ``r`` that overlaps the ``avoid`` boxes least."""
    best, best_ov = (size / 2, size / 2), 2.0
    for _ in range(tries):
        cx, cy = rng.uniform(r, size - r), rng.uniform(r, size - r)
        box = (cx - r, cy - r, cx + r, cy + r)
        ov = max([_overlap(box, b) for b in avoid] or [0.0])
        if ov < best_ov:
            best, best_ov = (float(cx), float(cy)), ov
        if ov < 0.1:
            break
    return best


def _tex_params(rng: np.random.Generator, scale: float) -> dict[str, Any]:
    return {"period": float(scale * rng.uniform(0.13, 0.2)),
            "angle": float(rng.choice([0.0, math.pi / 4, math.pi / 2, 3 * math.pi / 4])),
            "phase": [float(x) for x in rng.uniform(0, 50, size=2)]}


_PROP_KINDS = ("plant", "box", "ball", "books", "vase", "frame", "blob")
_WATERMARKS = ("SAMPLE", "shopco", "(c) photo", "PREVIEW", "stock")


def _item_spec(cfg: ShopConfig, rng: np.random.Generator, kind: str, colour: str, pattern: str,
               price: float, sticker: bool) -> _Spec:
    size = cfg.image_size
    bg = {
        "c0": _muted(rng, 0.55, 0.95, (0.05, 0.35)), "c1": _muted(rng, 0.45, 0.9, (0.05, 0.35)),
        "angle": float(rng.uniform(0, 2 * math.pi)),
        "noise": [rng.uniform(-1, 1, size=(k, k)).round(4).tolist() for k in (3, 7, 17)],
        "tint": [float(x) for x in rng.uniform(0.7, 1.0, size=3)],
        "wall_stripes": bool(rng.random() < 0.35),
        "wall_period": float(rng.uniform(5, 14)),
        "horizon": float(rng.uniform(0.62, 0.82)) if rng.random() < 0.6 else None,
        "table": _muted(rng, 0.3, 0.7, (0.2, 0.5)),
    }
    aspect, _ = _SHAPES[kind]
    long_side = float(rng.uniform(*cfg.product_scale)) * size
    w, h = (long_side, long_side / aspect) if aspect >= 1 else (long_side * aspect, long_side)
    m = 2.0
    x0 = float(rng.uniform(m, max(m, size - w - m)))
    y0 = float(rng.uniform(m, max(m, size - h - m)))
    product = {"box": [x0, y0, w, h], "flip": bool(rng.random() < 0.5),
               "tex": _tex_params(rng, max(w, h))}
    pbox = (x0, y0, x0 + w, y0 + h)
    avoid = [pbox]

    decoy = None
    if rng.random() < cfg.decoy_rate:
        r = float(rng.uniform(*cfg.decoy_scale)) * size / 2
        cx, cy = _place(rng, size, r, avoid)
        decoy = {"at": [cx, cy, r], "radii": rng.uniform(0.65, 1.0, size=9).round(4).tolist(),
                 "tex": _tex_params(rng, 2 * r * 2.2)}
        avoid.append((cx - r, cy - r, cx + r, cy + r))
    props = []
    for _ in range(int(rng.integers(cfg.n_props[0], cfg.n_props[1] + 1))):
        r = float(rng.uniform(*cfg.prop_scale)) * size / 2
        cx, cy = _place(rng, size, r, avoid)
        kind_p = _PROP_KINDS[int(rng.integers(len(_PROP_KINDS)))]
        props.append({
            "kind": kind_p, "at": [cx, cy, r],
            "colour": [int(x) for x in rng.integers(30, 230, size=3)],
            "leaves": [[float(a), float(b)] for a, b in rng.uniform(-0.5, 0.5, size=(4, 2))
                       + np.array([0.0, -0.5])],
            "spines": rng.integers(30, 230, size=(3, 3)).tolist(),
            "radii": rng.uniform(0.55, 1.0, size=8).round(4).tolist(),
        })
    corners = rng.permutation(4)
    sticker_spec = None
    if sticker:
        r = 0.09 * size
        k = int(corners[0])
        sticker_spec = {"at": [r + 2 if k % 2 == 0 else size - r - 2,
                               r + 2 if k < 2 else size - r - 2, r]}
    tag = None
    if rng.random() < cfg.price_tag_rate:
        tw, th = 0.36 * size, 0.13 * size
        k = int(corners[1])
        tx = float(rng.uniform(1, 0.12 * size)) if k % 2 == 0 else size - tw - float(
            rng.uniform(1, 0.12 * size))
        ty = float(rng.uniform(1, 0.12 * size)) if k < 2 else size - th - float(
            rng.uniform(1, 0.12 * size))
        tag = {"box": [tx, ty, tw, th]}
    watermark = None
    if rng.random() < cfg.watermark_rate:
        px = float(rng.uniform(0.1, 0.14)) * size
        watermark = {"text": _WATERMARKS[int(rng.integers(len(_WATERMARKS)))], "px": px,
                     "at": [float(rng.uniform(0.02, 0.45) * size),
                            float(rng.uniform(0.1, 0.85) * size)],
                     "angle": float(rng.choice([0.0, 0.0, 20.0, -20.0])),
                     "colour": [255, 255, 255] if rng.random() < 0.5 else [20, 20, 20],
                     "alpha": float(rng.uniform(0.35, 0.55))}
    return _Spec(kind, colour, pattern, price, bg, product, props, decoy, sticker_spec, tag,
                 watermark)


# ---- users and interactions -----------------------------------------------------------------
def _interactions(cfg: ShopConfig, attrs: np.ndarray, popularity: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sample tastes and interactions. Returns ``tastes, users, items, timestamps``."""
    rng = np.random.default_rng([cfg.seed, 2])
    sizes = (cfg.n_kinds, cfg.n_colours, cfg.n_patterns)
    blocks = []
    for n, w in zip(sizes, cfg.attribute_weights, strict=True):
        z = rng.standard_normal((cfg.n_users, n))
        z -= z.mean(axis=1, keepdims=True)
        blocks.append(cfg.taste_strength * w * z)
    tastes = np.concatenate(blocks, axis=1).astype(np.float32)  # [U, V]
    onehot = np.zeros((cfg.n_items, sum(sizes)), dtype=np.float32)
    offsets = np.cumsum((0,) + sizes[:-1])
    for a in range(3):
        onehot[np.arange(cfg.n_items), offsets[a] + attrs[:, a]] = 1.0
    util = tastes.astype(np.float64) @ onehot.T  # [U, I]
    util -= util.max(axis=1, keepdims=True)
    p_taste = np.exp(util)
    p_taste /= p_taste.sum(axis=1, keepdims=True)
    p = (1 - cfg.popularity_share) * p_taste + cfg.popularity_share * popularity[None, :]
    lo, hi = cfg.interactions_per_user
    counts = rng.integers(lo, hi + 1, size=cfg.n_users)
    # Sampling without replacement = top-k of log p + Gumbel noise (all users at once).
    keys = np.log(np.maximum(p, 1e-300)) + rng.gumbel(size=p.shape)
    order = np.argsort(-keys, axis=1, kind="stable")
    users, items, times = [], [], []
    for u in range(cfg.n_users):
        chosen = order[u, : counts[u]]
        chosen = chosen[rng.permutation(len(chosen))]  # the time order is unrelated to taste
        ts = np.sort(rng.integers(_T0, _T0 + _SPAN, size=len(chosen)))
        users.append(np.full(len(chosen), u))
        items.append(chosen)
        times.append(ts)
    return tastes, np.concatenate(users), np.concatenate(items), np.concatenate(times)


def _chronological_split(users: np.ndarray, times: np.ndarray, shares: tuple[float, float, float]
                         ) -> np.ndarray:
    """Per user, the earliest interactions train, then valid, then test.

    Split sizes follow :func:`befa_viz.data.prepare.prepare_interactions` (round half up, at
    least one valid/test when its share is > 0, at least one training interaction). Ties in time
    keep the sampling order. We split here rather than call ``prepare_interactions`` because that
    renumbers items and drops those without interactions, which would break the alignment of
    item indices with the images and the ground truth.
    """
    split = np.zeros(len(users), dtype=np.int8)
    order = np.lexsort((np.arange(len(users)), times, users))
    u_sorted = users[order]
    starts = np.flatnonzero(np.r_[True, u_sorted[1:] != u_sorted[:-1]])
    n = np.diff(np.r_[starts, len(users)])
    _, rv, rt = shares
    eps = 1e-9
    n_valid = np.floor(n * rv + 0.5 + eps).astype(np.int64)
    n_test = np.floor(n * rt + 0.5 + eps).astype(np.int64)
    if rv > 0:
        n_valid = np.maximum(n_valid, 1)
    if rt > 0:
        n_test = np.maximum(n_test, 1)
    over = np.maximum(0, n_valid + n_test - (n - 1))  # keep >= 1 training interaction
    take = np.minimum(over, n_test - int(rt > 0))
    n_test -= take
    n_valid -= np.minimum(over - take, n_valid - int(rv > 0))
    pos = np.arange(len(users)) - np.repeat(starts, n)  # position within the user's history
    n_train = np.repeat(n - n_valid - n_test, n)
    split[order] = np.where(pos < n_train, 0, np.where(pos < n_train + np.repeat(n_valid, n), 1, 2))
    return split


# ---- deterministic writers ------------------------------------------------------------------
def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Like ``np.savez_compressed`` but with fixed zip timestamps, so equal input → equal bytes."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, arr in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue())


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=1, sort_keys=True) + "\n")


# ---- item draws shared by generate_shop and render_item ------------------------------------
@dataclass(frozen=True, eq=False)
class _Draws:
    """Item-level draws from the shop's first random stream."""

    kinds: tuple[str, ...]
    colours: list[str]
    patterns: tuple[str, ...]
    attrs: np.ndarray  # [I, 3] value index of kind, colour, pattern
    prices: np.ndarray  # [I]
    popularity: np.ndarray  # [I], sums to 1
    sticker: np.ndarray  # [I] bool


def _draws(cfg: ShopConfig) -> _Draws:
    rng = np.random.default_rng([cfg.seed, 1])
    attrs = np.stack([rng.integers(cfg.n_kinds, size=cfg.n_items),
                      rng.integers(cfg.n_colours, size=cfg.n_items),
                      rng.integers(cfg.n_patterns, size=cfg.n_items)], axis=1)
    prices = np.round(np.exp(rng.normal(3.3, 0.6, size=cfg.n_items))).clip(3, 500) - 0.01
    pop = np.exp(cfg.popularity_sigma * rng.standard_normal(cfg.n_items))
    # The sticker goes on the items that rank highest on rho * z(log popularity) + noise.
    n_sticker = int(round(cfg.sticker_rate * cfg.n_items))
    zpop = np.log(pop)
    zpop = (zpop - zpop.mean()) / (zpop.std() + 1e-12)
    rho = cfg.prop_popularity_correlation
    score = rho * zpop + math.sqrt(max(0.0, 1 - rho * rho)) * rng.standard_normal(cfg.n_items)
    sticker = np.zeros(cfg.n_items, dtype=bool)
    sticker[np.argsort(-score, kind="stable")[:n_sticker]] = True
    return _Draws(KINDS[: cfg.n_kinds], list(COLOURS)[: cfg.n_colours],
                  PATTERNS[: cfg.n_patterns], attrs, prices, pop / pop.sum(), sticker)


def _make_item(cfg: ShopConfig, d: _Draws, i: int
               ) -> tuple[_Spec, str, list[int], str, list[int]]:
    """Item ``i``'s spec and texts, from its own random stream (so it can be re-rendered alone)."""
    irng = np.random.default_rng([cfg.seed, 3, i])
    kind, colour = d.kinds[d.attrs[i, 0]], d.colours[d.attrs[i, 1]]
    pattern, price = d.patterns[d.attrs[i, 2]], float(d.prices[i])
    title, tl, text, dl = compose_text(kind, colour, pattern, price, irng, cfg.n_filler)
    spec = _item_spec(cfg, irng, kind, colour, pattern, price, bool(d.sticker[i]))
    return spec, title, tl, text, dl


# ---- public API -----------------------------------------------------------------------------
def render_item(item_idx: int, *, only: tuple[str, ...] | None = None, **knobs: Any
                ) -> tuple[np.ndarray, np.ndarray]:
    """Re-render item ``item_idx`` of the shop made with ``knobs``, optionally only some layers.

    Rendering only the product (``only=("product",)``) on a white canvas gives the product's
    full drawn shape, e.g. for a clean insertion baseline or to check the masks.

    Args:
        item_idx: Item index in the shop.
        only: Layers to draw, from ``MASK_NAMES`` plus ``"background"``; ``None`` draws all
            (the image written by :func:`generate_shop`).
        **knobs: The shop's knobs (as given to :func:`generate_shop`).

    Returns:
        ``(image [H, W, 3] uint8, labels [H, W] uint8)``: label 0 is background, ``k + 1`` is
        ``MASK_NAMES[k]``; each pixel has the label of the layer drawn last.

    Example:
        >>> img, labels = render_item(0, only=("product",), n_items=50, image_size=32)
        >>> img.shape, bool((labels == 1 + MASK_NAMES.index("product")).any())
        ((32, 32, 3), True)
    """
    cfg = ShopConfig.from_knobs(**knobs)
    if isinstance(item_idx, bool) or not 0 <= int(item_idx) < cfg.n_items:
        raise DataError(f"Item index {item_idx!r} is outside 0..{cfg.n_items - 1}.")
    if only is not None:
        bad = [o for o in only if o not in MASK_NAMES + ("background",)]
        if bad:
            raise ConfigError(f"render_item: unknown layer {bad[0]!r}; accepted: "
                              f"{', '.join(MASK_NAMES + ('background',))}.")
    spec = _make_item(cfg, _draws(cfg), int(item_idx))[0]
    return _render(spec, cfg.image_size, cfg.clutter, only)


def generate_shop(out_dir: str | os.PathLike[str], *, progress: bool = False,
                  **knobs: Any) -> RecDataset:
    """Generate the synthetic shop into ``out_dir`` and return it as a loaded dataset.

    The folder is written atomically (replacing an existing one) and holds a normal befa-viz
    dataset (``dataset.json``, ``items.csv``, ``interactions.csv``, ``users.csv``), the images
    in ``images/`` (paths in ``items.csv`` are relative to the folder, so it can be moved), the
    ground truth in ``ground_truth/`` and ``generator.json`` (see the module docstring).

    Args:
        out_dir: Destination folder.
        progress: Show a progress bar while rendering.
        **knobs: Any field of :class:`ShopConfig`, for example ``n_items=400``,
            ``taste_strength=1.5``, ``decoy_rate=0.5``, ``prop_popularity_correlation=0.8``.

    Returns:
        The dataset, loaded back from ``out_dir``.

    Raises:
        ConfigError: If a knob is unknown or out of range (the message names it).

    Example:
        >>> import tempfile
        >>> ds = generate_shop(tempfile.mkdtemp() + "/s", n_items=12, n_users=5, image_size=48,
        ...                    interactions_per_user=(4, 6))
        >>> ds.n_items, ds.n_users, ds.catalog.image(0).size
        (12, 5, (48, 48))
    """
    cfg = ShopConfig.from_knobs(**knobs)
    out_dir = Path(out_dir)
    size = cfg.image_size
    d = _draws(cfg)
    kinds, colours, patterns = d.kinds, d.colours, d.patterns
    attrs, prices, popularity, sticker = d.attrs, d.prices, d.popularity, d.sticker

    item_ids = [f"i{i:04d}" for i in range(cfg.n_items)]
    titles, texts, token_gt = [], [], {}
    masks = {name: np.zeros((cfg.n_items, size, size), dtype=bool) for name in MASK_NAMES}
    has_decoy = np.zeros(cfg.n_items, dtype=bool)
    iterator: Any = range(cfg.n_items)
    if progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, desc="rendering shop", unit="item")

    from PIL import Image

    with atomic_dir(out_dir) as tmp:
        (tmp / "images").mkdir()
        (tmp / "ground_truth").mkdir()
        for i in iterator:
            spec, title, tl, text, dl = _make_item(cfg, d, i)
            img, labels = _render(spec, size, cfg.clutter)
            for name in MASK_NAMES:
                masks[name][i] = labels == _LABEL[name]
            has_decoy[i] = spec.decoy is not None
            Image.fromarray(img).save(tmp / "images" / f"{item_ids[i]}.png", format="PNG",
                                      compress_level=3)
            titles.append(title)
            texts.append(text)
            token_gt[item_ids[i]] = {
                field_name: {"tokens": [t for t, _, _ in word_tokens(s)],
                             "spans": [[a, b] for _, a, b in word_tokens(s)], "labels": lab}
                for field_name, s, lab in (("title", title, tl), ("text", text, dl))
            }

        tastes, users, items, times = _interactions(cfg, attrs, popularity)
        split = _chronological_split(users, times, cfg.split)
        order = np.lexsort((times, users))  # rows by user, then time
        user_ids = [f"u{u:04d}" for u in range(cfg.n_users)]
        inter = Interactions(users[order], items[order], split[order], cfg.n_users,
                             cfg.n_items, timestamp=times[order], user_ids=user_ids)
        catalog = Catalog(item_ids, titles, texts,
                          [f"images/{iid}.png" for iid in item_ids])  # relative to the folder
        info = {"source": "befa_viz.data.synth.generate_shop", "generator": cfg.to_dict(),
                "generator_version": GENERATOR_VERSION, "ground_truth": "ground_truth/"}
        ds = RecDataset(cfg.name, catalog, inter, info)
        # RecDataset.save writes a folder atomically; write into a sub-folder, then move up.
        ds.save(tmp / "_dataset")
        for f in sorted((tmp / "_dataset").iterdir()):
            os.replace(f, tmp / f.name)
        shutil.rmtree(tmp / "_dataset")

        gt = tmp / "ground_truth"
        _write_npz(gt / "masks.npz", masks)
        _write_json(gt / "tokens.json", {"tokenizer": "befa_viz.data.synth_text.word_tokens",
                                         "items": token_gt})
        pd.DataFrame({
            "item_id": item_ids,
            "kind": [kinds[k] for k in attrs[:, 0]],
            "colour": [colours[k] for k in attrs[:, 1]],
            "pattern": [patterns[k] for k in attrs[:, 2]],
            "price": [f"{p:.2f}" for p in prices],
            "popularity": [f"{p:.6g}" for p in popularity],
            "sticker": sticker.astype(int), "decoy": has_decoy.astype(int),
        }).to_csv(gt / "attributes.csv", index=False, lineterminator="\n")
        np.save(gt / "tastes.npy", tastes)
        _write_json(tmp / "generator.json", {
            "generator": "befa_viz.data.synth.generate_shop",
            "version": GENERATOR_VERSION,
            "knobs": cfg.to_dict(),
            "seed": cfg.seed,
            "vocabulary": {"kind": list(kinds), "colour": colours, "pattern": list(patterns)},
            "taste_columns": [f"kind={k}" for k in kinds] + [f"colour={c}" for c in colours]
            + [f"pattern={p}" for p in patterns],
            "masks": {"file": "ground_truth/masks.npz", "names": list(MASK_NAMES),
                      "relevant": ["product"]},
            "tokens": {"file": "ground_truth/tokens.json",
                       "pattern": "befa_viz.data.synth_text.TOKEN_PATTERN"},
        })
    log.info("Synthetic shop %r: %d items, %d users, %d interactions → %s", cfg.name,
             cfg.n_items, cfg.n_users, inter.n_interactions, out_dir)
    return RecDataset.load(out_dir)


def load_ground_truth(dataset_dir: str | os.PathLike[str]) -> GroundTruth:
    """Read the ground truth written by :func:`generate_shop`
    (:func:`befa_viz.data.truth.load_shop_truth`).

    Raises:
        DataError: If ``dataset_dir`` has no synthetic-shop ground truth.

    Example:
        >>> import tempfile
        >>> d = tempfile.mkdtemp() + "/s"
        >>> _ = generate_shop(d, n_items=6, n_users=3, image_size=32, interactions_per_user=(3, 4))
        >>> load_ground_truth(d).masks["product"].shape
        (6, 32, 32)
    """
    return load_shop_truth(dataset_dir)
