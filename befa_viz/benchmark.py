"""Validate attribution methods against ground-truth masks (``befa-viz benchmark``).

A heatmap method earns trust only by finding a truth known independently of it. Two kinds of
dataset have one (:mod:`befa_viz.data.truth`):

* the **synthetic shop** (:mod:`befa_viz.data.synth`): users choose by the product's kind,
  colour and pattern only, and the generator records which pixels are the product (and which
  are props, a decoy, a sticker, a price tag, a watermark) and which words name an attribute;
* **real packshots with garment masks** (``befa-viz data masks``, e.g. the H&M sample): the
  garment's pixels from the light background (:mod:`befa_viz.data.garment`), with a usable
  flag per item — items whose mask is unusable are skipped and counted — and weak word labels
  (words of the item's colour / type / pattern attributes). Here nothing guarantees that users
  chose by the garment alone, so the garment mask is the place where the *content* is, not a
  planted cause of the behaviour.

This module
attributes each *target* with each *method* on a sample of items and scores the maps against
that truth **next to controls**, because raw mass-in-mask is not evidence by itself
(DESIGN.md, "What a first experiment showed"):

* **random-target control** — the same method on ⟨E(x), r⟩ for a random unit direction r per
  item. A method whose behaviour-driven map localises no better than this shows the input and
  the baseline, not the target;
* **input control** — the model-free map |x − blur(x)| (``input_x_blur``; text: each token
  embedding's distance to the pad embedding);
* **random map** — smooth random blobs (uniform noise on a 7×7 grid, upsampled bilinearly):
  what chance gives.

Scores per map (images; maps are compared at the attribution's size, masks resized nearest; a
padded input's maps, masks and controls are cropped to its ``content_box`` first, so the pad
never counts):

* ``mass_in_mask`` — share of the *evidence* (|values|; for ``similarity`` max(cos, 0), since
  a location unlike the reference is no evidence for it) inside the product mask; ``chance``
  is the mask's area share and ``ratio`` = mass / chance;
* ``pointing`` — the evidence maximum lies on the product (pointing game);
* ``drift`` / ``omission`` — :mod:`befa_viz.metrics.attribution` against the product mask
  with the top-``q`` mass region;
* ``decoy_mass`` — evidence on the decoy (a blob in the product's own colour and pattern,
  only on items that have one), ``decoy_chance`` its area share;
* ``margin_random_target`` / ``margin_input`` / ``margin_random_map`` — mass_in_mask minus the
  control's mass_in_mask on the same item; ``win_*`` the share of items where the map beats
  the control, ``p_*`` a two-sided exact sign test over items;
* ``rho_random_target`` / ``rho_input`` — Spearman correlation with the control maps.

A method ``passes`` for a target when it beats both the random-target and the input control
on average with a sign-test p below 0.05. Text: ``precision`` = precision@k of the words with
the largest |attribution| against the planted relevance labels (k = the number of relevant
words of the item; ``chance`` = their share), with the same controls.

Targets (see :mod:`befa_viz.attribution.targets`): ``content_focus`` and ``random`` are
model-free (variant ``model-free``); ``behaviour_alignment`` and ``content_score`` are computed
for both runs of the pair (variant ``without`` / ``with``; with the adapter, ``content_score``
is the adapted pathway, ``adapted_alignment``). Maps go through the workspace's attribution
cache, under the same keys the pipeline uses, so a second run costs only the scoring.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import math
import os
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from befa_viz.errors import ConfigError, DataError
from befa_viz.workspace import Workspace

__all__ = [
    "BenchmarkResult",
    "CHEAP_METHODS",
    "DEFAULT_METHODS",
    "DEFAULT_TARGETS",
    "aggregate",
    "benchmark_options",
    "evidence_map",
    "random_map",
    "run_benchmark",
    "sample_items",
    "score_image_maps",
    "score_text_maps",
    "sign_test",
    "token_precision",
]

log = logging.getLogger(__name__)

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


# ---- scoring (pure numpy; tested with planted maps) ------------------------------------------
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


# ---- the result ------------------------------------------------------------------------------
_HEAD_COLS = ("modality", "variant", "method", "target", "n_items", "mass_in_mask", "chance",
              "ratio", "pointing", "margin_random_target", "margin_input", "margin_random_map",
              "p_random_target", "p_input", "precision", "passes")


@dataclass
class BenchmarkResult:
    """What :func:`run_benchmark` measured, and where its report went.

    Attributes:
        dataset: Dataset name.
        runs: Run name per variant (``"without"``, ``"with"``).
        table: One row per (modality, variant, method, target) (see :func:`aggregate`).
        items: One row per item and map (the scores before averaging).
        adapter: Drift / omission / mass-in-mask of each method's raw-feature
            (``content_focus``), without-adapter and with-adapter maps, paired over items.
        ranking: Per variant, test and validation Recall/NDCG of the runs (their recorded
            metrics at the best validation epoch).
        gate: Adapter gate distribution per modality of the run with the adapter.
        params: The request (items, steps, baselines, methods, seed, q) and timings.
        out_dir: Report folder (``None`` when nothing was written).
        paths: Written files by name.
        examples: Per method, the example maps drawn in the report's grids (for callers that
            embed them elsewhere): ``{method: {row label: [Attribution, ...]}}``.
    """

    dataset: str
    runs: dict[str, str]
    table: Any
    items: Any
    adapter: Any
    ranking: dict[str, dict[str, Any]]
    gate: dict[str, dict[str, float]]
    params: dict[str, Any]
    out_dir: Path | None = None
    paths: dict[str, Path] = field(default_factory=dict)
    examples: dict[str, dict[str, list[Any]]] = field(default_factory=dict)

    def headline(self) -> Any:
        """The rows that answer "is this method evidence?": behaviour-driven targets.

        Image rows of ``content_score`` and ``behaviour_alignment`` (both variants) and
        ``content_focus``, plus the text rows of ``content_score``; fewer columns.
        """
        t = self.table
        keep = t["target"].isin(("content_focus", "behaviour_alignment", "content_score"))
        keep &= (t["modality"] == "image") | (t["target"] == "content_score")
        cols = [c for c in _HEAD_COLS if c in t.columns]
        return t.loc[keep, cols].reset_index(drop=True)

    def format(self, digits: int = 2) -> str:
        """A fixed-width summary: the headline table, ranking and gate."""
        runs = ", ".join(f"{v}={n}" for v, n in self.runs.items())
        lines = [f"benchmark on {self.dataset!r}: runs {runs}"]
        head = self.headline()
        show = [c for c in ("modality", "variant", "method", "target", "ratio", "pointing",
                            "margin_random_target", "margin_input", "precision", "passes")
                if c in head.columns]
        lines.append(_fixed_width(head[show], digits))
        for v, m in self.ranking.items():
            lines.append(f"{v} adapter: " + "  ".join(
                f"{k} {m['test'][k]:.4f}" for k in ("Recall@20", "NDCG@20") if k in m["test"]))
        for mod, g in self.gate.items():
            lines.append(f"gate ({mod}): mean {g['mean']:.3f}, q05–q95 {g.get('q05', 0):.3f}–"
                         f"{g.get('q95', 0):.3f}")
        return "\n".join(lines)


def _fixed_width(df: Any, digits: int) -> str:
    def fmt(v: Any) -> str:
        if isinstance(v, (bool, np.bool_)):
            return "yes" if v else "no"
        if v is None or (isinstance(v, float) and not np.isfinite(v)):
            return "–"
        if isinstance(v, (float, np.floating)):
            return f"{v:.{digits}f}" if abs(v) >= 10 ** -digits or v == 0 else f"{v:.1e}"
        return str(v)

    header = [c.replace("margin_", "Δ").replace("random_target", "rand-target")
              for c in df.columns]
    rows = [[fmt(v) for v in r] for r in df.itertuples(index=False)]
    widths = [max(len(x) for x in col) for col in zip(header, *rows, strict=True)]
    return "\n".join("  ".join(x.ljust(w) for x, w in zip(r, widths, strict=True)).rstrip()
                     for r in [header, *rows])


# ---- computing maps ----------------------------------------------------------------------------
def _pick(pool: Sequence[int], n: int) -> list[int]:
    """``n`` evenly spaced entries of ``pool`` (what the explorer's dataset view picks)."""
    if n >= len(pool):
        return list(pool)
    pick = np.unique(np.linspace(0, len(pool) - 1, n).round().astype(int))
    return [pool[j] for j in pick]


def sample_items(dataset: Any, n_items: int = 24, n_items_expensive: int = 6,
                 eligible: np.ndarray | None = None) -> tuple[list[int], list[int]]:
    """The items the benchmark explains: ``(all, expensive subset)`` as item indices.

    ``n_items`` evenly spaced items among those with an image and training users (the same
    items the explorer's dataset view scores, so their cached maps serve it), and an evenly
    spaced subset of ``n_items_expensive`` of them. ``eligible`` (``bool [n_items]``, e.g.
    the usable garment masks) restricts the pool further.

    Example:
        >>> from befa_viz.testing import toy_dataset
        >>> sample_items(toy_dataset(), 4, 2)
        ([0, 4, 7, 11], [0, 11])
    """
    counts = np.bincount(dataset.interactions.train().item_idx, minlength=dataset.n_items)
    pool = [i for i in range(dataset.n_items)
            if dataset.catalog.has_image(i) and counts[i] > 0
            and (eligible is None or bool(eligible[i]))]
    picked = _pick(pool, int(n_items))
    if not picked:
        return [], []
    sub = np.unique(np.linspace(0, len(picked) - 1,
                                min(int(n_items_expensive), len(picked))).round().astype(int))
    return picked, [picked[j] for j in sub]


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


class _ItemRandomTarget:
    """Factory of the random-direction control with one direction per *item* (not per batch
    position), so a cached map does not depend on how items were batched."""

    @staticmethod
    def create(dim: int, seed: int, item_idx: Sequence[int]) -> Any:
        import torch
        import torch.nn.functional as F

        from befa_viz.attribution import RandomDirectionTarget

        t = RandomDirectionTarget(dim, seed=seed, n_directions=len(item_idx))
        dirs = [torch.randn(dim, generator=torch.Generator().manual_seed(
            int(seed) * 1_000_003 + int(i))) for i in item_idx]
        t.directions = F.normalize(torch.stack(dirs), dim=-1)
        return t


@dataclass
class _Job:
    ws: Workspace
    ds: Any
    modality: str
    encoder: Any
    runs: dict[str, Any]
    digests: dict[str, str]
    texts: dict[int, str]
    options: dict[str, dict[str, Any]]
    seed: int
    cache: Any
    use_cache: bool
    batch_size: int
    bar: Any = None
    n_computed: int = 0
    n_cached: int = 0


def _method_options(method: str, modality: str, n_steps: int, baseline: str | None,
                    extra: Mapping[str, Any]) -> dict[str, Any]:
    """Options as the pipeline builds them (same cache keys), plus per-method extras."""
    from befa_viz.attribution import ATTRIBUTIONS, method_modalities

    if modality not in method_modalities(method):
        ok = [m for m in ATTRIBUTIONS.names() if modality in method_modalities(m)]
        raise ConfigError(f"Method {method!r} does not support the {modality} modality; "
                          f"choose among {', '.join(ok)}.")
    accepted = inspect.signature(ATTRIBUTIONS.get(method)).parameters
    opts: dict[str, Any] = {}
    if "n_steps" in accepted and accepted["n_steps"].default is not None:
        opts["n_steps"] = int(n_steps)  # methods whose default is None choose their own count
    if "baseline" in accepted:
        opts["baseline"] = baseline or ("blur" if modality == "image" else "pad")
    bad = [k for k in extra if k not in accepted]
    if bad:
        raise ConfigError(f"Method {method!r} has no option(s) {bad}; it takes "
                          f"{[p for p in accepted if p not in ('encoder', 'target', 'inputs')]}.")
    opts.update(extra)
    return opts


def _inputs(job: _Job, idx: Sequence[int]) -> list[Any]:
    if job.modality == "image":
        return [job.ds.catalog.image(i) for i in idx]
    return [job.texts[i] for i in idx]


def _maps(job: _Job, variant: str, method: str, target: str, idx: list[int]
          ) -> tuple[list[Any], list[bool], list[float]]:
    """Maps of ``idx`` for one variant/method/target: cached ones served, the rest computed."""
    from befa_viz.attribution import explain
    from befa_viz.attribution.cache import AttributionKey

    model_free = target in _MODEL_FREE or method == _CONTROL_METHOD
    run = None if model_free else job.runs[variant]
    fn_target = "adapted_alignment" if (variant == "with" and target == "content_score") \
        else target
    opts = job.options[method]
    feat = None if run is None else run.features[job.modality]
    keys = [AttributionKey(
        run="" if run is None else job.digests[variant], dataset=job.ds.fingerprint(),
        encoder=job.encoder.key, encoder_fingerprint=job.encoder.fingerprint(),
        features="" if feat is None else feat.fingerprint,
        item_id=job.ds.catalog.item_ids[i], modality=job.modality, target=fn_target,
        method=method, adapter=variant == "with" and run is not None,
        target_params=_KEY_TARGET_PARAMS.get(target, {}), method_params=opts, seed=job.seed)
        for i in idx]
    seconds = [0.0] * len(idx)

    def compute(missing: list[int]) -> list[Any]:
        out: list[Any] = []
        for s in range(0, len(missing), job.batch_size):
            pos = missing[s: s + job.batch_size]
            chunk = [idx[p] for p in pos]
            tgt: Any = fn_target
            if target == "random":
                tgt = _ItemRandomTarget.create(int(job.encoder.dim), job.seed, chunk)
            t0 = time.perf_counter()
            with warnings.catch_warnings():  # IG completeness warnings: recorded in delta
                warnings.simplefilter("ignore", UserWarning)
                res = explain(job.encoder, None if run is None else run.model,
                              _inputs(job, chunk), chunk, target=tgt, method=method,
                              modality=job.modality,
                              item_ids=[job.ds.catalog.item_ids[i] for i in chunk],
                              users=job.ds.interactions.train(), seed=job.seed, **opts)
            dt = (time.perf_counter() - t0) / len(chunk)
            for p, a in zip(pos, res, strict=True):
                seconds[p] = dt
                a.params.update(variant=variant, benchmark=True,
                                run=None if run is None else run.name)
            out.extend(res)
            job.n_computed += len(chunk)
            if job.bar is not None:
                job.bar.update(len(chunk))
        return out

    maps, hits = job.cache.get_or_compute(keys, compute, use_cache=job.use_cache)
    n_hit = sum(hits)
    job.n_cached += n_hit
    if job.bar is not None and n_hit:
        job.bar.update(n_hit)
    return maps, hits, [float("nan") if h else s for h, s in zip(hits, seconds, strict=True)]


# ---- the benchmark -----------------------------------------------------------------------------
def _resolve_runs(ws: Workspace, dataset: str, runs: Any, modality: str) -> dict[str, Any]:
    from befa_viz import pipeline
    from befa_viz.train import Run

    def variant(r: Any) -> str:
        return "without" if str(r.info.get("adapter", r.config.adapter)) == "none" else "with"

    if runs is None:
        main = None
        for p in reversed(ws.run_dirs(dataset=dataset)):
            r = Run.load(p)
            if modality in r.info.get("features", {}) and \
                    pipeline.find_paired_run(ws, r) is not None:
                main = r
                break
        if main is None:
            raise DataError(
                f"No pair of runs (without and with the adapter, same backbone, seed and "
                f"features) of dataset {dataset!r} with {modality} features in {ws.root}. Train "
                f"them, e.g. 'befa-viz train --model freedom --adapter none' and '--adapter "
                f"befa', or run 'befa-viz demo'.")
        pair = pipeline.find_paired_run(ws, main)
        found = {variant(main): main, variant(pair): pair}
    else:
        items = [runs] if isinstance(runs, (str, os.PathLike, Run)) else list(runs)
        found = {}
        for item in items:
            run = item if isinstance(item, Run) else pipeline.load_run(ws, item)
            found[variant(run)] = run
    if set(found) != {"without", "with"}:
        raise ConfigError(f"The benchmark needs one run without and one with the adapter; got "
                          f"{', '.join(f'{v}: {r.name}' for v, r in found.items())}.")
    for v, r in found.items():
        if r.info.get("dataset") != dataset:
            raise ConfigError(f"Run {r.name} ({v} adapter) was trained on dataset "
                              f"{r.info.get('dataset')!r}, not {dataset!r}.")
    return {"without": found["without"], "with": found["with"]}


def _ranking(run: Any) -> dict[str, Any]:
    keys = ("Recall@10", "Recall@20", "NDCG@10", "NDCG@20")
    return {"run": run.name, "model": run.config.model,
            "test": {k: run.test_metrics[k] for k in keys if k in run.test_metrics},
            "valid": {k: run.valid_metrics[k] for k in keys if k in run.valid_metrics},
            "best_epoch": run.metrics.get("best_epoch"),
            "epochs_run": run.metrics.get("epochs_run")}


def _item_rows(base: dict[str, Any], idx: list[int], ids: list[str], scores: list[dict],
               hits: list[bool], secs: list[float]) -> list[dict[str, Any]]:
    return [{**base, "item_id": ids[j], "item_idx": int(idx[j]), **{k: v for k, v in s.items()
                                                                     if k != "item_id"},
             "cached": bool(hits[j]), "computed": not hits[j], "seconds": secs[j]}
            for j, s in enumerate(scores)]


def run_benchmark(
    workspace: Workspace | str | os.PathLike[str] | None = None,
    *,
    dataset: str = "shop",
    runs: Any = None,
    methods: Sequence[str] = DEFAULT_METHODS,
    targets: Sequence[str] = DEFAULT_TARGETS,
    expensive_targets: Sequence[str] | None = None,
    text_methods: Sequence[str] = ("ig",),
    n_items: int = 24,
    n_items_expensive: int = 6,
    n_text_items: int = 8,
    n_steps: int = 16,
    baseline: str | None = None,
    method_options: Mapping[str, Mapping[str, Any]] | None = None,
    q: float = 0.5,
    seed: int = 0,
    n_examples: int = 5,
    use_cache: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    write: bool = True,
    reuse_report: bool = True,
    batch_size: int = 8,
    threads: int | None = 1,
    progress: bool = False,
    engine: Any = None,
) -> BenchmarkResult:
    """Score attribution methods and targets against a dataset's ground-truth masks.

    Maps are computed for the run pair (without / with the adapter) through the workspace's
    attribution cache; see the module docstring for the scores, controls and verdicts.
    Cheap methods (:data:`CHEAP_METHODS`) run on ``n_items`` items (evenly spaced over the
    items with training users, as the explorer picks them), the others on an evenly spaced
    subset of ``n_items_expensive``.

    Args:
        workspace: Workspace (or its folder).
        dataset: A dataset with ground truth: a synthetic shop, or a dataset with garment
            masks (``befa-viz data masks``); items whose mask is unusable are skipped and
            counted (``params["items_unusable_mask"]``).
        runs: ``(without, with)`` runs (names, folders or :class:`~befa_viz.train.Run`);
            default: the newest pair of ``dataset`` with image features.
        methods: Image methods (names in ``ATTRIBUTIONS``).
        targets: Targets; ``random`` (the control) is always computed.
        expensive_targets: Targets of the expensive image methods and of the text methods
            (default: ``targets``); fewer targets keep path methods affordable.
        text_methods: Text methods (empty: no text benchmark); needs text features encoded
            from the ``text`` or ``title`` field.
        n_items: Items for cheap methods.
        n_items_expensive: Items for the other methods (a subset of the ``n_items``).
        n_text_items: Items for the text methods.
        n_steps: Integration steps of path methods.
        baseline: Image baseline (default ``blur``; text always ``pad``).
        method_options: Extra options per method, e.g. ``{"occlusion": {"window": 56}}``;
            default: occlusion with a window of a quarter and a stride of an eighth of the
            encoder's input size (≈49 forward passes per map).
        q: Mass share of the top regions of drift and omission.
        seed: Seed of random targets, random maps and noisy methods.
        n_examples: Items drawn per method in the report's example grids (0: no grids).
        use_cache: Read and write the attribution cache.
        cache_dir: Attribution cache folder (default: the workspace's).
        out_dir: Report folder; default ``<workspace>/reports/benchmark-<dataset>-<key>``
            (the key hashes the runs' weights, the items and the options).
        write: Write the report (tables, figures, HTML).
        reuse_report: Keep an existing report made from the same runs (weights digests),
            items and options instead of redrawing it (its timings are the first run's).
        batch_size: Items per attribution call.
        threads: Torch threads during the call (restored after); ``None`` leaves them.
        progress: Show a progress bar over the maps.
        engine: A :class:`~befa_viz.distributed.RayEngine`: compute the missing maps on Ray
            actors first (same keys and batches, into the cache), then score as usual.

    Returns:
        The :class:`BenchmarkResult`.

    Raises:
        DataError: If the dataset has no ground truth or there is no run pair.
        ConfigError: For unknown methods/targets, bad counts, or runs of another dataset.
    """
    import pandas as pd
    import torch

    from befa_viz import pipeline
    from befa_viz.attribution import ATTRIBUTIONS, TARGETS
    from befa_viz.attribution.cache import AttributionCache
    from befa_viz.cache import Cache, hash_key
    from befa_viz.data.truth import load_ground_truth

    for m in [*methods, *text_methods]:
        ATTRIBUTIONS.get(m)
    for t in [*targets, *(expensive_targets or ())]:
        TARGETS.get(t)
        if t in ("user_score", "adapted_alignment"):
            raise ConfigError(f"Target {t!r} is not benchmarked: use 'content_score' (it is "
                              "the adapted pathway for the run with the adapter).")
    for name, v in (("n_items", n_items), ("n_items_expensive", n_items_expensive),
                    ("n_steps", n_steps), ("batch_size", batch_size)):
        if int(v) < 1:
            raise ConfigError(f"{name} must be >= 1; got {v}.")
    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    dataset = ws.resolve_dataset(dataset)
    gt = load_ground_truth(ws.dataset_dir(dataset))
    prior_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(int(threads))
    t_start = time.perf_counter()
    try:
        pair = _resolve_runs(ws, dataset, runs, "image")
        ds = pair["without"].dataset
        digests = {v: _file_digest(r.path / "model.safetensors") for v, r in pair.items()}
        counts = np.bincount(ds.interactions.train().item_idx, minlength=ds.n_items)
        eligible = None if gt.usable is None else np.asarray(gt.usable, dtype=bool)
        picked, expensive = sample_items(ds, n_items, n_items_expensive, eligible=eligible)
        # items the benchmark could have explained but whose mask is unusable: skipped, counted
        pool = np.asarray([ds.catalog.has_image(i) for i in range(ds.n_items)]) & (counts > 0)
        n_unusable = int((pool & ~eligible).sum()) if eligible is not None else 0
        if not picked:
            raise DataError(f"No item of {dataset!r} has an image, training users and a "
                            "usable mask.")
        targets = list(dict.fromkeys([*targets, "random"]))
        exp_targets = list(dict.fromkeys([*(expensive_targets or targets), "random"]))
        per_method = {m: targets if m in CHEAP_METHODS else exp_targets
                      for m in [*methods, *text_methods]}
        cache = AttributionCache(Cache(cache_dir) if cache_dir is not None else ws.cache())
        jobs: dict[str, _Job] = {}
        encoder = pipeline.encoder_for_run(pair["without"], "image")
        size = int(getattr(encoder, "image_size", 224))
        extra = {"occlusion": {"window": max(1, size // 4), "stride": max(1, size // 8)},
                 **{k: dict(v) for k, v in (method_options or {}).items()}}
        if baseline == "mean":  # the dataset's mean colour, as the pipeline computes it
            mean_px = pipeline._dataset_mean_pixel(ds, encoder)
            for m in methods:
                if "mean_pixel" in inspect.signature(ATTRIBUTIONS.get(m)).parameters:
                    extra.setdefault(m, {}).setdefault("mean_pixel", mean_px)
        jobs["image"] = _Job(ws, ds, "image", encoder, pair, digests, {},
                             {m: _method_options(m, "image", n_steps, baseline, extra.get(m, {}))
                              for m in [*methods, _CONTROL_METHOD]},
                             seed, cache, use_cache, int(batch_size))
        text_note = None
        text_idx: list[int] = []
        if text_methods:
            feats = pair["without"].features
            field_ = ((feats["text"].manifest.get("policies") or {}).get("text_field", "text")
                      if "text" in feats else None)
            if field_ is None:
                text_note = "no text features in the runs: text benchmark skipped"
            elif field_ not in ("text", "title"):
                text_note = (f"text features were encoded from {field_!r}; the planted word "
                             "labels cover 'text' or 'title' only: text benchmark skipped")
            else:
                tenc = pipeline.encoder_for_run(pair["without"], "text")
                src = ds.catalog.texts if field_ == "text" else ds.catalog.titles
                ids_ = ds.catalog.item_ids
                tpool = [i for i in range(ds.n_items) if str(src[i]).strip() and counts[i] > 0
                         and any(gt.tokens.get(ids_[i], {}).get(field_, {}).get("labels", []))]
                text_idx = _pick(tpool, int(n_text_items))
                jobs["text"] = _Job(ws, ds, "text", tenc, pair, digests,
                                    {i: str(src[i]) for i in text_idx},
                                    {m: _method_options(m, "text", n_steps, None, {})
                                     for m in [*text_methods, _CONTROL_METHOD]},
                                    seed, cache, use_cache, int(batch_size))
            if text_note:
                log.warning(text_note)

        plan = _plan(methods, per_method, picked, expensive, text_methods, text_idx)
        if engine is not None:  # missing maps on Ray actors; the loops below read the cache
            from befa_viz.distributed import prefill_benchmark

            sets = {"image": lambda m: picked if m in CHEAP_METHODS else expensive,
                    "text": lambda m: text_idx}
            prefill_benchmark(jobs, [(mod, v, m, "random" if t == "-" else t, sets[mod](m))
                                     for mod, m, t, _ in plan
                                     for v in (("control",) if t == "-" else _variants_of(t))],
                              _maps, engine)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=sum(n for *_, n in plan), desc="benchmark maps", unit="map")
        for j in jobs.values():
            j.bar = bar
        try:
            rows, store = _image_benchmark(jobs["image"], gt, methods, per_method, picked,
                                           expensive, q, seed)
            if "text" in jobs:
                assert field_ is not None  # a text job exists only for a known text field
                rows += _text_benchmark(jobs["text"], gt, text_methods, per_method, text_idx,
                                        field_)
        finally:
            if bar is not None:
                bar.close()
        items = pd.DataFrame(rows)
        table = aggregate(items)
        adapter = _adapter_table(items)
        n_computed = sum(j.n_computed for j in jobs.values())
        n_cached = sum(j.n_cached for j in jobs.values())
        params = {
            "dataset": dataset, "dataset_fingerprint": ds.fingerprint(),
            "runs": {v: r.name for v, r in pair.items()}, "methods": list(methods),
            "targets": targets, "expensive_targets": exp_targets,
            "text_methods": list(text_methods) if "text" in jobs else [],
            "n_items": len(picked), "n_items_expensive": len(expensive),
            "n_text_items": len(text_idx), "items": [ds.catalog.item_ids[i] for i in picked],
            "items_expensive": [ds.catalog.item_ids[i] for i in expensive],
            "n_steps": int(n_steps), "options": {m: jobs["image"].options[m] for m in
                                                 jobs["image"].options},
            "text_options": jobs["text"].options if "text" in jobs else {},
            "image_encoder": encoder.key, "q": q, "seed": seed, "text_note": text_note,
            "truth": gt.kind, "items_unusable_mask": n_unusable,
            "items_usable_mask": int((pool & eligible).sum()) if eligible is not None
            else int(pool.sum()),
            "maps_computed": n_computed, "maps_cached": n_cached,
            "pass_rule": f"mean margin > 0 over the random-target and input controls, sign "
                         f"test p < {_P_PASS}",
        }
        params["key"] = hash_key(BENCHMARK_VERSION, digests, ds.fingerprint(), n_examples, {
            k: params[k] for k in ("methods", "targets", "expensive_targets", "text_methods",
                                   "items",
                                   "items_expensive", "n_text_items", "n_steps", "options",
                                   "text_options", "image_encoder", "q", "seed")})
        result = BenchmarkResult(
            dataset=dataset, runs={v: r.name for v, r in pair.items()}, table=table,
            items=items, adapter=adapter,
            ranking={v: _ranking(r) for v, r in pair.items()},
            gate=dict(pair["with"].gate), params=params)
        if int(n_examples) > 0:
            result.examples = _examples(store, gt, methods, expensive[: int(n_examples)])
        params["seconds"] = round(time.perf_counter() - t_start, 1)
        if write:
            _write_report(result, ws, out_dir, reuse_report)
            params["seconds"] = round(time.perf_counter() - t_start, 1)
        log.info("benchmark: %d maps computed, %d from the cache, %.0f s", n_computed,
                 n_cached, params["seconds"])
        return result
    finally:
        if threads is not None:
            torch.set_num_threads(prior_threads)


def benchmark_options(options: Mapping[str, Any], where: str = "options") -> dict[str, Any]:
    """Check ``run_benchmark`` keyword options from a YAML file (strict: unknown keys raise).

    Example:
        >>> benchmark_options({"n_items": 12})
        {'n_items': 12}
    """
    from befa_viz.registry import closest

    valid = [p for p in inspect.signature(run_benchmark).parameters
             if p not in ("workspace", "progress", "engine")]
    for k in options:
        if k not in valid:
            near = closest(str(k), valid)
            hint = f" Did you mean {near[0]!r}?" if near else ""
            raise ConfigError(f"{where}: unknown benchmark option {k!r}.{hint} Valid: "
                              f"{', '.join(valid)}.")
    return dict(options)


def _plan(methods: Sequence[str], targets: Mapping[str, list[str]], picked: list[int],
          expensive: list[int], text_methods: Sequence[str], text_idx: list[int]
          ) -> list[tuple[str, str, str, int]]:
    """(modality, method, target, n maps) for the progress bar."""
    out = []
    for m in [*methods, _CONTROL_METHOD]:
        n = len(picked) if m in CHEAP_METHODS else len(expensive)
        ts = ["-"] if m == _CONTROL_METHOD else targets[m]
        for t in ts:
            out.append(("image", m, t, n * (1 if t in _MODEL_FREE or t == "-" else 2)))
    if text_idx:
        for m in [*text_methods, _CONTROL_METHOD]:
            ts = ["-"] if m == _CONTROL_METHOD else targets[m]
            for t in ts:
                out.append(("text", m, t, len(text_idx) * (1 if t in _MODEL_FREE or t == "-"
                                                           else 2)))
    return out


def _variants_of(target: str) -> tuple[str, ...]:
    return ("model-free",) if target in _MODEL_FREE else ("without", "with")


def _image_benchmark(job: _Job, gt: Any, methods: Sequence[str],
                     targets: Mapping[str, list[str]],
                     picked: list[int], expensive: list[int], q: float, seed: int
                     ) -> tuple[list[dict[str, Any]], dict[tuple[str, str, str], dict[int, Any]]]:
    """Per-item rows of every image map, and the maps by (variant, method, target)."""
    ids = job.ds.catalog.item_ids
    store: dict[tuple[str, str, str], dict[int, Any]] = {}
    masks_all = {k: gt.masks[k] for k in ("product", "decoy") if k in gt.masks}
    rows: list[dict[str, Any]] = []
    # model-free controls on every picked item
    ctrl, c_hits, c_secs = _maps(job, "control", _CONTROL_METHOD, "random", picked)
    pos = {i: j for j, i in enumerate(picked)}
    shape = np.asarray(ctrl[0].values).shape
    store[("control", _CONTROL_METHOD, "-")] = dict(zip(picked, ctrl, strict=True))
    rmaps = {i: random_map(shape, seed=(seed, i)) for i in picked}
    for name, maps_, hits, secs in (("input_x_blur", ctrl, c_hits, c_secs),
                                    ("random_map", [rmaps[i] for i in picked],
                                     [False] * len(picked), [float("nan")] * len(picked))):
        sc = score_image_maps(maps_, {k: v[picked] for k, v in masks_all.items()},
                              controls={}, q=q)
        rows += _item_rows({"modality": "image", "variant": "control", "method": name,
                            "target": "-"}, picked, [ids[i] for i in picked], sc, hits, secs)
    for method in methods:
        idx = picked if method in CHEAP_METHODS else expensive
        sub = [pos[i] for i in idx]
        controls_base = {"input": [ctrl[j] for j in sub], "random_map": [rmaps[i] for i in idx]}
        rand, r_hits, r_secs = _maps(job, "model-free", method, "random", idx)
        masks = {k: v[idx] for k, v in masks_all.items()}
        for target in targets[method]:
            for variant in _variants_of(target):
                if target == "random":
                    maps_, hits, secs = rand, r_hits, r_secs
                else:
                    maps_, hits, secs = _maps(job, variant, method, target, idx)
                store[(variant, method, target)] = dict(zip(idx, maps_, strict=True))
                sc = score_image_maps(maps_, masks, controls={"random_target": rand,
                                                              **controls_base}, q=q)
                rows += _item_rows({"modality": "image", "variant": variant, "method": method,
                                    "target": target}, idx, [ids[i] for i in idx], sc, hits,
                                   secs)
    return rows, store


def _text_benchmark(job: _Job, gt: Any, methods: Sequence[str],
                    targets: Mapping[str, list[str]],
                    idx: list[int], field_: str) -> list[dict[str, Any]]:
    ids = job.ds.catalog.item_ids
    rows: list[dict[str, Any]] = []
    ctrl, c_hits, c_secs = _maps(job, "control", _CONTROL_METHOD, "random", idx)
    labels: list[np.ndarray] = []
    keep: list[int] = []
    for j, i in enumerate(idx):
        entry = gt.tokens.get(ids[i], {}).get(field_)
        lab = None if entry is None else _word_labels(ctrl[j], job.texts[i], entry)
        if lab is not None:
            labels.append(lab)
            keep.append(j)
    if len(keep) < len(idx):
        log.warning("text benchmark: %d of %d items' words could not be aligned with the "
                    "planted labels; they are left out", len(idx) - len(keep), len(idx))
    if not keep:
        return rows
    kept_idx = [idx[j] for j in keep]

    def sub(xs: list[Any]) -> list[Any]:
        return [xs[j] for j in keep]

    sc = score_text_maps(sub(ctrl), labels, controls={})
    rows += _item_rows({"modality": "text", "variant": "control", "method": _CONTROL_METHOD,
                        "target": "-"}, kept_idx, [ids[i] for i in kept_idx], sc,
                       sub(c_hits), sub(c_secs))
    for method in methods:
        rand, r_hits, r_secs = _maps(job, "model-free", method, "random", idx)
        for target in targets[method]:
            for variant in _variants_of(target):
                if target == "random":
                    maps_, hits, secs = rand, r_hits, r_secs
                else:
                    maps_, hits, secs = _maps(job, variant, method, target, idx)
                for a, lab in zip(sub(maps_), labels, strict=True):
                    if len(a.tokens or []) != len(lab):
                        raise DataError(f"Text map of item {a.item_id!r} ({method}) has "
                                        f"{len(a.tokens or [])} words but the control has "
                                        f"{len(lab)}; the tokenisations differ.")
                sc = score_text_maps(sub(maps_), labels,
                                     controls={"random_target": sub(rand), "input": sub(ctrl)})
                rows += _item_rows({"modality": "text", "variant": variant, "method": method,
                                    "target": target}, kept_idx, [ids[i] for i in kept_idx],
                                   sc, sub(hits), sub(secs))
    return rows


def _adapter_table(items: Any) -> Any:
    """Per modality and method: raw feature vs without vs with adapter, paired over items."""
    import pandas as pd

    out = []
    score_cols = ("drift", "omission", "mass_in_mask", "precision")
    for (mod, method), df in items[items["variant"] != "control"].groupby(
            ["modality", "method"], sort=False):
        raw = df[(df["target"] == "content_focus")].set_index("item_id")
        for target in ("behaviour_alignment", "content_score"):
            w = df[(df["target"] == target) & (df["variant"] == "without")].set_index("item_id")
            a = df[(df["target"] == target) & (df["variant"] == "with")].set_index("item_id")
            common = w.index.intersection(a.index)
            if not len(common):
                continue
            row: dict[str, Any] = {"modality": mod, "method": method, "target": target,
                                   "n_items": int(len(common))}
            for col in score_cols:
                if col not in df.columns or not np.isfinite(w[col].to_numpy(float)).any():
                    continue
                if len(raw) and col in raw:
                    row[f"{col}_raw_feature"] = float(np.nanmean(raw.loc[
                        raw.index.intersection(common), col].to_numpy(float)))
                wv, av = w.loc[common, col].to_numpy(float), a.loc[common, col].to_numpy(float)
                row[f"{col}_without"] = float(np.nanmean(wv))
                row[f"{col}_with"] = float(np.nanmean(av))
                row[f"{col}_p"] = sign_test(av - wv)
            out.append(row)
    return pd.DataFrame(out)


# ---- report -------------------------------------------------------------------------------------
_ROW_LABELS = (("model-free", "random", "random target (control)"),
               ("model-free", "content_focus", "content focus (raw feature)"),
               ("without", "behaviour_alignment", "behaviour alignment, without adapter"),
               ("without", "content_score", "content score, without adapter"),
               ("with", "content_score", "content score, with adapter"))


def _examples(store: Mapping[tuple[str, str, str], dict[int, Any]], gt: Any,
              methods: Sequence[str], idx: list[int]) -> dict[str, dict[str, list[Any]]]:
    """Example maps per method for the report's grids (rows: truth, control, targets)."""
    from befa_viz.attribution import Attribution

    ctrl = [store[("control", _CONTROL_METHOD, "-")][i] for i in idx]
    truth = []
    for a, i in zip(ctrl, idx, strict=True):
        m = _mask_at(gt.masks["product"][i], np.asarray(a.values).shape, a)
        truth.append(Attribution(a.item_id, "image", "ground truth",
                                 "product mask" if gt.planted else "garment mask",
                                 m.astype(np.float32), image=a.image, params={
                                     k: a.params[k] for k in ("content_box", "source_size")
                                     if k in a.params}))
    out: dict[str, dict[str, list[Any]]] = {}
    truth_label = "planted product mask" if gt.planted else "garment mask"
    for method in methods:
        rows: dict[str, list[Any]] = {truth_label: truth,
                                      "control |x − blur(x)|": ctrl}
        for variant, target, label in _ROW_LABELS:
            maps = store.get((variant, method, target))
            if maps is not None and all(i in maps for i in idx):
                rows[label] = [maps[i] for i in idx]
        out[method] = rows
    return out


def _margins_figure(table: Any) -> Any:
    """Bar chart: mean margin over the random-target and input controls per method/target."""
    from matplotlib.figure import Figure

    t = table[(table["modality"] == "image") & (table["variant"] != "control")
              & (table["target"] != "random")]
    if t.empty:
        return None
    methods = list(dict.fromkeys(t["method"]))
    series = [("model-free", "content_focus", "content focus (raw feature)", "#9e9e9e"),
              ("without", "behaviour_alignment", "behaviour alignment (without)", "#6baed6"),
              ("without", "content_score", "content score, without adapter", "#2171b5"),
              ("with", "behaviour_alignment", "behaviour alignment (with)", "#fdae6b"),
              ("with", "content_score", "content score, with adapter", "#d94801")]
    series = [s for s in series if ((t["variant"] == s[0]) & (t["target"] == s[1])).any()]
    fig = Figure(figsize=(11, 3.8))
    axes = fig.subplots(1, 2, sharey=True)
    width = 0.8 / max(1, len(series))
    for ax, col, title in ((axes[0], "margin_random_target", "margin over the random-target "
                            "control"), (axes[1], "margin_input", "margin over |x − blur(x)|")):
        for k, (variant, target, label, colour) in enumerate(series):
            vals = []
            for m in methods:
                r = t[(t["method"] == m) & (t["variant"] == variant) & (t["target"] == target)]
                vals.append(float(r[col].iloc[0]) if len(r) else np.nan)
            x = np.arange(len(methods)) + (k - (len(series) - 1) / 2) * width
            ax.bar(x, vals, width, label=label, color=colour)
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xticks(np.arange(len(methods)), methods)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("Δ mass in the product mask")
    axes[1].legend(fontsize=7, loc="best")
    fig.suptitle("Localisation of the product / garment: margin of each method and target over "
                 "its controls (mean over items; > 0 = better than the control)", fontsize=10)
    fig.tight_layout()
    return fig


def _round(df: Any, digits: int = 3) -> list[dict[str, Any]]:
    out = []
    for r in df.to_dict(orient="records"):
        row = {}
        for k, v in r.items():
            if isinstance(v, float):
                v = None if not np.isfinite(v) else (round(v, digits) if abs(v) >= 1e-3 or v == 0
                                                     else float(f"{v:.2e}"))
            row[k] = v
        out.append(row)
    return out


def _truth_words(p: Mapping[str, Any]) -> str:
    if p.get("truth", "synthetic") == "synthetic":
        return "synthetic shop with planted truth"
    return (f"real photos with garment masks: {p.get('items_usable_mask', '?')} explainable "
            f"items have a usable mask, {p.get('items_unusable_mask', '?')} were skipped for an "
            "unusable one; text labels are weak (attribute words in the text)")


def _report_text(res: BenchmarkResult) -> str:
    p = res.params
    opts = "; ".join(f"{m}: {', '.join(f'{k}={v}' for k, v in o.items()) or 'defaults'}"
                     for m, o in p["options"].items())
    return (
        f"Dataset {res.dataset!r} ({_truth_words(p)}), runs: "
        f"{res.runs['without']} (without adapter) and {res.runs['with']} (with adapter). "
        f"Image encoder {p['image_encoder']}. Cheap methods ({', '.join(sorted(CHEAP_METHODS))})"
        f" on {p['n_items']} items, the others on {p['n_items_expensive']} of them; text on "
        f"{p['n_text_items']} items. Options: {opts}. Seed {p['seed']}, q = {p['q']}."
        "\n\n"
        "Every score is measured next to three controls: the same method on a random target "
        "direction (random-target control), the model-free |x − blur(x)| map (input control) "
        "and smooth random blobs (random map). A map is evidence about the model only when it "
        "beats the first two: 'passes' means a positive mean margin over both with a sign "
        f"test p < {_P_PASS} over items. Mass-in-mask alone is not evidence: a method can "
        "localise the product at twice the chance level while showing only the input."
        "\n\n"
        "mass_in_mask: share of the map's evidence (|values|; similarity: max(cos, 0)) on the "
        "product (planted) or garment mask; chance: its area share; ratio = mass / chance; "
        "pointing: "
        "the map's maximum lies on the product; drift/omission: against the product mask at "
        "the top-q mass region; decoy: evidence on the product-coloured decoy blob (items "
        "that have one). Text: precision@k of the top-|attribution| words against the relevant "
        "attribute words (k = number of relevant words)."
        + (f"\n\nNote: {p['text_note']}." if p.get("text_note") else "")
        + f"\n\n{p['maps_computed']} maps computed, {p['maps_cached']} served from the "
          f"attribution cache."
    )


def _write_report(res: BenchmarkResult, ws: Workspace, out_dir: Any, reuse: bool) -> None:
    """Write tables, figures and the HTML page (skipped when an identical report exists)."""
    import matplotlib

    from befa_viz import viz
    from befa_viz.cache import atomic_dir

    key = res.params["key"]
    if out_dir is None:
        out = ws.reports_dir / f"benchmark-{res.dataset}-{key[:8]}"
    else:
        out = Path(out_dir).expanduser()
        if out.is_dir() and any(out.iterdir()) and not (out / "benchmark.json").is_file():
            raise ConfigError(f"Report folder '{out}' exists and is not a benchmark report; "
                              "it would be replaced. Choose an empty or new folder (--out).")
    names = ("report.html", "benchmark.json", "table.csv", "items.csv", "adapter.csv")
    if reuse and all((out / n).is_file() for n in names):
        try:
            old_key = json.loads((out / "benchmark.json").read_text()).get("params", {}).get("key")
        except (OSError, json.JSONDecodeError):
            old_key = None
        if old_key == key:
            log.info("benchmark report %s is up to date; not rewritten", out)
            res.out_dir = out
            res.paths = {**{p.name: p for p in sorted(out.glob("*.png"))},
                         **{n: out / n for n in names}}
            res.params["report_reused"] = True
            return
    res.params["report_reused"] = False
    sections: list[Any] = [viz.Section("What was measured", text=_report_text(res))]
    head = res.headline()
    sections.append(viz.Section(
        "Headline: behaviour-driven targets vs their controls", table=_round(head),
        text="Rows that carry the argument: does the method's map of a behaviour-driven target "
             "find the product (garment) better than its controls? Δ = mass-in-mask margin."))
    paths: dict[str, Path] = {}
    with matplotlib.rc_context({"font.size": 9}), atomic_dir(out) as tmp:
        tmp = Path(tmp)
        res.table.to_csv(tmp / "table.csv", index=False)
        res.items.to_csv(tmp / "items.csv", index=False)
        res.adapter.to_csv(tmp / "adapter.csv", index=False)

        def png(name: str, fig: Any) -> np.ndarray:
            """Save once as PNG and embed that raster (no second rendering for the HTML)."""
            from PIL import Image

            path = viz.save_figure(fig, tmp / name, ("png",), dpi=110)[0]
            paths[path.name] = out / path.name
            with Image.open(path) as im:
                return np.asarray(im.convert("RGB"))

        margins = _margins_figure(res.table)
        if margins is not None:
            sections.append(viz.Section("Margins over the controls",
                                        figures=[png("margins", margins)]))
        sections.append(viz.Section(
            "Adapter: raw feature vs without vs with adapter", table=_round(res.adapter),
            text="Drift, omission and mass-in-mask against the product (garment) mask, paired "
                 "over the same items (p: sign test, with vs without). Only methods that pass "
                 "their controls say something about the representations."))
        rank = {f"{v} adapter ({r['model']})": {**{f"test {k}": x for k, x in r["test"].items()},
                                                **{f"valid {k}": x for k, x in r["valid"].items()},
                                                "best epoch": r["best_epoch"]}
                for v, r in res.ranking.items()}
        sections.append(viz.Section("Ranking quality with and without the adapter", table=rank,
                                    text="Full ranking, MMRec protocol, test at the best "
                                         "validation epoch (the runs' recorded metrics)."))
        if res.gate:
            sections.append(viz.Section(
                "Adapter gate distribution", table={m: g for m, g in res.gate.items()},
                text="Over all items and dimensions of the run with the adapter. A gate pinned "
                     "near 1 passes the behaviour embedding through unchanged: the adapter "
                     "then does nothing to the content pathway, whatever the heatmaps say."))
        for method, rows in res.examples.items():
            fig = viz.grid_figure(list(rows.values()), row_labels=list(rows),
                                  title=f"{method}: example maps", panel_width=1.5)
            sections.append(viz.Section(f"Example maps: {method}",
                                        figures=[png(f"grid-{method}", fig)]))
        sections.append(viz.Section("All rows", table=_round(res.table),
                                    text="Every (modality, variant, method, target); "
                                         "items.csv has the per-item scores."))
        page = viz.html_report(sections, title=f"Attribution benchmark on {res.dataset!r}")
        (tmp / "report.html").write_text(page, encoding="utf-8")
        (tmp / "benchmark.json").write_text(json.dumps({
            "dataset": res.dataset, "runs": res.runs, "params": res.params,
            "ranking": res.ranking, "gate": res.gate, "table": _round(res.table, 6),
            "adapter": _round(res.adapter, 6)}, indent=2, default=str) + "\n")
    for name in ("report.html", "benchmark.json", "table.csv", "items.csv", "adapter.csv"):
        paths[name] = out / name
    res.out_dir, res.paths = out, paths

