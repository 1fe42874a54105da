"""Benchmark scoring: maps against ground-truth masks and word labels, with controls (pure numpy)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from befa_viz.errors import DataError

__all__ = ["CHEAP_METHODS", "DEFAULT_METHODS", "DEFAULT_TARGETS", "aggregate", "evidence_map", "random_map", "score_image_maps", "score_text_maps", "sign_test", "token_precision"]


#: Methods benchmarked by default (``ig_smooth`` costs ~8× ``ig``; add it explicitly).
DEFAULT_METHODS = ("ig", "layer_ig", "gradcam", "similarity", "occlusion")
#: Targets benchmarked by default; ``random`` is also the control of every method.
DEFAULT_TARGETS = ("content_focus", "behaviour_alignment", "content_score", "random")
#: Methods cheap enough (one forward/backward pass per map) to run on all ``n_items``; the
#: others run on the ``n_items_expensive`` subset.
CHEAP_METHODS = frozenset({"gradcam", "similarity", "input_x_blur"})
_MODEL_FREE = ("content_focus", "random")
_CONTROL_METHOD = "input_x_blur"
_P_PASS = 0.05
_RANDOM_GRID = 7  # random-map blobs: uniform noise on a 7×7 grid (≈ a CNN's last feature map)
#: Bumped when the scores or the report change, so an old report is not reused.
BENCHMARK_VERSION = 2
_KEY_TARGET_PARAMS = {"random": {"directions": "one per item, seeded by (seed, item index)"}}


def evidence_map(att: Any) -> np.ndarray:
    """The non-negative map the localisation scores use.

    |values| for every method except ``similarity``, whose cosine map is clipped at 0 (a
    location unlike the reference vector is no evidence for it).

    Example:
        >>> from befa_viz.testing import synthetic_attribution
        >>> float(evidence_map(synthetic_attribution(0)).min()) >= 0
        True
    """
    v = np.asarray(att.values, dtype=np.float64)
    return np.clip(v, 0, None) if att.method == "similarity" else np.abs(v)


def random_map(shape: tuple[int, int], seed: int | Sequence[int] = 0,
               grid: int = _RANDOM_GRID) -> np.ndarray:
    """Smooth random blobs: uniform noise on a ``grid``×``grid`` lattice, upsampled bilinearly.

    Example:
        >>> random_map((32, 32), seed=1).shape
        (32, 32)
    """
    from befa_viz.metrics import resize_map

    rng = np.random.default_rng(seed)
    return resize_map(rng.random((grid, grid)), shape)


def sign_test(diffs: Sequence[float] | np.ndarray) -> float:
    """Two-sided exact sign test that the median of ``diffs`` is 0 (zeros dropped).

    Returns:
        The p-value (1.0 with no non-zero difference; NaN entries are ignored).

    Example:
        >>> round(sign_test([1, 2, 3, 4, 5, 6, 7, 8]), 4)
        0.0078
    """
    d = np.asarray(diffs, dtype=np.float64)
    d = d[np.isfinite(d) & (d != 0)]
    n = int(d.size)
    if n == 0:
        return 1.0
    k = int(min((d > 0).sum(), (d < 0).sum()))
    tail = sum(math.comb(n, j) for j in range(k + 1)) / 2.0**n
    return float(min(1.0, 2 * tail))


def _mask_at(mask: np.ndarray, shape: tuple[int, ...], att: Any = None) -> np.ndarray:
    """A ground-truth mask in the frame of a map of ``shape`` (nearest resampling).

    With ``att``'s ``params["content_box"]`` (a padded input, see befa_viz.encoders.base) a
    mask drawn at the photo's aspect is resized into that box and is False on the pad;
    otherwise it is resized to the whole map.
    """
    from befa_viz.metrics import fit_to_box

    m = np.asarray(mask, dtype=bool)
    box = getattr(att, "params", {}).get("content_box") if att is not None else None
    return fit_to_box(m, (int(shape[0]), int(shape[1])), box)


def _small(m: np.ndarray, side: int = 56) -> np.ndarray:
    """Block-average a map to at most ``side``×``side`` (cheap rank correlations)."""
    h, w = m.shape
    fh, fw = max(1, h // side), max(1, w // side)
    h2, w2 = (h // fh) * fh, (w // fw) * fw
    return m[:h2, :w2].reshape(h2 // fh, fh, w2 // fw, fw).mean(axis=(1, 3))


def _mass(e: np.ndarray, mask: np.ndarray) -> float:
    s = e.sum()
    return float(e[mask].sum() / s) if s > 0 else float("nan")


def _image_scores(e: np.ndarray, masks: Mapping[str, np.ndarray], q: float) -> dict[str, Any]:
    """Localisation scores of one evidence map against one item's masks (at ``e``'s size)."""
    from befa_viz.metrics import drift_omission, pointing_game

    product = masks["product"]
    flat = not e.max() - e.min() > 1e-6 * e.max()  # (near-)constant map: no maximum to point
    out: dict[str, Any] = {"mass_in_mask": _mass(e, product), "chance": float(product.mean()),
                           "pointing": float("nan") if flat else float(pointing_game(e, product))}
    with warnings.catch_warnings():  # an all-zero map gives NaN, kept as NaN
        warnings.simplefilter("ignore", UserWarning)
        do = drift_omission(e, product, q)
    out["drift"], out["omission"] = do["drift"], do["omission"]
    decoy = masks.get("decoy")
    if decoy is not None and bool(decoy.any()):
        out["decoy_mass"], out["decoy_chance"] = _mass(e, decoy), float(decoy.mean())
    else:
        out["decoy_mass"], out["decoy_chance"] = float("nan"), float("nan")
    return out


def score_image_maps(
    maps: Sequence[Any],
    masks: Mapping[str, np.ndarray],
    *,
    controls: Mapping[str, Sequence[Any]],
    q: float = 0.5,
    rho_for: Sequence[str] = ("random_target", "input"),
) -> list[dict[str, Any]]:
    """Score image maps of items against their ground-truth masks, next to control maps.

    Args:
        maps: One :class:`~befa_viz.attribution.Attribution` per item (or a 2-D array).
        masks: ``name → bool [n, H, W]``, row j for ``maps[j]``; needs ``"product"``,
            optionally ``"decoy"``. Resized (nearest) to each map's size.
        controls: ``name → one map per item`` (Attributions or arrays), e.g.
            ``{"random_target": ..., "input": ..., "random_map": ...}``; each adds
            ``margin_<name>`` (mass_in_mask minus the control's).
        q: Mass share of the top regions of drift and omission.
        rho_for: Controls that also get ``rho_<name>``, the Spearman correlation with the
            map (both block-averaged to at most 56×56 first, which keeps it cheap).

    Returns:
        One dict per item: ``item_id``, ``mass_in_mask``, ``chance``, ``pointing``, ``drift``,
        ``omission``, ``decoy_mass``, ``decoy_chance``, then the margins and correlations.

    Raises:
        DataError: If the numbers of maps, masks and control maps differ.

    Example:
        >>> m = np.zeros((1, 4, 4), bool); m[0, :2] = True
        >>> good, bad = m[0].astype(float), (~m[0]).astype(float)
        >>> row = score_image_maps([good], {"product": m}, controls={"random": [bad]})[0]
        >>> row["mass_in_mask"], row["margin_random"]
        (1.0, 1.0)
    """
    from befa_viz.metrics import resize_map, spearman

    n = len(maps)
    if len(masks["product"]) != n or any(len(c) != n for c in controls.values()):
        raise DataError(f"score_image_maps: {n} maps, {len(masks['product'])} masks and "
                        f"{[len(c) for c in controls.values()]} control maps; give one per item.")

    def ev(a: Any) -> np.ndarray:
        return evidence_map(a) if hasattr(a, "values") else np.abs(np.asarray(a, np.float64))

    from befa_viz.metrics import crop_box

    rows = []
    for j, att in enumerate(maps):
        e = ev(att)
        item_masks = {k: _mask_at(v[j], e.shape, att) for k, v in masks.items()}
        # scores read the photo only: map, masks and controls cropped to the content box
        box = getattr(att, "params", {}).get("content_box")
        full = e.shape
        e, item_masks = crop_box(e, box), {k: crop_box(v, box) for k, v in item_masks.items()}
        row: dict[str, Any] = {"item_id": getattr(att, "item_id", str(j))}
        row.update(_image_scores(e, item_masks, q))
        small_e = _small(e)
        for name, cmaps in controls.items():
            c = ev(cmaps[j])
            if c.shape != full:
                c = resize_map(c, full)
            c = crop_box(c, box)
            row[f"margin_{name}"] = row["mass_in_mask"] - _mass(c, item_masks["product"])
            if name in rho_for:
                with warnings.catch_warnings():  # a constant map has no rank correlation
                    warnings.simplefilter("ignore", RuntimeWarning)
                    row[f"rho_{name}"] = spearman(small_e, _small(c))
        rows.append(row)
    return rows


def token_precision(values: Sequence[float] | np.ndarray, labels: Sequence[bool] | np.ndarray,
                    special: Sequence[bool] | None = None) -> dict[str, float]:
    """Precision@k of the words with the largest |value|, k = the number of relevant words.

    Args:
        values: One score per word.
        labels: Relevance per word (True = names a planted attribute).
        special: Words to leave out (CLS/SEP, ...).

    Returns:
        ``{"precision", "chance" (share of relevant words), "mass" (share of |values| on
        relevant words), "k"}``; NaNs when the item has no relevant word.

    Example:
        >>> token_precision([0.1, 2.0, -3.0, 0.2], [False, True, True, False])["precision"]
        1.0
    """
    v = np.abs(np.asarray(values, dtype=np.float64))
    lab = np.asarray(labels, dtype=bool)
    keep = ~np.asarray(special, dtype=bool) if special is not None else np.ones(v.size, bool)
    v, lab = v[keep], lab[keep]
    k = int(lab.sum())
    if k == 0 or v.size == 0:
        return {"precision": float("nan"), "chance": float("nan"), "mass": float("nan"),
                "k": k}
    top = np.argsort(-v, kind="stable")[:k]
    s = v.sum()
    return {"precision": float(lab[top].mean()), "chance": float(lab.mean()),
            "mass": float(v[lab].sum() / s) if s > 0 else float("nan"), "k": k}


def _word_labels(att: Any, text: str, entry: Mapping[str, Any]) -> np.ndarray | None:
    """Ground-truth labels of an attribution's words (``None`` when they cannot be aligned)."""
    words = att.tokens or []
    special = att.params.get("special") or [False] * len(words)
    labels = np.zeros(len(words), dtype=bool)
    low, cursor = text.lower(), 0
    for j, (word, is_special) in enumerate(zip(words, special, strict=True)):
        if is_special or not word.strip():
            continue
        pos = low.find(word.lower(), cursor)
        if pos < 0:
            return None  # the tokenizer changed the text (accents, casing)
        cursor = pos + len(word)
        labels[j] = any(a < cursor and pos < b and lab
                        for (a, b), lab in zip(entry["spans"], entry["labels"], strict=True))
    return labels


def score_text_maps(
    maps: Sequence[Any],
    labels: Sequence[np.ndarray],
    *,
    controls: Mapping[str, Sequence[Any]],
) -> list[dict[str, Any]]:
    """Token precision of text maps against per-word relevance labels, next to controls.

    Args:
        maps: One text :class:`~befa_viz.attribution.Attribution` per item.
        labels: Relevance per word of each map (aligned to ``maps[j].tokens``).
        controls: ``name → one text Attribution per item``; adds ``margin_<name>`` (precision
            minus the control's).

    Returns:
        One dict per item: ``item_id``, ``precision``, ``chance``, ``mass``, ``k``, margins.
    """
    rows = []
    for j, att in enumerate(maps):
        special = att.params.get("special")
        row: dict[str, Any] = {"item_id": att.item_id}
        row.update(token_precision(att.values, labels[j], special))
        for name, cmaps in controls.items():
            c = token_precision(cmaps[j].values, labels[j], cmaps[j].params.get("special"))
            row[f"margin_{name}"] = row["precision"] - c["precision"]
        rows.append(row)
    return rows


def aggregate(items: Any, controls: Sequence[str] = ("random_target", "input")) -> Any:
    """Average per-item scores by (modality, variant, method, target), with sign tests.

    Args:
        items: A DataFrame of per-item rows (``run_benchmark``'s ``items``).
        controls: Controls that decide ``passes`` (both margins positive, p < 0.05).

    Returns:
        One row per group: ``n_items``, the means of the scores, ``ratio`` (mass / chance),
        ``win_<control>`` (share of items beating it), ``p_<control>`` (sign test) and
        ``passes``.
    """
    import pandas as pd

    keys = ["modality", "variant", "method", "target"]
    skip = {"item_id", "item_idx", "computed", "cached"}
    out = []
    for group, df in items.groupby(keys, sort=False, dropna=False):
        row: dict[str, Any] = dict(zip(keys, group, strict=True))
        row["n_items"] = int(len(df))
        for col in df.columns:
            if col in keys or col in skip or not pd.api.types.is_numeric_dtype(df[col]):
                continue
            vals = df[col].to_numpy(dtype=np.float64)
            row[col] = float(np.nanmean(vals)) if np.isfinite(vals).any() else float("nan")
        if "mass_in_mask" in row and row.get("chance", 0) > 0:
            row["ratio"] = row["mass_in_mask"] / row["chance"]
        if "decoy_mass" in row and row.get("decoy_chance", 0) > 0:
            row["decoy_ratio"] = row["decoy_mass"] / row["decoy_chance"]
        ok = all(f"margin_{c}" in df.columns for c in controls)  # every control was measured
        for c in controls:
            col = f"margin_{c}"
            if col not in df.columns:
                continue
            d = df[col].to_numpy(dtype=np.float64)
            d = d[np.isfinite(d)]
            row[f"win_{c}"] = float((d > 0).mean()) if d.size else float("nan")
            row[f"p_{c}"] = sign_test(d)
            mean = float(d.mean()) if d.size else float("nan")
            if row["target"] == "random" and c == "random_target":
                continue  # the control itself: its margin is 0 by construction
            ok = ok and bool(mean > 0 and row[f"p_{c}"] < _P_PASS)
        row["passes"] = bool(ok) if row["method"] != _CONTROL_METHOD and \
            row["variant"] != "control" and row["target"] != "random" else None
        if "seconds" in df.columns:
            computed = df.loc[df["computed"].astype(bool), "seconds"] if "computed" in df \
                else df["seconds"]
            row["seconds_per_map"] = float(computed.mean()) if len(computed) else float("nan")
            row.pop("seconds", None)
        out.append(row)
    return pd.DataFrame(out)
