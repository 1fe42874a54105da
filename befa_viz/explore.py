"""Exploration verbs behind the Streamlit explorer and the notebooks.

The explorer (``apps/explorer.py``) and the notebooks hold widgets and layout only; everything
that reads runs, scores items, searches the catalog or packs files for download lives here.
It is a frontend helper: it calls the :mod:`befa_viz.pipeline` verbs (which never import it),
and the explorer and the notebooks import it directly (``from befa_viz import explore``).

The verbs work on two kinds of objects: a workspace dataset (:class:`~befa_viz.data.RecDataset`,
for catalog and interaction views) and a *run pair*, ``{"without": Run, "with": Run}`` (one
entry when a run has no partner with the other adapter setting), from :func:`open_run_pair`.
"""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from befa_viz.errors import ConfigError, DataError
from befa_viz.pipeline import (
    DEFAULT_TARGET,
    explain_items,
    find_paired_run,
    load_run,
    resolve_attribution_run,
)
from befa_viz.pipeline.maps import _item_meta
from befa_viz.workspace import Workspace

if TYPE_CHECKING:  # pandas is imported where used, so importing the pipeline stays fast
    import pandas as pd

__all__ = [
    "MASK_COLOURS",
    "RunPair",
    "ScoreJob",
    "adapter_metrics",
    "explanation_json",
    "explanation_npz",
    "explanation_png",
    "explainable_items",
    "find_workspace",
    "item_attributes",
    "item_details",
    "item_masks",
    "item_space",
    "item_thumbnails",
    "mask_colour",
    "mask_overlay",
    "method_names",
    "nearest_items",
    "open_run_pair",
    "paired_scatter_figure",
    "paired_test",
    "recommend",
    "run_pairs",
    "score_histogram_figure",
    "score_table",
    "search_items",
    "steps_apply",
    "target_names",
    "user_history",
    "worst_items",
]

log = logging.getLogger(__name__)

_SPLITS = ("train", "valid", "test")
_VARIANT_LABEL = {"without": "without adapter", "with": "with adapter"}
#: Targets that need a user (``user=``) and targets not offered for browsing (the random-
#: direction control, and ``adapted_alignment``, which ``content_score`` already uses for the
#: run with the adapter).
_USER_TARGETS = ("user_score",)
_HIDDEN_TARGETS = ("random", "adapted_alignment")


#: Files that mark a repository root: the search for the default workspace stops there.
_REPO_MARKERS = ("pyproject.toml", ".git")


def find_workspace(workspace: str | os.PathLike[str] | None = None,
                   start: str | os.PathLike[str] | None = None) -> Workspace:
    """The workspace a notebook or script means, wherever it was started.

    ``workspace`` when given; else ``$BEFA_VIZ_WORKSPACE``; else the first ``befa-workspace``
    folder in ``start`` (default: the current folder) or one of its parents up to the
    repository root (the first folder with a ``pyproject.toml`` or ``.git``). So a notebook
    started from ``notebooks/`` finds the workspace ``make demo`` made at the repository root.

    Raises:
        DataError: If no such workspace exists (the message lists where it looked).

    Example:
        >>> from befa_viz.testing import toy_workspace
        >>> ws = toy_workspace()
        >>> find_workspace(ws.root).root == ws.root
        True
    """
    from pathlib import Path

    from befa_viz.workspace import WORKSPACE_ENV

    given = workspace if workspace is not None else os.environ.get(WORKSPACE_ENV) or None
    if given is not None:
        path = Path(given).expanduser()
        if not path.is_dir():
            src = "given" if workspace is not None else f"${WORKSPACE_ENV}"
            raise DataError(f"Workspace {path} ({src}) does not exist. Create it with `make "
                            "demo` or `befa-viz data import --workspace DIR`, or point to "
                            "another folder.")
        return Workspace(path)
    here = Path(start if start is not None else os.getcwd()).resolve()
    looked = []
    for folder in (here, *here.parents):
        cand = folder / "befa-workspace"
        looked.append(str(cand))
        if cand.is_dir():
            return Workspace(cand)
        if any((folder / m).exists() for m in _REPO_MARKERS):
            break
    raise DataError(f"No workspace found: ${WORKSPACE_ENV} is not set and there is no "
                    f"befa-workspace folder at {', '.join(looked)}. Create one with `make demo` "
                    f"at the repository root, or set ${WORKSPACE_ENV}.")


def _ws(workspace: Workspace | str | os.PathLike[str] | None) -> Workspace:
    return workspace if isinstance(workspace, Workspace) else Workspace(workspace)


def _variant(info: Mapping[str, Any]) -> str:
    return "without" if str(info.get("adapter", "none")) == "none" else "with"


# ---- runs ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunPair:
    """Runs of one backbone and seed, without and with the adapter (names; either may be absent).

    Attributes:
        dataset: Dataset name.
        model: Backbone name.
        seed: Training seed.
        without: Run name without the adapter, or ``None``.
        with_: Run name with the adapter, or ``None``.
        modalities: Content modalities the runs were trained with (empty: behaviour only).
    """

    dataset: str
    model: str
    seed: int
    without: str | None
    with_: str | None
    modalities: tuple[str, ...]

    @property
    def paired(self) -> bool:
        """Both runs exist."""
        return self.without is not None and self.with_ is not None

    @property
    def main(self) -> str:
        """The run to explain (the one with the adapter when present)."""
        name = self.with_ or self.without
        assert name is not None  # a pair always has at least one run
        return name

    @property
    def label(self) -> str:
        """A short label for pickers (sidebars are narrow): backbone, adapter runs, seed."""
        if self.paired:
            what = "± adapter"
        elif self.with_ is not None:
            what = "with adapter only"
        else:
            what = "without adapter only" if self.modalities else "ID only"
        return f"{self.model.upper()} {what}, seed {self.seed}"


def run_pairs(
    workspace: Workspace | str | os.PathLike[str] | None = None, dataset: str | None = None
) -> list[RunPair]:
    """Complete runs of a dataset, paired by adapter setting (newest first).

    Two runs pair up when :func:`befa_viz.pipeline.find_paired_run` says so (same dataset,
    backbone, seed and features; other adapter setting). A run without a partner is listed
    alone.

    Args:
        workspace: Workspace (or its folder).
        dataset: Dataset name; default the most recent one.

    Returns:
        One :class:`RunPair` per backbone/seed/features group.

    Example:
        >>> from befa_viz.testing import toy_workspace
        >>> pairs = run_pairs(toy_workspace())
        >>> [(p.model, p.paired, p.modalities) for p in pairs]
        [('vbpr', True, ('image', 'text'))]
    """
    from befa_viz.train import Run

    ws = _ws(workspace)
    name = ws.resolve_dataset(dataset)
    runs = [Run.load(p) for p in reversed(ws.run_dirs(dataset=name))]
    used: set[str] = set()
    out: list[RunPair] = []
    for r in runs:
        if r.name in used:
            continue
        used.add(r.name)
        mods = tuple(sorted(r.info.get("features", {})))
        partner = find_paired_run(ws, r) if mods else None
        if partner is not None and partner.name in used:
            partner = None
        names = {_variant(r.info): r.name}
        if partner is not None:
            used.add(partner.name)
            names[_variant(partner.info)] = partner.name
        out.append(RunPair(dataset=name, model=str(r.info.get("model", r.config.model)),
                           seed=int(r.info.get("seed", r.config.seed)),
                           without=names.get("without"), with_=names.get("with"),
                           modalities=mods))
    return out


def open_run_pair(
    workspace: Workspace | str | os.PathLike[str] | None = None,
    run: str | os.PathLike[str] | RunPair | None = None,
) -> dict[str, Any]:
    """Load a run and its partner: ``{"without": Run, "with": Run}`` (present ones only).

    Args:
        workspace: Workspace (or its folder).
        run: A :class:`RunPair`, a run name or folder; default the newest complete run.

    Returns:
        The runs by variant, ``"without"`` first; models load lazily on first use.

    Example:
        >>> from befa_viz.testing import toy_workspace
        >>> sorted(open_run_pair(toy_workspace()))
        ['with', 'without']
    """
    ws = _ws(workspace)
    if isinstance(run, RunPair):
        names = {"without": run.without, "with": run.with_}
        return {v: load_run(ws, n) for v, n in names.items() if n is not None}
    main = load_run(ws, run)
    out = {_variant(main.info): main}
    if main.info.get("features"):
        partner = find_paired_run(ws, main)
        if partner is not None:
            out[_variant(partner.info)] = partner
    return {v: out[v] for v in ("without", "with") if v in out}


def _first(runs: Mapping[str, Any]) -> Any:
    if not runs:
        raise ConfigError("No run given; open one with open_run_pair(workspace, run).")
    return next(iter(runs.values()))


# ---- registries as picker choices --------------------------------------------------------------
def method_names(modality: str = "image") -> list[str]:
    """Attribution methods (``ATTRIBUTIONS``) that support ``modality``.

    Example:
        >>> "ig" in method_names("text"), "gradcam" in method_names("text")
        (True, False)
    """
    from befa_viz.attribution import ATTRIBUTIONS, method_modalities

    return [m for m in ATTRIBUTIONS.names() if modality in method_modalities(m)]


def target_names(with_user: bool = False) -> list[str]:
    """Targets (``TARGETS``) offered for browsing; ``user_score`` only ``with_user``.

    The default target (``content_score``) comes first.

    Example:
        >>> target_names()[0], "user_score" in target_names(with_user=True)
        ('content_score', True)
    """
    from befa_viz.attribution import TARGETS

    names = [t for t in TARGETS.names() if t not in _HIDDEN_TARGETS
             and (with_user or t not in _USER_TARGETS)]
    return sorted(names, key=lambda t: t != DEFAULT_TARGET)


# ---- catalog and users -------------------------------------------------------------------------
def search_items(dataset: Any, query: str = "", *, limit: int = 20) -> pd.DataFrame:
    """Items whose original id or title matches ``query`` (case-insensitive).

    An exact id comes first, then ids starting with the query, then titles containing every
    word of it. An empty query lists the first ``limit`` items.

    Args:
        dataset: A :class:`~befa_viz.data.RecDataset`.
        query: Id or title words.
        limit: Most rows returned.

    Returns:
        Columns ``item_id``, ``title``, ``match`` (``id``, ``id prefix``, ``title``, ``all``).

    Example:
        >>> from befa_viz.testing import toy_dataset
        >>> search_items(toy_dataset(), "RED hat")[["item_id", "match"]].values.tolist()
        [['i3', 'title']]
    """
    import pandas as pd

    cat = dataset.catalog
    q = str(query).strip().lower()
    ids = np.array([i.lower() for i in cat.item_ids], dtype=object)
    titles = np.array([str(t).lower() for t in cat.titles], dtype=object)
    if not q:
        rows = [(i, "all") for i in range(min(limit, len(cat)))]
    else:
        exact = np.flatnonzero(ids == q)
        prefix = np.flatnonzero(np.char.startswith(ids.astype(str), q) & (ids != q))
        words = q.split()
        in_title = np.ones(len(cat), dtype=bool)
        for w in words:
            in_title &= np.char.find(titles.astype(str), w) >= 0
        seen: set[int] = set()
        rows = []
        for idx, kind in ((exact, "id"), (prefix, "id prefix"), (np.flatnonzero(in_title),
                                                                  "title")):
            for i in idx.tolist():
                if i not in seen and len(rows) < limit:
                    seen.add(i)
                    rows.append((i, kind))
    return pd.DataFrame({"item_id": [cat.item_ids[i] for i, _ in rows],
                         "title": [cat.titles[i] for i, _ in rows],
                         "match": [k for _, k in rows]})


def item_details(dataset: Any, item_id: str | int) -> dict[str, Any]:
    """What the item page shows: metadata, image path and text of one item.

    Args:
        dataset: A :class:`~befa_viz.data.RecDataset`.
        item_id: Raw item id.

    Returns:
        ``{"item_id", "item_idx", "title", "text", "image_path" (str or None), "meta"}``;
        ``meta`` holds the id, title, dataset, number of training users and the catalog's
        extra columns.

    Raises:
        UnknownNameError: If the id is not in the catalog (closest ids suggested).

    Example:
        >>> from befa_viz.testing import toy_dataset
        >>> d = item_details(toy_dataset(), "i3")
        >>> d["title"], d["meta"]["training users"]
        ('red hat', 2)
    """
    cat = dataset.catalog
    idx = cat.index_of(item_id)
    tr = dataset.interactions.train()
    n_users = int(np.count_nonzero(tr.item_idx == idx))
    path = cat.image_path(idx)
    return {"item_id": cat.item_ids[idx], "item_idx": idx, "title": cat.titles[idx],
            "text": cat.texts[idx], "image_path": str(path) if path is not None else None,
            "meta": _item_meta(dataset, idx, n_users)}


def user_history(dataset: Any, user_id: str | int) -> pd.DataFrame:
    """A user's interactions in time order (when the data has timestamps).

    Returns:
        Columns ``item_id``, ``title``, ``split`` (``train``/``valid``/``test``).

    Example:
        >>> from befa_viz.testing import toy_dataset
        >>> h = user_history(toy_dataset(), "u0")
        >>> len(h), h["split"].tolist()[-2:]
        (5, ['valid', 'test'])
    """
    import pandas as pd

    it = dataset.interactions
    u = dataset.user_index_of(user_id)
    rows = np.flatnonzero(it.user_idx == u)
    if it.timestamp is not None:
        rows = rows[np.argsort(it.timestamp[rows], kind="stable")]
    items = it.item_idx[rows]
    return pd.DataFrame({"item_id": [dataset.catalog.item_ids[i] for i in items],
                         "title": [dataset.catalog.titles[i] for i in items],
                         "split": [_SPLITS[s] for s in it.split[rows]]})


def recommend(runs: Mapping[str, Any], user_id: str | int, *, k: int = 10
              ) -> dict[str, pd.DataFrame]:
    """A user's top-``k`` items per run (training items masked, as in the evaluation).

    Args:
        runs: ``{variant: Run}`` from :func:`open_run_pair`.
        user_id: Raw user id.
        k: Items per list.

    Returns:
        Per variant: columns ``rank``, ``item_id``, ``title``, ``score`` and ``held_out``
        (``valid``/``test`` when the user interacted with the item in that split, else ``""``).

    Example:
        >>> from befa_viz.testing import toy_workspace
        >>> recs = recommend(open_run_pair(toy_workspace()), "u1", k=3)
        >>> sorted(recs), len(recs["with"])
        (['with', 'without'], 3)
    """
    import pandas as pd
    import torch

    if int(k) < 1:
        raise ConfigError(f"k must be >= 1; got {k}.")
    out: dict[str, pd.DataFrame] = {}
    for variant, run in runs.items():
        ds = run.dataset
        it = ds.interactions
        u = ds.user_index_of(user_id)
        mine = it.user_idx == u
        with torch.no_grad():
            scores = run.model.score_users(torch.tensor([u], device=run.device))[0]
            scores = scores.detach().cpu().numpy().astype(np.float64)  # [I]
        scores[it.item_idx[mine & (it.split == 0)]] = -np.inf
        n = min(int(k), int(np.isfinite(scores).sum()))
        top = np.argsort(-scores, kind="stable")[:n]
        held = {int(i): _SPLITS[s] for i, s in zip(it.item_idx[mine], it.split[mine],
                                                      strict=True) if s > 0}
        out[variant] = pd.DataFrame({
            "rank": np.arange(1, n + 1), "item_id": [ds.catalog.item_ids[i] for i in top],
            "title": [ds.catalog.titles[i] for i in top], "score": scores[top],
            "held_out": [held.get(int(i), "") for i in top]})
    return out


def nearest_items(runs: Mapping[str, Any], item_id: str | int, *, modality: str = "image",
                  k: int = 5) -> dict[str, pd.DataFrame]:
    """An item's nearest neighbours (cosine) by raw content feature and by each run's
    content representation.

    Spaces: ``"raw content"`` (the encoder's feature the runs were trained on), ``"without
    adapter"`` (the projected feature ċ) and ``"with adapter"`` (the adapted representation
    g(ċ) ⊙ e), for the runs present.

    Args:
        runs: ``{variant: Run}`` from :func:`open_run_pair`.
        item_id: Raw item id.
        modality: Content modality.
        k: Neighbours per space.

    Returns:
        Per space: columns ``item_id``, ``title``, ``cosine`` (the item itself excluded).

    Raises:
        ConfigError: If the runs have no ``modality`` features.

    Example:
        >>> from befa_viz.testing import toy_workspace
        >>> nn = nearest_items(open_run_pair(toy_workspace()), "i3", k=2)
        >>> list(nn), len(nn["raw content"])
        (['raw content', 'without adapter', 'with adapter'], 2)
    """
    import pandas as pd
    import torch

    first = _first(runs)
    if modality not in first.info.get("features", {}):
        raise ConfigError(f"Run {first.name} has no {modality} features (it has: "
                          f"{', '.join(sorted(first.info.get('features', {}))) or 'none'}).")
    ds = first.dataset
    idx = ds.catalog.index_of(item_id)
    with torch.no_grad():
        spaces = {"raw content": first.model.raw_features(modality)}
        for v, run in runs.items():
            spaces[_VARIANT_LABEL[v]] = run.model.item_content(modality)
    out: dict[str, pd.DataFrame] = {}
    for name, mat in spaces.items():
        x = mat.detach().cpu().numpy().astype(np.float64)  # [I, D]
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        cos = x @ x[idx]  # [I]
        cos[idx] = -np.inf
        top = np.argsort(-cos, kind="stable")[: min(int(k), ds.n_items - 1)]
        out[name] = pd.DataFrame({"item_id": [ds.catalog.item_ids[i] for i in top],
                                  "title": [ds.catalog.titles[i] for i in top],
                                  "cosine": cos[top]})
    return out


# ---- dataset-level views -----------------------------------------------------------------------
def adapter_metrics(
    workspace: Workspace | str | os.PathLike[str] | None = None,
    dataset: str | None = None,
    *,
    metrics: Sequence[str] = ("Recall@20", "NDCG@20"),
    split: str = "test",
) -> pd.DataFrame:
    """Recorded ranking metrics per backbone without vs with the adapter (mean over seeds).

    Reads each complete run's ``metrics.json`` (``test``: at the best validation epoch;
    ``valid``: the best validation metrics); nothing is re-evaluated.

    Args:
        workspace: Workspace (or its folder).
        dataset: Dataset name; default the most recent one.
        metrics: Metric names as recorded (``Recall@20``, ``NDCG@10``, ...).
        split: ``"test"`` or ``"valid"``.

    Returns:
        One row per backbone: ``backbone``, ``runs without``, ``runs with``, then
        ``<metric> without``, ``<metric> with`` and ``<metric> Δ`` (NaN where a side is
        missing).

    Example:
        >>> from befa_viz.testing import toy_workspace
        >>> t = adapter_metrics(toy_workspace())
        >>> t["backbone"].tolist(), list(t.columns)[3:5]
        (['vbpr'], ['Recall@20 without', 'Recall@20 with'])
    """
    import pandas as pd

    from befa_viz.train import Run

    if split not in ("test", "valid"):
        raise ConfigError(f"split must be 'test' or 'valid'; got {split!r}.")
    ws = _ws(workspace)
    name = ws.resolve_dataset(dataset)
    rows = []
    for p in ws.run_dirs(dataset=name):
        r = Run.load(p)
        rec = r.test_metrics if split == "test" else r.valid_metrics
        rows.append({"backbone": str(r.info.get("model", r.config.model)),
                     "variant": _variant(r.info), **{m: rec.get(m, np.nan) for m in metrics}})
    cols = ["backbone", "runs without", "runs with"]
    for m in metrics:
        cols += [f"{m} without", f"{m} with", f"{m} Δ"]
    if not rows:
        return pd.DataFrame(columns=cols)
    df = pd.DataFrame(rows)
    out = []
    for backbone, g in df.groupby("backbone", sort=True):
        row: dict[str, Any] = {"backbone": backbone}
        for v in ("without", "with"):
            row[f"runs {v}"] = int((g["variant"] == v).sum())
        for m in metrics:
            means = {v: float(g.loc[g["variant"] == v, m].astype(float).mean())
                     if (g["variant"] == v).any() else np.nan for v in ("without", "with")}
            row[f"{m} without"], row[f"{m} with"] = means["without"], means["with"]
            row[f"{m} Δ"] = means["with"] - means["without"]
        out.append(row)
    return pd.DataFrame(out, columns=cols)


def explainable_items(dataset: Any, modality: str = "image", target: str | None = None
                      ) -> list[str]:
    """Ids of the items that can be explained: with the modality's content and, for the
    default ``content_score`` target, with training users.

    Example:
        >>> from befa_viz.testing import toy_dataset
        >>> explainable_items(toy_dataset())[:3]
        ['i0', 'i1', 'i2']
    """
    if modality not in ("image", "text"):
        raise ConfigError(f"modality must be 'image' or 'text'; got {modality!r}.")
    needs_users = (target or DEFAULT_TARGET) in ("content_score", "adapted_alignment")
    return [dataset.catalog.item_ids[i] for i in _explainable(dataset, modality, needs_users)]


def _explainable(dataset: Any, modality: str, needs_users: bool) -> list[int]:
    cat = dataset.catalog
    if modality == "image":
        pool = [i for i in range(dataset.n_items) if cat.has_image(i)]
    else:
        pool = [i for i in range(dataset.n_items)
                if str(cat.texts[i]).strip() or str(cat.titles[i]).strip()]
    if needs_users:
        counts = np.bincount(dataset.interactions.train().item_idx, minlength=dataset.n_items)
        pool = [i for i in pool if counts[i] > 0]
    return pool


def score_table(
    *,
    workspace: Workspace | str | os.PathLike[str] | None = None,
    run: Any = None,
    modality: str = "image",
    target: str | None = None,
    method: str = "ig",
    n_steps: int = 32,
    baseline: str | None = None,
    limit: int | None = 50,
    batch_size: int = 8,
    use_cache: bool = True,
    on_progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> pd.DataFrame:
    """Drift, omission and faithfulness of many items, without and with the adapter.

    Explains up to ``limit`` explainable items (evenly spaced over the catalog; all when
    ``None``) with :func:`befa_viz.pipeline.explain_items`: maps come from the attribution
    cache when present and are computed (and cached) otherwise.

    Args:
        workspace: Workspace (or its folder).
        run: A run (or its name or folder); its partner with the other adapter setting is
            explained too when it exists.
        modality: ``"image"`` or ``"text"``.
        target: Dataset-level target (not ``user_score``); default ``content_score``.
        method: Attribution method.
        n_steps: Integration steps.
        baseline: Baseline name (default per modality).
        limit: Most items explained.
        batch_size: Items per call (and per progress update).
        use_cache: Read and write the attribution cache.
        on_progress: Called with ``(items done, items total)`` after each batch.
        should_stop: Asked before each batch; ``True`` stops early (a cancel button) and the
            table holds the items scored so far (their maps are cached, so a rerun resumes).

    Returns:
        One row per item (:meth:`ItemExplanation.csv_row`): ``item_id``, ``title``, the
        request, ``drift_<variant>``, ``omission_<variant>``, ``deletion_auc_<variant>``, ...

    Raises:
        ConfigError: For a target that needs a user, or ``limit`` < 1.
        DataError: If no item can be explained.

    Example:
        >>> from befa_viz.testing import toy_workspace
        >>> t = score_table(workspace=toy_workspace(), limit=3, n_steps=4,
        ...                 method="gradcam")
        >>> len(t), "drift_with" in t.columns
        (3, True)
    """
    import warnings

    import pandas as pd

    target = target or DEFAULT_TARGET
    if target in _USER_TARGETS:
        raise ConfigError(f"Target {target!r} explains one user's score; dataset-level scores "
                          "need an item-level target such as 'content_score'.")
    if limit is not None and int(limit) < 1:
        raise ConfigError(f"limit must be >= 1 or None; got {limit}.")
    ws = _ws(workspace)
    main = resolve_attribution_run(ws, run, modality)
    ds = main.dataset
    pool = _explainable(ds, modality, target in ("content_score", "adapted_alignment"))
    if not pool:
        raise DataError(f"No item of dataset {ds.name!r} can be explained with {modality} "
                        f"and target {target!r}.")
    if limit is not None and len(pool) > int(limit):
        pick = np.unique(np.linspace(0, len(pool) - 1, int(limit)).round().astype(int))
        pool = [pool[j] for j in pick]
    ids = [ds.catalog.item_ids[i] for i in pool]
    compare = _has_partner(ws, main)
    rows: list[dict[str, Any]] = []
    for s in range(0, len(ids), int(batch_size)):
        if should_stop is not None and should_stop():
            log.info("score_table stopped after %d of %d items", len(rows), len(ids))
            break
        with warnings.catch_warnings():  # per-item IG completeness warnings: in the table
            warnings.simplefilter("ignore", UserWarning)
            exps = explain_items(ids[s: s + int(batch_size)], workspace=ws, run=main,
                                 modality=modality, target=target, method=method,
                                 n_steps=n_steps, baseline=baseline, compare_adapter=compare,
                                 use_cache=use_cache, batch_size=batch_size)
        for e in exps:
            row = e.csv_row()
            row.update({f"cached_{v}": bool(e.cached.get(v)) for v in e.variants})
            rows.append(row)
        if on_progress is not None:
            on_progress(len(rows), len(ids))
    return pd.DataFrame(rows)


def _has_partner(workspace: Workspace | str | os.PathLike[str] | None, run: Any) -> bool:
    """Whether ``run`` has a partner with the other adapter setting (see ``find_paired_run``)."""
    return find_paired_run(workspace, run) is not None


def _rank_variant(table: pd.DataFrame, score: str) -> str:
    for v in ("with", "without"):
        if f"{score}_{v}" in table.columns:
            return v
    raise DataError(f"The score table has no '{score}_with' or '{score}_without' column; "
                    f"columns: {', '.join(map(str, table.columns))}.")


def worst_items(table: pd.DataFrame, *, score: str = "drift", variant: str | None = None,
                n: int = 10) -> pd.DataFrame:
    """The ``n`` items with the highest ``score`` in a :func:`score_table`.

    Args:
        table: From :func:`score_table`.
        score: ``drift`` or ``omission`` (or another per-variant score).
        variant: Rank by this variant's score; default ``with`` when present.
        n: Rows returned.

    Returns:
        ``item_id``, ``title`` and the score's columns for every variant, worst first.

    Example:
        >>> import pandas as pd
        >>> t = pd.DataFrame({"item_id": ["a", "b"], "title": ["A", "B"],
        ...                   "drift_without": [0.2, 0.5], "drift_with": [0.4, 0.1]})
        >>> worst_items(t, n=1)["item_id"].tolist()
        ['a']
    """

    v = variant or _rank_variant(table, score)
    col = f"{score}_{v}"
    if col not in table.columns:
        raise DataError(f"The score table has no column {col!r}.")
    cols = ["item_id", "title"] + [c for c in (f"{score}_without", f"{score}_with")
                                   if c in table.columns]
    return (table.sort_values(col, ascending=False, na_position="last", kind="stable")
            .head(int(n))[cols].reset_index(drop=True))


def score_histogram_figure(table: pd.DataFrame, scores: Sequence[str] = ("drift", "omission"),
                           *, bins: int = 20) -> Any:  # -> matplotlib.figure.Figure
    """Histograms of per-item scores without vs with the adapter, one panel per score.

    Args:
        table: From :func:`score_table`.
        scores: Score names (``drift``, ``omission``, ``deletion_auc``, ...).
        bins: Bins over [0, 1].

    Returns:
        A figure (no pyplot state); each panel's legend gives the mean per variant.

    Example:
        >>> import pandas as pd
        >>> t = pd.DataFrame({"drift_without": [0.2, 0.5], "drift_with": [0.4, 0.1],
        ...                   "omission_without": [0.3, 0.3], "omission_with": [0.1, 0.2]})
        >>> len(score_histogram_figure(t).axes)
        2
    """
    import pandas as pd
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.2 * len(scores), 3.0), layout="constrained")
    axes = fig.subplots(1, len(scores), squeeze=False)[0]
    edges = np.linspace(0.0, 1.0, int(bins) + 1)
    colours = {"without": "#7f7f7f", "with": "#d95f02"}
    for ax, score in zip(axes, scores, strict=True):
        for v in ("without", "with"):
            col = f"{score}_{v}"
            if col not in table.columns:
                continue
            vals = pd.to_numeric(table[col], errors="coerce").dropna().to_numpy()
            if not len(vals):
                continue
            ax.hist(vals, bins=edges, alpha=0.6, color=colours[v],
                    label=f"{_VARIANT_LABEL[v]} (mean {vals.mean():.2f}, n={len(vals)})")
        ax.set_xlabel(score.replace("_", " "))
        ax.set_ylabel("items")
        ax.set_xlim(0, 1)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="upper left")
    return fig


# ---- exports -------------------------------------------------------------------------------
def _explanation_figure(e: Any, difference: bool = False) -> Any:
    from befa_viz import viz

    pair = e.figure_pairs()
    title = f"{e.item_id}: {e.item.get('title', '')}".rstrip(": ")
    if e.modality == "image":
        if isinstance(pair, tuple):
            return viz.pair_figure(*pair, title=title, difference=difference)
        return viz.heatmap_figure(pair, title=title)
    if isinstance(pair, tuple):
        return viz.token_pair_figure(*pair, title=title)
    return viz.token_figure(pair, title=title)


def explanation_png(explanation: Any, *, dpi: float = 110, difference: bool = False) -> bytes:
    """The heatmap figure of an :class:`~befa_viz.pipeline.ItemExplanation` as PNG bytes.

    Images: the pair on one colour scale (:func:`befa_viz.viz.pair_figure`); text: the
    highlighted tokens (:func:`befa_viz.viz.token_pair_figure`).

    Example:
        >>> from befa_viz.pipeline import explain_item
        >>> from befa_viz.testing import toy_workspace
        >>> e = explain_item("i3", workspace=toy_workspace(), method="gradcam")
        >>> explanation_png(e)[:4]
        b'\\x89PNG'
    """
    fig = _explanation_figure(explanation, difference)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def explanation_npz(explanation: Any) -> bytes:
    """The raw signed maps (per variant) and the relevance map as ``.npz`` bytes.

    Keys as :func:`befa_viz.viz.save_arrays` writes them (``without``, ``with``,
    ``<variant>__tokens``, ``meta_json``) plus ``relevance``; loads with
    ``np.load(..., allow_pickle=False)``.
    """
    import tempfile
    from pathlib import Path

    from befa_viz import viz

    e = explanation
    with tempfile.TemporaryDirectory(prefix="befa-export-") as tmp:
        path = viz.save_arrays({v: e.attributions[v] for v in e.variants},
                               Path(tmp) / "attributions.npz")
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    arrays["relevance"] = np.asarray(e.relevance["map"])
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def explanation_json(explanation: Any) -> bytes:
    """Scores, request, runs, gate and relevance source (no arrays) as UTF-8 JSON."""
    return (json.dumps(explanation.to_dict(), indent=2, default=str) + "\n").encode()


# ---- thumbnails, attributes and ground-truth masks -------------------------------------------
def item_thumbnails(dataset: Any, item_ids: Sequence[str], *, size: int = 48
                    ) -> list[str | None]:
    """Small PNG thumbnails of items as ``data:`` URIs (``None`` for an item without image).

    For tables (``st.column_config.ImageColumn``) and HTML; nothing is written to disk.

    Args:
        dataset: A :class:`~befa_viz.data.RecDataset`.
        item_ids: Raw item ids.
        size: Longest side in pixels.

    Raises:
        UnknownNameError: If an id is not in the catalog.

    Example:
        >>> from befa_viz.testing import toy_dataset
        >>> uri = item_thumbnails(toy_dataset(), ["i3"], size=16)[0]
        >>> uri.startswith("data:image/png;base64,")
        True
    """
    import base64

    from PIL import Image

    if int(size) < 4:
        raise ConfigError(f"size must be >= 4 pixels; got {size}.")
    cat = dataset.catalog
    out: list[str | None] = []
    for item_id in item_ids:
        idx = cat.index_of(item_id)
        if not cat.has_image(idx):
            out.append(None)
            continue
        im = cat.image(idx).convert("RGB")
        im.thumbnail((int(size), int(size)), Image.Resampling.BILINEAR)
        buf = io.BytesIO()
        im.save(buf, format="PNG", optimize=True)
        out.append("data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii"))
    return out


def _ground_truth_dir(dataset: Any) -> Any:
    from pathlib import Path

    path = getattr(dataset, "path", None)
    return Path(path) / "ground_truth" if path is not None else None


def item_masks(dataset: Any, item_id: str | int) -> dict[str, np.ndarray]:
    """The item's ground-truth masks, where the dataset has them (else ``{}``).

    Datasets store them as ``ground_truth/masks.npz`` in their folder, one ``bool
    [n_items, H, W]`` array per region (the synthetic shop: ``product``, ``props``, ``decoy``,
    ...; an importer with garment masks stores them the same way).

    Args:
        dataset: A :class:`~befa_viz.data.RecDataset` loaded from a workspace.
        item_id: Raw item id.

    Returns:
        Region name → ``bool [H, W]``, only regions that cover some of this item.

    Raises:
        DataError: If the masks file does not match the catalog (the message names it).

    Example:
        >>> from befa_viz.testing import toy_dataset
        >>> item_masks(toy_dataset(), "i3")
        {}
    """
    folder = _ground_truth_dir(dataset)
    if folder is None or not (folder / "masks.npz").is_file():
        return {}
    idx = dataset.catalog.index_of(item_id)
    path = folder / "masks.npz"
    out: dict[str, np.ndarray] = {}
    with np.load(path, allow_pickle=False) as z:
        for name in z.files:
            arr = z[name]
            if arr.ndim != 3 or arr.shape[0] != dataset.n_items:
                raise DataError(f"{path}: mask {name!r} has shape {arr.shape}, expected "
                                f"[{dataset.n_items}, H, W] (one mask per catalog item). "
                                "Regenerate the ground truth for this dataset.")
            m = np.asarray(arr[idx]).astype(bool)
            if m.any():
                out[name] = m
    return out


def item_attributes(dataset: Any, item_id: str | int) -> dict[str, Any]:
    """The item's attributes: the catalog's extra columns, then ground-truth attributes
    (``ground_truth/attributes.csv``, e.g. the synthetic shop's kind, colour and pattern).

    Example:
        >>> from befa_viz.testing import toy_dataset
        >>> item_attributes(toy_dataset(), "i3")["training users"]
        2
    """
    d = item_details(dataset, item_id)
    out = {k: v for k, v in d["meta"].items() if k not in ("id", "title", "text")}
    folder = _ground_truth_dir(dataset)
    if folder is not None and (folder / "attributes.csv").is_file():
        import pandas as pd

        attrs = pd.read_csv(folder / "attributes.csv", dtype={"item_id": str})
        row = attrs.loc[attrs["item_id"] == d["item_id"]]
        if len(row):
            for k, v in row.iloc[0].items():
                if k != "item_id" and k not in out:
                    out[str(k)] = v.item() if isinstance(v, np.generic) else v
    return out


#: Overlay colours of ground-truth regions (others cycle through ``_EXTRA_COLOURS``).
MASK_COLOURS = {"product": (46, 204, 113), "garment": (46, 204, 113), "decoy": (231, 76, 60),
                "props": (52, 152, 219), "sticker": (241, 196, 15), "price_tag": (155, 89, 182),
                "watermark": (230, 126, 34)}
_EXTRA_COLOURS = ((26, 188, 156), (236, 112, 99), (93, 173, 226), (244, 208, 63))


def mask_colour(name: str, k: int = 0) -> tuple[int, int, int]:
    """RGB colour of a ground-truth region in :func:`mask_overlay`."""
    return MASK_COLOURS.get(name, _EXTRA_COLOURS[k % len(_EXTRA_COLOURS)])


def mask_overlay(image: Any, masks: Mapping[str, np.ndarray], *, alpha: float = 0.45
                 ) -> np.ndarray:
    """The image with each mask tinted in its colour (:func:`mask_colour`) and outlined.

    Args:
        image: PIL image or ``uint8 [H, W, 3]`` array.
        masks: Region name → ``bool [h, w]`` (resized to the image, nearest neighbour).
        alpha: Tint opacity.

    Returns:
        ``uint8 [H, W, 3]``.

    Example:
        >>> img = np.zeros((4, 4, 3), np.uint8)
        >>> mask_overlay(img, {"product": np.eye(4, dtype=bool)})[0, 0].tolist()
        [46, 204, 113]
    """
    from PIL import Image
    from scipy import ndimage

    if not 0 <= float(alpha) <= 1:
        raise ConfigError(f"alpha must be in [0, 1]; got {alpha}.")
    rgb = np.asarray(image.convert("RGB") if hasattr(image, "convert") else image)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise DataError(f"mask_overlay needs an RGB image [H, W, 3]; got shape {rgb.shape}.")
    out = rgb.astype(np.float32)
    h, w = rgb.shape[:2]
    for k, (name, m) in enumerate(masks.items()):
        m = np.asarray(m, dtype=bool)
        if m.shape != (h, w):
            m = np.asarray(Image.fromarray(m.astype(np.uint8) * 255).resize(
                (w, h), Image.Resampling.NEAREST)) > 127
        colour = np.asarray(mask_colour(name, k), np.float32)
        out[m] = (1 - alpha) * out[m] + alpha * colour
        edge = m & ~ndimage.binary_erosion(m)
        out[edge] = colour
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def steps_apply(method: str) -> bool:
    """Whether ``method`` takes integration steps (path methods such as IG); Grad-CAM,
    similarity, occlusion and the input-only map do not.

    Example:
        >>> steps_apply("ig"), steps_apply("gradcam")
        (True, False)
    """
    from befa_viz.attribution import method_options

    return "n_steps" in method_options(method)


# ---- paired with-vs-without statistics -------------------------------------------------------
def paired_test(table: pd.DataFrame, score: str = "drift") -> dict[str, Any]:
    """Compare a per-item score with vs without the adapter over the same items.

    A two-sided Wilcoxon signed-rank test (``scipy.stats.wilcoxon``) on the per-item
    differences ``with − without``; items missing either value are left out.

    Args:
        table: From :func:`score_table` (columns ``<score>_without`` and ``<score>_with``).
        score: ``drift``, ``omission``, ``deletion_auc``, ...

    Returns:
        ``n`` (items with both), ``mean_without``, ``mean_with``, ``mean_diff``,
        ``n_lower`` / ``n_higher`` / ``n_equal`` (items where with is below / above / equal
        to without), ``statistic`` and ``p`` (``None`` when fewer than two items differ).

    Raises:
        DataError: If the table lacks either column.

    Example:
        >>> import pandas as pd
        >>> t = pd.DataFrame({"drift_without": [0.5, 0.6, 0.7, 0.8, 0.9, 0.6],
        ...                   "drift_with": [0.1, 0.2, 0.3, 0.4, 0.5, 0.2]})
        >>> r = paired_test(t)
        >>> r["n"], r["n_lower"], round(r["p"], 3)
        (6, 6, 0.031)
    """
    import pandas as pd
    from scipy import stats

    cols = (f"{score}_without", f"{score}_with")
    missing = [c for c in cols if c not in table.columns]
    if missing:
        raise DataError(f"The score table has no column(s) {missing}; a paired test needs "
                        f"scores of both runs (columns: {', '.join(map(str, table.columns))}). "
                        "Score a run that has a partner with the other adapter setting.")
    a = pd.to_numeric(table[cols[0]], errors="coerce").to_numpy(float)
    b = pd.to_numeric(table[cols[1]], errors="coerce").to_numpy(float)
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    d = b - a
    out: dict[str, Any] = {
        "score": score, "n": int(ok.sum()),
        "mean_without": float(a.mean()) if len(a) else None,
        "mean_with": float(b.mean()) if len(b) else None,
        "mean_diff": float(d.mean()) if len(d) else None,
        "n_lower": int((d < 0).sum()), "n_higher": int((d > 0).sum()),
        "n_equal": int((d == 0).sum()), "statistic": None, "p": None,
        "test": "Wilcoxon signed-rank, two-sided"}
    if int((d != 0).sum()) >= 2:
        res = stats.wilcoxon(b, a, alternative="two-sided")
        out["statistic"], out["p"] = float(res.statistic), float(res.pvalue)
    return out


def paired_scatter_figure(table: pd.DataFrame, scores: Sequence[str] = ("drift", "omission")
                          ) -> Any:  # -> matplotlib.figure.Figure
    """Per-item score with the adapter (y) against without (x), one panel per score.

    Points below the diagonal are items whose score dropped with the adapter; each panel's
    title gives the :func:`paired_test` result.

    Example:
        >>> import pandas as pd
        >>> t = pd.DataFrame({"drift_without": [0.2, 0.5, 0.4], "drift_with": [0.4, 0.1, 0.3],
        ...                   "omission_without": [0.3, 0.3, 0.2],
        ...                   "omission_with": [0.1, 0.2, 0.2]})
        >>> len(paired_scatter_figure(t).axes)
        2
    """
    import pandas as pd
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3.6 * len(scores), 3.5), layout="constrained")
    axes = fig.subplots(1, len(scores), squeeze=False)[0]
    for ax, score in zip(axes, scores, strict=True):
        r = paired_test(table, score)
        x = pd.to_numeric(table[f"{score}_without"], errors="coerce").to_numpy(float)
        y = pd.to_numeric(table[f"{score}_with"], errors="coerce").to_numpy(float)
        ax.plot([0, 1], [0, 1], color="#999999", lw=0.8, ls="--", zorder=1)
        ax.scatter(x, y, s=16, color="#d95f02", alpha=0.75, edgecolor="white", lw=0.4,
                   zorder=2)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_aspect("equal")
        ax.set_xlabel(f"{score.replace('_', ' ')} without adapter")
        ax.set_ylabel(f"{score.replace('_', ' ')} with adapter")
        p = "p n/a" if r["p"] is None else f"p = {r['p']:.2g}"
        ax.set_title(f"{r['n_lower']} lower, {r['n_higher']} higher of {r['n']}; "
                     f"Wilcoxon {p}", fontsize=8.5)
    return fig


# ---- item space --------------------------------------------------------------------------
def _umap() -> Any:
    try:
        import umap
    except ImportError as e:
        from befa_viz.errors import MissingDependencyError

        raise MissingDependencyError(
            "umap-learn is not installed (the item-space view needs it). Install with: "
            "pip install 'befa-viz[app]'.") from e
    return umap


def item_space(
    runs: Mapping[str, Any],
    *,
    modality: str = "image",
    workspace: Workspace | str | os.PathLike[str] | None = None,
    n_neighbors: int = 15,
    min_dist: float = 0.1,
    seed: int = 0,
    use_cache: bool = True,
) -> pd.DataFrame:
    """2-D UMAP maps of every item's content representation without and with the adapter.

    Each run's representation (``item_content``: the projected feature ċ without the adapter,
    g(ċ) ⊙ e with it) is embedded separately with cosine UMAP; the map with the adapter is then
    rotated/reflected onto the one without (orthogonal Procrustes over all items), so that the
    two panels can be read side by side. The result is cached in the workspace cache (kind
    ``item_space``; key: the runs' fingerprints and the UMAP settings).

    Args:
        runs: ``{variant: Run}`` from :func:`open_run_pair`.
        modality: Content modality.
        workspace: Workspace whose cache keeps the embedding (default: the runs' workspace;
            none for a run folder outside a workspace).
        n_neighbors: UMAP neighbourhood size (clipped to the number of items − 1).
        min_dist: UMAP minimum distance.
        seed: UMAP random state (fixed: the layout is reproducible).
        use_cache: Read and write the cache.

    Returns:
        One row per item: ``item_id``, ``title``, ``popularity`` (training interactions),
        ``x_<variant>``, ``y_<variant>`` for each run, plus the catalog's and the ground
        truth's attribute columns (prefixed ``attr:``).

    Raises:
        ConfigError: If the runs have no ``modality`` features.
        MissingDependencyError: If umap-learn is not installed.
    """
    import pandas as pd
    import torch

    first = _first(runs)
    if modality not in first.info.get("features", {}):
        raise ConfigError(f"Run {first.name} has no {modality} features (it has: "
                          f"{', '.join(sorted(first.info.get('features', {}))) or 'none'}).")
    ds = first.dataset
    if ds.n_items < 4:
        raise DataError(f"Dataset {ds.name!r} has {ds.n_items} items; an item map needs 4+.")
    k = int(min(max(int(n_neighbors), 2), ds.n_items - 1))
    if workspace is None and first.path.parent.name != "runs":
        use_cache = False  # a run outside a workspace: no cache to keep the map in
    cache = (_ws(workspace) if workspace is not None else Workspace(first.path.parent.parent)
             ).cache()
    params = {"modality": modality, "n_neighbors": k, "min_dist": float(min_dist),
              "seed": int(seed), "metric": "cosine", "align": "procrustes"}
    key = cache.key("item_space", fingerprints={v: r.fingerprint for v, r in runs.items()},
                    params=params)
    coords: dict[str, np.ndarray] = {}
    hit = cache.get("item_space", key) if use_cache else None
    if hit is not None:
        with np.load(hit / "coords.npz", allow_pickle=False) as z:
            coords = {v: z[v] for v in runs if v in z.files}
    if set(coords) != set(runs):
        umap = _umap()
        coords = {}
        for v, run in runs.items():
            with torch.no_grad():
                x = run.model.item_content(modality).detach().cpu().numpy().astype(np.float32)
            reducer = umap.UMAP(n_neighbors=k, min_dist=float(min_dist), metric="cosine",
                                random_state=int(seed), n_jobs=1)
            coords[v] = np.asarray(reducer.fit_transform(x), dtype=np.float32)  # [I, 2]
        if "without" in coords and "with" in coords:
            coords["with"] = _procrustes_onto(coords["with"], coords["without"])
        if use_cache:
            cache.put("item_space", key,
                      # numpy's stubs type **kwds like its `allow_pickle: bool`
                      lambda d: np.savez_compressed(d / "coords.npz",
                                                    **cast("dict[str, Any]", coords)),
                      {"runs": {v: r.name for v, r in runs.items()}, **params})
    counts = np.bincount(ds.interactions.train().item_idx, minlength=ds.n_items)
    df = pd.DataFrame({"item_id": list(ds.catalog.item_ids), "title": list(ds.catalog.titles),
                       "popularity": counts.astype(int)})
    for v, c in coords.items():
        df[f"x_{v}"], df[f"y_{v}"] = c[:, 0], c[:, 1]
    for name, col in _attribute_columns(ds).items():
        df[f"attr:{name}"] = col
    return df


def _procrustes_onto(moving: np.ndarray, fixed: np.ndarray) -> np.ndarray:
    """``moving`` rotated/reflected, scaled and shifted to best match ``fixed`` (least squares)."""
    from scipy.linalg import orthogonal_procrustes

    mc, fc = moving - moving.mean(0), fixed - fixed.mean(0)
    r, _ = orthogonal_procrustes(mc, fc)
    turned = mc @ r
    scale = float(np.sum(turned * fc) / max(np.sum(turned * turned), 1e-12))
    return (turned * scale + fixed.mean(0)).astype(np.float32)


def _attribute_columns(dataset: Any) -> dict[str, list[Any]]:
    """Categorical columns to colour items by: the catalog's extras and ground-truth
    attributes with 2–20 distinct values."""
    out: dict[str, list[Any]] = {}
    meta = dataset.catalog.meta
    frames = [meta] if meta is not None else []
    folder = _ground_truth_dir(dataset)
    if folder is not None and (folder / "attributes.csv").is_file():
        import pandas as pd

        attrs = pd.read_csv(folder / "attributes.csv", dtype={"item_id": str})
        attrs = attrs.set_index("item_id").reindex(list(dataset.catalog.item_ids))
        frames.append(attrs.reset_index(drop=True))
    for frame in frames:
        for c in frame.columns:
            name = str(c)
            if name in out or name in ("id", "item_id", "title", "text", "image"):
                continue
            col = frame[c]
            n = col.nunique(dropna=True)
            if 2 <= n <= 20 and len(col) == dataset.n_items:
                out[name] = [None if v is None or (isinstance(v, float) and np.isnan(v))
                             else str(v) for v in col.tolist()]
    return out


# ---- background scoring ------------------------------------------------------------------
class ScoreJob:
    """:func:`score_table` in a background thread, with progress and cancel.

    What the explorer's "Compute scores" runs, so that the page stays usable while items are
    scored: the app polls :attr:`progress` and :attr:`done`, a button calls :meth:`cancel`.
    The job never touches a UI; it only holds its result.

    Args:
        **request: Keyword arguments of :func:`score_table` (not ``on_progress`` or
            ``should_stop``, which the job sets).

    Example:
        >>> from befa_viz.testing import toy_workspace
        >>> job = ScoreJob(workspace=toy_workspace(), limit=2, method="gradcam")
        >>> job.wait(120).done, len(job.result), job.progress
        (True, 2, (2, 2))
    """

    def __init__(self, **request: Any) -> None:
        import threading

        bad = {"on_progress", "should_stop"} & set(request)
        if bad:
            raise ConfigError(f"ScoreJob sets {sorted(bad)} itself; leave them out.")
        self.request = request
        self.result: pd.DataFrame | None = None
        self.error: BaseException | None = None
        self._progress = (0, int(request.get("limit") or 0))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, name="befa-score-job", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        try:
            self.result = score_table(**self.request, on_progress=self._on_progress,
                                      should_stop=self._stop.is_set)
        except BaseException as e:  # kept for the caller to show; the thread must not die loud
            self.error = e

    def _on_progress(self, done: int, total: int) -> None:
        self._progress = (int(done), int(total))

    @property
    def progress(self) -> tuple[int, int]:
        """``(items scored, items requested)``."""
        return self._progress

    @property
    def done(self) -> bool:
        """The thread has finished (completed, cancelled or failed)."""
        return not self._thread.is_alive()

    @property
    def cancelled(self) -> bool:
        """:meth:`cancel` was called."""
        return self._stop.is_set()

    def cancel(self) -> None:
        """Stop before the next batch (the batch in flight finishes; its maps are cached)."""
        self._stop.set()

    def wait(self, timeout: float | None = None) -> ScoreJob:
        """Block until the job is done (or ``timeout`` seconds pass); returns the job."""
        self._thread.join(timeout)
        return self
