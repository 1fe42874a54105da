"""Attribution scores: drift, omission, faithfulness and localisation (numpy only).

Definitions used throughout (maps are 2-D arrays of the same shape; signed maps are taken in
absolute value, since attribution signs cancel about half and half):

* **Top-q mass region** of a non-negative map M, ``region(M, q)``: the pixels whose value is at
  least t, where t is the largest value such that those pixels hold at least a share q of M's
  total mass. Ties at t are all included, so a binary mask's region is the mask itself and a
  constant map's region is everything.
* **Relevant region** of a relevance map R: R itself if it is boolean (a ground-truth mask),
  else ``region(|R|, q)``.
* **drift(A, R, q)** = Σ_{p ∈ region(A,q) \\ rel(R)} |A|_p / Σ_{p ∈ region(A,q)} |A|_p — the
  share of the heatmap's main mass (its own top-q region) that falls where R says irrelevant.
  Restricting A to its top-q region ignores the diffuse low-level tail every gradient map has.
* **omission(A, R, q)** = Σ_{p ∈ rel(R) \\ region(A,q)} w_p / Σ_{p ∈ rel(R)} w_p, with w = 1 for
  a mask and w = |R| for a continuous R — the share of the relevant mass the heatmap's main
  region leaves uncovered.

Both lie in [0, 1]; A equal to R (or to R's mask) gives 0/0, A disjoint from R gives 1/1, and
moving A's mass from inside R to outside raises both. An all-zero A or an empty R gives NaN
(with a warning). The default q = 0.5 (half of the mass) is recorded by callers.

Faithfulness: **deletion / insertion AUC** normalise the perturbation curve by f(x) − f(b).
That quotient is only meaningful while the curve stays near its two ends; when f(x) − f(b) is
small next to how far the curve strays, the AUC is NaN with a warning rather than a number
far outside [0, 1] (see :func:`perturbation_auc`, ``min_resolution``).

**Content box.** An image encoder in ``"pad"`` mode (:mod:`befa_viz.encoders.base`) places a
portrait photo in a box ``(top, left, height, width)`` of its square input and fills the rest
with a pad; attributions record it in ``params["content_box"]``. Every score takes ``box=``
and reads only the pixels inside it: the region scores (drift, omission, mass in mask, pointing,
Spearman, margins) are computed on the maps cropped to the box, so a map whose mass lies all in
the pad scores exactly as an all-zero map (NaN); the perturbation curves delete / insert only
the box's pixels (the pad keeps the input's values all along) and normalise by their number.
``box=None`` is the whole map. A ground-truth mask drawn at the photo's own size is placed into
the map's frame with :func:`fit_to_box`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence

import numpy as np

__all__ = [
    "crop_box",
    "deletion_auc",
    "drift",
    "drift_omission",
    "fit_to_box",
    "insertion_auc",
    "localisation_margin",
    "mass_in_mask",
    "omission",
    "perturbation_auc",
    "pointing_game",
    "rank_order",
    "relevant_region",
    "resize_map",
    "spearman",
    "top_mass_region",
]


def _map(a: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim < 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty array; got shape {arr.shape}.")
    if arr.dtype != bool and not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf values.")
    return arr


def _same_shape(a: np.ndarray, b: np.ndarray, what: str) -> None:
    if a.shape != b.shape:
        raise ValueError(
            f"{what}: shapes differ, {a.shape} vs {b.shape}; resize one with resize_map(m, shape)."
        )


BoxLike = Sequence[int]


def _box(box: BoxLike | None, shape: tuple[int, ...], what: str) -> tuple[int, int, int, int] | None:
    """A checked ``(top, left, height, width)`` inside the last two dimensions of ``shape``."""
    if box is None:
        return None
    b = tuple(int(v) for v in box)
    if len(b) != 4:
        raise ValueError(f"{what}: box must be (top, left, height, width); got {tuple(box)}.")
    top, left, h, w = b
    if len(shape) < 2 or h < 1 or w < 1 or top < 0 or left < 0 or top + h > shape[-2] \
            or left + w > shape[-1]:
        raise ValueError(f"{what}: box {b} does not lie inside the map of shape {shape}; the "
                         "box is in the map's pixels (params['content_box']).")
    return top, left, h, w


def crop_box(m: np.ndarray, box: BoxLike | None) -> np.ndarray:
    """The part of a map (its last two dimensions) inside ``box``; the map itself for ``None``.

    Example:
        >>> crop_box(np.arange(16).reshape(4, 4), (1, 1, 2, 2)).tolist()
        [[5, 6], [9, 10]]
    """
    arr = np.asarray(m)
    b = _box(box, arr.shape, "crop_box")
    if b is None:
        return arr
    top, left, h, w = b
    return arr[..., top: top + h, left: left + w]


def fit_to_box(m: np.ndarray, shape: tuple[int, int], box: BoxLike | None = None) -> np.ndarray:
    """Place a map or mask given at the photo's own size into a map frame of ``shape``.

    The map is resized (bilinear for numbers, nearest for boolean masks) to the box and put
    there; outside the box (the pad) it is 0 / False. Without a box it is resized to ``shape``.

    Args:
        m: ``[h, w]`` map or mask at the photo's aspect (any resolution).
        shape: The attribution map's ``(H, W)``.
        box: ``(top, left, height, width)`` of the photo in that map.

    Returns:
        ``[H, W]`` map (boolean stays boolean).

    Example:
        >>> mask = np.ones((6, 4), bool)
        >>> fit_to_box(mask, (6, 6), (0, 1, 6, 4)).sum(axis=0).tolist()
        [0, 6, 6, 6, 6, 0]
    """
    arr = np.asarray(m)
    if arr.ndim != 2:
        raise ValueError(f"fit_to_box takes a 2-D map; got shape {arr.shape}.")
    full = (int(shape[0]), int(shape[1]))
    b = _box(box, full, "fit_to_box")
    if b is None or b == (0, 0) + full:
        return arr if arr.shape == full else resize_map(arr, full)
    top, left, h, w = b
    out = np.zeros(full, dtype=bool if arr.dtype == bool else np.float64)
    out[top: top + h, left: left + w] = arr if arr.shape == (h, w) else resize_map(arr, (h, w))
    return out


def _check_q(q: float) -> None:
    if not 0 < q <= 1:
        raise ValueError(f"q must be in (0, 1]; got {q}.")


def top_mass_region(m: np.ndarray, q: float = 0.5) -> np.ndarray:
    """Boolean region of the largest values holding at least a share ``q`` of the mass.

    Args:
        m: Map; taken in absolute value.
        q: Mass share in (0, 1].

    Returns:
        Boolean array shaped like ``m`` (all False for an all-zero map).

    Example:
        >>> top_mass_region(np.array([4.0, 3.0, 2.0, 1.0]), 0.5).tolist()
        [True, True, False, False]
    """
    _check_q(q)
    a = np.abs(_map(m, "map").astype(np.float64))
    total = a.sum()
    if total <= 0:
        return np.zeros(a.shape, dtype=bool)
    flat = np.sort(a.ravel())[::-1]
    cum = np.cumsum(flat)
    k = int(np.searchsorted(cum, q * total * (1 - 1e-12)))  # first index reaching q of the mass
    t = flat[min(k, flat.size - 1)]
    return a >= t


def relevant_region(r: np.ndarray, q: float = 0.5) -> np.ndarray:
    """The relevant region of a relevance map: a boolean mask as is, else its top-q region."""
    r = _map(r, "relevance map")
    return r.copy() if r.dtype == bool else top_mass_region(r, q)


def _relevance_weights(r: np.ndarray) -> np.ndarray:
    return np.ones(r.shape) if r.dtype == bool else np.abs(r.astype(np.float64))


def drift(a: np.ndarray, r: np.ndarray, q: float = 0.5, *, box: BoxLike | None = None) -> float:
    """Share of the heatmap's top-q mass that lies outside R's relevant region.

    Args:
        a: Heatmap (absolute value is used).
        r: Relevance: boolean mask, or a continuous map (binarised at its top-q mass region).
        q: Mass share defining both top regions.
        box: Content box: only the pixels inside it are scored (see the module docstring).

    Returns:
        Drift in [0, 1] (NaN for an all-zero heatmap or an empty relevant region).

    Example:
        >>> m = np.zeros((4, 4), bool); m[:2] = True
        >>> drift(m.astype(float), m), drift((~m).astype(float), m)
        (0.0, 1.0)
    """
    a, r = _map(a, "heatmap"), _map(r, "relevance map")
    _same_shape(a, r, "drift")
    a, r = crop_box(a, box), crop_box(r, box)
    w = np.abs(a.astype(np.float64))
    reg_a = top_mass_region(w, q)
    rel = relevant_region(r, q)
    inside = w[reg_a].sum()
    if inside <= 0 or not rel.any():
        warnings.warn("drift is undefined for an all-zero heatmap or an empty relevance region; "
                      "returning NaN.", stacklevel=2)
        return float("nan")
    return float(w[reg_a & ~rel].sum() / inside)


def omission(a: np.ndarray, r: np.ndarray, q: float = 0.5, *,
             box: BoxLike | None = None) -> float:
    """Share of R's relevant mass that the heatmap's top-q region leaves uncovered.

    Args:
        a: Heatmap (absolute value is used).
        r: Relevance: boolean mask (each pixel weighs 1), or a continuous map (its top-q mass
            region, pixels weighted by |R|).
        q: Mass share defining both top regions.
        box: Content box: only the pixels inside it are scored.

    Returns:
        Omission in [0, 1] (NaN for an all-zero heatmap or an empty relevant region).

    Example:
        >>> m = np.zeros((4, 4), bool); m[:2] = True
        >>> half = np.zeros((4, 4)); half[0] = 1.0
        >>> omission(half, m)
        0.5
    """
    a, r = _map(a, "heatmap"), _map(r, "relevance map")
    _same_shape(a, r, "omission")
    a, r = crop_box(a, box), crop_box(r, box)
    reg_a = top_mass_region(a, q)
    rel = relevant_region(r, q)
    w = _relevance_weights(r)
    total = w[rel].sum()
    if total <= 0 or not np.abs(a).sum() > 0:
        warnings.warn("omission is undefined for an all-zero heatmap or an empty relevance "
                      "region; returning NaN.", stacklevel=2)
        return float("nan")
    return float(w[rel & ~reg_a].sum() / total)


def drift_omission(a: np.ndarray, r: np.ndarray, q: float = 0.5, *,
                   box: BoxLike | None = None) -> dict[str, float]:
    """Both scores and the definition's parameter, as a JSON-able dict."""
    return {"drift": drift(a, r, q, box=box), "omission": omission(a, r, q, box=box),
            "q": float(q)}


def mass_in_mask(a: np.ndarray, mask: np.ndarray, *, box: BoxLike | None = None) -> float:
    """Share of |A|'s mass inside a boolean mask (NaN for an all-zero map).

    Args:
        a: Heatmap.
        mask: Boolean mask shaped like ``a``.
        box: Content box: the share of the mass inside it (pad mass counts nowhere).

    Example:
        >>> mass_in_mask(np.array([1.0, -3.0]), np.array([False, True]))
        0.75
    """
    a, mask = _map(a, "heatmap"), np.asarray(mask, dtype=bool)
    _same_shape(a, mask, "mass_in_mask")
    a, mask = crop_box(a, box), crop_box(mask, box)
    w = np.abs(a.astype(np.float64))
    s = w.sum()
    return float(w[mask].sum() / s) if s > 0 else float("nan")


def pointing_game(a: np.ndarray, mask: np.ndarray, tolerance: int = 0, *,
                  box: BoxLike | None = None) -> bool:
    """Whether |A|'s maximum falls in the mask (or within ``tolerance`` pixels of it).

    Zhang et al., "Top-down Neural Attention by Excitation Backprop", ECCV 2016
    (arXiv:1608.00507). Ties: the first maximum in row-major order. With ``box`` the maximum
    is taken inside the box only.
    """
    a, mask = _map(a, "heatmap"), np.asarray(mask, dtype=bool)
    _same_shape(a, mask, "pointing_game")
    a, mask = crop_box(a, box), crop_box(mask, box)
    idx = np.unravel_index(int(np.argmax(np.abs(a))), a.shape)
    if tolerance <= 0:
        return bool(mask[idx])
    window = tuple(slice(max(0, i - tolerance), i + tolerance + 1) for i in idx)
    return bool(mask[window].any())


def _rankdata(x: np.ndarray) -> np.ndarray:
    """Average ranks (ties share the mean rank), like scipy.stats.rankdata."""
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(x.size, dtype=np.float64)
    ranks[order] = np.arange(1, x.size + 1)
    _, inv, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.bincount(inv, weights=ranks)
    return sums[inv] / counts[inv]


def spearman(a: np.ndarray, b: np.ndarray, *, box: BoxLike | None = None) -> float:
    """Spearman rank correlation of two maps (flattened; NaN if either is constant).

    With ``box`` (2-D maps of one shape) only the pixels inside it are correlated.

    Example:
        >>> spearman(np.array([1.0, 2, 3]), np.array([10.0, 20, 30]))
        1.0
    """
    if box is not None:
        a, b = _map(a, "map a"), _map(b, "map b")
        _same_shape(a, b, "spearman")
        a, b = crop_box(a, box), crop_box(b, box)
    a, b = _map(a, "map a").astype(np.float64).ravel(), _map(b, "map b").astype(np.float64).ravel()
    if a.size != b.size:
        raise ValueError(f"spearman: maps have {a.size} and {b.size} entries.")
    ra, rb = _rankdata(a), _rankdata(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = np.sqrt((ra**2).sum() * (rb**2).sum())
    return float((ra * rb).sum() / den) if den > 0 else float("nan")


def localisation_margin(a: np.ndarray, mask: np.ndarray,
                        controls: Mapping[str, np.ndarray] | Sequence[np.ndarray], *,
                        box: BoxLike | None = None) -> float:
    """Mass-in-mask of A minus the best mass-in-mask among control maps.

    Controls are what a map must beat to count as evidence (DESIGN.md): the random-target
    map, the model-randomised map, the model-free |x − blur(x)| map. A positive margin means A
    localises the mask better than every control.

    Args:
        a: Heatmap.
        mask: Boolean ground-truth mask.
        controls: Control maps (a mapping name → map, or a sequence).
        box: Content box shared by all maps (see the module docstring).

    Returns:
        ``mass_in_mask(a) − max_c mass_in_mask(c)`` in [−1, 1].
    """
    maps = list(controls.values()) if isinstance(controls, Mapping) else list(controls)
    if not maps:
        raise ValueError("localisation_margin needs at least one control map.")
    return mass_in_mask(a, mask, box=box) - max(mass_in_mask(c, mask, box=box) for c in maps)


def resize_map(m: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize a 2-D map: bilinear for numbers, nearest for boolean masks.

    Args:
        m: ``[H, W]`` map or mask.
        shape: Target ``(h, w)``.

    Returns:
        The resized map (boolean stays boolean).
    """
    m = np.asarray(m)
    if m.ndim != 2:
        raise ValueError(f"resize_map takes a 2-D map; got shape {m.shape}.")
    h, w = m.shape
    th, tw = int(shape[0]), int(shape[1])
    ys = (np.arange(th) + 0.5) * h / th - 0.5
    xs = (np.arange(tw) + 0.5) * w / tw - 0.5
    if m.dtype == bool:
        yi = np.clip(np.round(ys).astype(int), 0, h - 1)
        xi = np.clip(np.round(xs).astype(int), 0, w - 1)
        return m[np.ix_(yi, xi)]
    ys, xs = np.clip(ys, 0, h - 1), np.clip(xs, 0, w - 1)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    wy, wx = (ys - y0)[:, None], (xs - x0)[None, :]
    f = m.astype(np.float64)
    top = f[np.ix_(y0, x0)] * (1 - wx) + f[np.ix_(y0, x1)] * wx
    bot = f[np.ix_(y1, x0)] * (1 - wx) + f[np.ix_(y1, x1)] * wx
    return top * (1 - wy) + bot * wy


def rank_order(m: np.ndarray, seed: int = 0) -> np.ndarray:
    """Flat pixel indices from the largest to the smallest value (ties broken at random)."""
    v = np.asarray(m, dtype=np.float64).ravel()
    tie = np.random.default_rng(seed).random(v.size)
    return np.lexsort((tie, -v))


def _perturbation_curve(
    f: Callable[[np.ndarray], np.ndarray], x: np.ndarray, baseline: np.ndarray,
    attr_map: np.ndarray, n_steps: int, batch_size: int, insert: bool, seed: int,
    box: BoxLike | None = None,
) -> tuple[np.ndarray, float, float]:
    x = np.asarray(x, dtype=np.float32)
    base = np.broadcast_to(np.asarray(baseline, dtype=np.float32), x.shape)
    m = np.asarray(attr_map)
    if x.shape[-m.ndim:] != m.shape:
        raise ValueError(
            f"The map {m.shape} must match the input's trailing dimensions {x.shape}; resize it "
            f"with resize_map."
        )
    if n_steps < 1 or batch_size < 1:
        raise ValueError(f"n_steps and batch_size must be >= 1; got {n_steps}, {batch_size}.")
    b = _box(box, m.shape, "perturbation curve")
    if b is None:
        n_pix = m.size
        order = rank_order(m, seed)
        rank: np.ndarray = np.empty(n_pix, dtype=np.int64)
        rank[order] = np.arange(n_pix)
        rank = rank.reshape(m.shape)
    else:  # rank the box's pixels only; the pad (rank n_pix) is never moved
        inner = crop_box(m, b)
        n_pix = inner.size
        order = rank_order(inner, seed)
        flat: np.ndarray = np.empty(n_pix, dtype=np.int64)
        flat[order] = np.arange(n_pix)
        rank = np.full(m.shape, n_pix, dtype=np.int64)
        top, left, h, w = b
        rank[..., top: top + h, left: left + w] = flat.reshape(inner.shape)
        pad = (rank == n_pix).reshape((1,) * (x.ndim - m.ndim) + m.shape)
        base = np.where(pad, x, base)  # the pad is x's own at both ends of both curves
    counts = np.round(np.linspace(0, n_pix, n_steps + 1)).astype(np.int64)
    scores = []
    for start in range(0, n_steps + 1, batch_size):
        ks = counts[start: start + batch_size]
        moved = rank[None] < ks.reshape((-1,) + (1,) * m.ndim)  # [b, *map]: pixels changed
        moved = moved.reshape((len(ks),) + (1,) * (x.ndim - m.ndim) + m.shape)
        src, dst = (base, x) if insert else (x, base)
        batch = np.where(moved, dst[None], src[None])
        scores.append(np.asarray(f(batch), dtype=np.float64).reshape(-1))
    curve = np.concatenate(scores)
    return curve, float(curve[0 if not insert else -1]), float(curve[-1 if not insert else 0])


#: Default smallest resolution (see :func:`perturbation_auc`) at which a normalised AUC is
#: reported: finite AUCs then lie in [-1, 2].
MIN_RESOLUTION = 0.5


def _resolution(curve: np.ndarray, fx: float, fb: float) -> float:
    """|f(x) − f(b)| as a share of the curve's whole range (1: the curve stays between them)."""
    lo, hi = min(float(curve.min()), fx, fb), max(float(curve.max()), fx, fb)
    return abs(fx - fb) / (hi - lo) if hi > lo else 0.0


def _normalised_auc(curve: np.ndarray, fx: float, fb: float, name: str,
                    min_resolution: float, stacklevel: int) -> float:
    span = fx - fb
    if abs(span) < 1e-12 * max(1.0, abs(fx)):
        warnings.warn(f"{name}: f(x) equals f(baseline) ({fx:.4g}); the normalised AUC is "
                      f"undefined, returning NaN. Choose another baseline.", stacklevel=stacklevel)
        return float("nan")
    res = _resolution(curve, fx, fb)
    if res < min_resolution:
        warnings.warn(
            f"{name}: f(x) − f(baseline) = {span:.4g} is only {res:.1%} of the range the curve "
            f"covers ({float(curve.min()):.4g} to {float(curve.max()):.4g}), below "
            f"min_resolution={min_resolution:.0%}; normalising by it would measure the curve's "
            "overshoot, not the map (values far outside [0, 1]). Returning NaN; choose a "
            "baseline further from x or read the raw curve (perturbation_auc).",
            stacklevel=stacklevel)
        return float("nan")
    norm = (curve - fb) / span
    return float(np.trapezoid(norm, dx=1.0 / (len(curve) - 1)))


def perturbation_auc(
    f: Callable[[np.ndarray], np.ndarray],
    x: np.ndarray,
    baseline: np.ndarray,
    attr_map: np.ndarray,
    *,
    insert: bool = False,
    n_steps: int = 20,
    batch_size: int = 16,
    seed: int = 0,
    min_resolution: float = MIN_RESOLUTION,
    box: BoxLike | None = None,
) -> dict[str, float]:
    """Deletion (or insertion) curve with its normalised AUC and what the AUC rests on.

    The normalised curve (f(x_k) − f(b)) / (f(x) − f(b)) lies in [0, 1] only while f stays
    between f(b) and f(x) along the path. A target that overshoots (it rises when some pixels
    are deleted, e.g. because the baseline is close to x in target space) leaves it, and when
    f(x) − f(b) is small next to that overshoot the quotient explodes (AUCs of −3 or +18 on
    random toy encoders). The **resolution** ρ = |f(x) − f(b)| / (max − min of the curve and
    both ends) measures this: ρ = 1 for a curve within its ends, and a normalised value lies
    in [1 − 1/ρ, 1/ρ]. Below ``min_resolution`` the AUC is NaN (with a warning), so an
    overshoot is never read as faithfulness; ``raw_auc`` (the curve's mean, in target units)
    and ``f_x`` / ``f_baseline`` are always reported.

    Args:
        f: Batched scalar function: ``[n, *x.shape]`` array → ``[n]`` scores.
        x: One input, e.g. ``[3, H, W]``; the map covers its trailing dimensions.
        baseline: What deleted (not yet inserted) pixels are (broadcast to ``x``).
        attr_map: ``[H, W]`` map ordering the pixels (largest first).
        insert: Insertion curve (the baseline gains x's pixels) instead of deletion.
        n_steps: Curve points minus one.
        batch_size: Perturbed inputs per call of ``f``.
        seed: Tie-breaking between equal map values.
        min_resolution: Smallest ρ in [0, 1] at which the normalised AUC is returned; 0 always
            returns it (except when f(x) = f(b)).
        box: Content box of the map: only its pixels are deleted / inserted (a share
            k/n_steps of them at step k); the pad keeps x's values.

    Returns:
        ``auc`` (normalised; NaN when unresolved), ``raw_auc``, ``resolution``, ``f_x``,
        ``f_baseline``.

    Example:
        >>> f = lambda b: b.reshape(len(b), -1).sum(axis=1)
        >>> r = perturbation_auc(f, np.ones((2, 2)), 0.0, np.ones((2, 2)), n_steps=4)
        >>> r["auc"], r["resolution"], r["f_x"], r["f_baseline"]
        (0.5, 1.0, 4.0, 0.0)
    """
    return _perturbation_auc(f, x, baseline, attr_map, insert, n_steps, batch_size, seed,
                             min_resolution, stacklevel=4, box=box)


def _perturbation_auc(
    f: Callable[[np.ndarray], np.ndarray], x: np.ndarray, baseline: np.ndarray,
    attr_map: np.ndarray, insert: bool, n_steps: int, batch_size: int, seed: int,
    min_resolution: float, stacklevel: int, box: BoxLike | None = None,
) -> dict[str, float]:
    if not 0 <= min_resolution <= 1:
        raise ValueError(f"min_resolution must be in [0, 1]; got {min_resolution}.")
    curve, fx, fb = _perturbation_curve(f, x, baseline, attr_map, n_steps, batch_size, insert,
                                        seed, box)
    name = "insertion_auc" if insert else "deletion_auc"
    return {"auc": _normalised_auc(curve, fx, fb, name, min_resolution, stacklevel),
            "raw_auc": float(np.trapezoid(curve, dx=1.0 / (len(curve) - 1))),
            "resolution": _resolution(curve, fx, fb), "f_x": fx, "f_baseline": fb}


def deletion_auc(
    f: Callable[[np.ndarray], np.ndarray],
    x: np.ndarray,
    baseline: np.ndarray,
    attr_map: np.ndarray,
    n_steps: int = 20,
    batch_size: int = 16,
    seed: int = 0,
    min_resolution: float = MIN_RESOLUTION,
    box: BoxLike | None = None,
) -> float:
    """Normalised area under the deletion curve (Petsiuk et al., RISE, arXiv:1806.07421).

    Pixels are replaced by the baseline in map order (largest first), a share k/n_steps at step
    k; the curve (f(x_k) − f(baseline)) / (f(x) − f(baseline)) runs from 1 to 0 and its
    trapezoid area over [0, 1] is returned. Lower is more faithful. Pass |A| to delete by
    magnitude, A to delete positive evidence first. See :func:`perturbation_auc` for when the
    normalisation is refused (``min_resolution``) and for the raw curve's numbers.

    Args:
        f: Batched scalar function: ``[n, *x.shape]`` array → ``[n]`` scores.
        x: One input, e.g. ``[3, H, W]``; the map covers its trailing dimensions.
        baseline: What deleted pixels become (broadcast to ``x``).
        attr_map: ``[H, W]`` map ordering the pixels.
        n_steps: Curve points minus one.
        batch_size: Perturbed inputs per call of ``f``.
        seed: Tie-breaking between equal map values.
        min_resolution: See :func:`perturbation_auc`.
        box: Content box: only its pixels are deleted (see :func:`perturbation_auc`).

    Returns:
        The normalised AUC (NaN with a warning when f(x) = f(baseline) or the curve overshoots
        its ends by more than ``min_resolution`` allows).
    """
    return _perturbation_auc(f, x, baseline, attr_map, False, n_steps, batch_size, seed,
                             min_resolution, stacklevel=4, box=box)["auc"]


def insertion_auc(
    f: Callable[[np.ndarray], np.ndarray],
    x: np.ndarray,
    baseline: np.ndarray,
    attr_map: np.ndarray,
    n_steps: int = 20,
    batch_size: int = 16,
    seed: int = 0,
    min_resolution: float = MIN_RESOLUTION,
    box: BoxLike | None = None,
) -> float:
    """Normalised area under the insertion curve: the baseline gains x's pixels in map order.

    The curve (f(x_k) − f(baseline)) / (f(x) − f(baseline)) runs from 0 to 1; higher is more
    faithful. Arguments as for :func:`deletion_auc` (with ``box`` the pad keeps x's values
    from the start).
    """
    return _perturbation_auc(f, x, baseline, attr_map, True, n_steps, batch_size, seed,
                             min_resolution, stacklevel=4, box=box)["auc"]
