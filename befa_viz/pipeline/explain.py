"""Explain verbs: an item's maps and scores without and with the adapter.

Attributions are computed per (run, item) and stored in the workspace cache
(:mod:`befa_viz.attribution.cache`); a "variant" is one side of the with/without-adapter pair:
"without" (adapter 'none') or "with" (adapter 'befa', ...). Warm requests (the explorer's item
switch) must not run the encoder at all: scores computed from a map (faithfulness curves,
drift/omission; :mod:`~befa_viz.pipeline.scores`) are cached beside it (ScoreCache, keyed by
the map's key, the digests of the map and relevance map, and the scoring parameters), and
encoders and runs are kept in small in-process memos (:mod:`~befa_viz.pipeline.memos`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from befa_viz.pipeline.maps import (
    _VARIANT_TITLES,
    DEFAULT_BASELINES,
    DEFAULT_TARGET,
    VARIANTS,
    _attributions,
    _inputs,
    _item_meta,
    _item_text,
    _Job,
    _method_options,
    _target_for,
)
from befa_viz.pipeline.memos import _COMPUTE_LOCK, _open_run
from befa_viz.pipeline.runs import (
    _attr_ws,
    _feature_of,
    _find_paired_dir,
    _variant_of,
    encoder_for_run,
    resolve_attribution_run,
)
from befa_viz.pipeline.scores import _ground_truth, _item_gate, _num, _text_truth, _variant_scores
from befa_viz.workspace import Workspace

log = logging.getLogger(__name__)

__all__ = ["ItemExplanation", "benchmark_verdicts", "default_recipe", "explain_item", "explain_items",
           "workspace_defaults_path"]


@dataclass(eq=False)
class ItemExplanation:
    """One item explained with one target and method, without and/or with the adapter.

    Attributes:
        item_id: Raw item id (the dataset's original id).
        item_idx: The item's index in the dataset and the models.
        modality: ``"image"`` or ``"text"``.
        item: Metadata for figures: ``id``, ``title``, ``text``, the dataset, the number of
            training users, and the catalog's extra columns.
        attributions: ``{"without": Attribution, "with": Attribution}`` (one entry when the
            run has no paired run or no comparison was asked for).
        scores: Per variant: ``drift``, ``omission`` (with ``q``, see
            :mod:`befa_viz.metrics.attribution`) against ``relevance``, ``deletion_auc`` /
            ``insertion_auc`` (faithfulness of the attributed target; ``None`` when
            f(x) − f(baseline) is too small next to the curve's swing to normalise it, see
            ``deletion_resolution`` / ``insertion_resolution``, ``faithfulness_f_x`` /
            ``faithfulness_f_baseline`` and :func:`befa_viz.metrics.perturbation_auc`),
            ``delta`` (IG completeness error) and ``mass_in_mask`` (ground truth only).
        relevance: ``{"source": "ground_truth" | "behaviour_alignment", "note": str,
            "map": array}``: what drift and omission are measured against.
        runs: Run name per variant.
        gate: Per variant: the run's adapter gate distribution for this modality (empty
            without the adapter) plus this item's ``item_gate_mean`` / ``min`` / ``max``.
        params: The request: target, method, options, user, encoder, dataset.
        cached: Per variant, whether the map came from the cache.
        sanity: Per variant, the item's Spearman ρ with each sanity control and whether it
            passes (``None`` unless asked for).
        scores_cached: Per variant, whether its scores came from the score cache (no encoder
            pass was needed).
    """

    item_id: str
    item_idx: int
    modality: str
    item: dict[str, Any]
    attributions: dict[str, Any]
    scores: dict[str, dict[str, Any]]
    relevance: dict[str, Any]
    runs: dict[str, str]
    gate: dict[str, dict[str, Any]]
    params: dict[str, Any]
    cached: dict[str, bool] = field(default_factory=dict)
    sanity: dict[str, dict[str, Any]] | None = None
    scores_cached: dict[str, bool] = field(default_factory=dict)

    @property
    def variants(self) -> list[str]:
        """The variants present, ``"without"`` first."""
        return [v for v in VARIANTS if v in self.attributions]

    def figure_pairs(self) -> Any:
        """``(without, with)`` for a pair, else the single Attribution (for ``viz``)."""
        if len(self.attributions) == 2:
            return self.attributions["without"], self.attributions["with"]
        return next(iter(self.attributions.values()))

    def figure_scores(self) -> dict[str, dict[str, Any]]:
        """Scores keyed by readable variant labels, numbers only (for ``viz`` tables)."""
        keys = ("drift", "omission", "deletion_auc", "insertion_auc", "mass_in_mask", "delta")
        return {_VARIANT_TITLES[v]: {k: self.scores[v][k] for k in keys
                                     if self.scores[v].get(k) is not None}
                for v in self.variants}

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary (no arrays)."""
        return {
            "item_id": self.item_id, "item_idx": self.item_idx, "modality": self.modality,
            "item": self.item, "runs": self.runs, "params": self.params,
            "relevance": {k: v for k, v in self.relevance.items() if k != "map"},
            "scores": self.scores, "gate": self.gate, "cached": self.cached,
            "scores_cached": self.scores_cached, "sanity": self.sanity,
            "attributions": {v: {"method": a.method, "target": a.target, "delta": a.delta,
                                 "shape": list(np.shape(a.values))}
                             for v, a in self.attributions.items()},
        }

    def csv_row(self) -> dict[str, Any]:
        """One flat row: item, request, then ``<score>_<variant>`` columns."""
        row: dict[str, Any] = {"item_id": self.item_id, "title": self.item.get("title", ""),
                               "modality": self.modality, "target": self.params["target"],
                               "method": self.params["method"],
                               "relevance": self.relevance["source"]}
        for v in self.variants:
            row[f"run_{v}"] = self.runs[v]
            for k in ("drift", "omission", "deletion_auc", "insertion_auc", "mass_in_mask",
                      "delta", "verdict", "unscored"):
                row[f"{k}_{v}"] = self.scores[v].get(k)
            if self.gate.get(v, {}).get("item_gate_mean") is not None:
                row[f"item_gate_mean_{v}"] = self.gate[v]["item_gate_mean"]
        return row


def default_recipe(workspace: Workspace | str | os.PathLike[str] | None = None,
                   run: Any = None, modality: str = "image", dataset: str | None = None
                   ) -> Any:  # -> MethodDefault
    """The evidence-chosen attribution recipe for a run's encoder, as ``heatmap`` uses it.

    Frontends (explorer, notebooks) call this so their default method is the one the
    benchmark chose (:func:`befa_viz.attribution.defaults.default_method`: the workspace's
    own benchmark first, then the package defaults); text keeps ``ig``.

    Args:
        workspace: Workspace (or its folder).
        run: Run (or name/folder); default the newest explainable run of ``dataset``.
        modality: ``"image"`` or ``"text"``.
        dataset: Dataset of the default run.

    Returns:
        The :class:`~befa_viz.attribution.defaults.MethodDefault` (method, target, baseline,
        steps, whether it passed its controls, and its evidence).
    """
    from befa_viz.attribution.defaults import MethodDefault, default_method

    ws = _attr_ws(workspace)
    if modality != "image":
        return MethodDefault(method="ig", target=DEFAULT_TARGET, baseline=None,
                             source="text: ig (the benchmark ranks image methods only)")
    r = resolve_attribution_run(ws, run, modality, dataset)
    key = str(getattr(r.features[modality], "encoder_key", "") or "") or None
    return default_method(key, workspace=ws)


def workspace_defaults_path(workspace: Workspace | str | os.PathLike[str]) -> Path:
    """Where ``befa-viz benchmark`` records a workspace's evidence-chosen defaults."""
    from befa_viz.attribution.defaults import workspace_defaults_path as path

    return path(workspace)


def _default_recipe(ws: Workspace, run: Any, modality: str, target: str | None,
                    baseline: str | None, n_steps: int | None, user: str | None
                    ) -> tuple[str, str | None, str | None, int | None, Any]:
    """Method, target, baseline and steps from the evidence-chosen default of the run's
    encoder (text keeps ``ig``: the shop benchmark ranks image methods only)."""
    from befa_viz.attribution.defaults import default_method

    if modality != "image":
        return "ig", target, baseline, n_steps, None
    key = str(getattr(run.features[modality], "encoder_key", "") or "") or None
    rec = default_method(key, workspace=ws)
    log.info("default attribution for %s: %s / %s (%s; passes its controls: %s)", key,
             rec.method, rec.target, rec.source, rec.passes)
    return (rec.method, target or (None if user is not None else rec.target),
            baseline or rec.baseline, n_steps if n_steps is not None else rec.n_steps, rec)


def benchmark_verdicts(workspace: Workspace | str | os.PathLike[str], dataset: str
                       ) -> dict[tuple[str, str, str], dict[str, Any]] | None:
    """The newest benchmark table of ``dataset`` in a workspace, keyed by (variant, method,
    target); ``None`` if the dataset was never benchmarked.

    Rows carry ``passes`` (the benchmark's rule), the margins and p-values, and
    ``source`` (the table's path); see :func:`befa_viz.viz.verdict.benchmark_table_verdicts`.
    """
    import pandas as pd

    from befa_viz.viz.verdict import benchmark_table_verdicts

    root = _attr_ws(workspace).reports_dir
    tables = sorted(root.glob(f"benchmark-{dataset}-*/table.csv"),
                    key=lambda p: p.stat().st_mtime)
    if not tables:
        return None
    path = tables[-1]
    return benchmark_table_verdicts(pd.read_csv(path), f"benchmark {dataset} ({path})")


def explain_items(
    item_ids: Any = None,
    *,
    top_drift: int | None = None,
    workspace: Workspace | str | os.PathLike[str] | None = None,
    run: Any = None,
    modality: str = "image",
    target: str | None = None,
    method: str | None = None,
    n_steps: int | None = None,
    baseline: str | None = None,
    user: str | None = None,
    compare_adapter: bool = True,
    use_cache: bool = True,
    cache: Any = None,
    sanity: bool = False,
    q: float = 0.5,
    faithfulness_steps: int = 20,
    batch_size: int = 8,
    seed: int = 0,
    progress: bool = False,
    engine: Any = None,
) -> list[ItemExplanation]:
    """Explain several items (or the ``top_drift`` most drifting ones) with and without BeFA.

    Items are batched: all uncached maps of one variant are computed in chunks of
    ``batch_size`` items (items and integration steps in one pass, see
    :mod:`befa_viz.attribution.methods`). Maps are cached in the workspace
    (:mod:`befa_viz.attribution.cache`), and so are the scores computed from them (keyed by
    the map's key, the digests of the map and relevance map, ``q`` and
    ``faithfulness_steps``): a repeated request runs no encoder pass. Encoders and runs are
    reused across calls through in-process memos (:func:`clear_memos`).

    Drift and omission are measured against a relevance map: the dataset's ground-truth mask
    when it has one (the synthetic shop's product mask; for text, its relevant words), else
    the behaviour-alignment map (cos(ċ(E(x)), e_i), same method) of the run without the
    adapter (of the run itself when there is no pair; that target never uses the adapter).

    Args:
        item_ids: Raw item ids (the dataset's original ids), or one id.
        top_drift: Instead of ids: explain every item that has the modality (and, for
            ``content_score``, training users) and keep the ``top_drift`` with the largest
            drift of the explained run's variant. Costs one map per item and variant.
        workspace: Workspace (or its folder).
        run: A :class:`~befa_viz.train.Run`, a run name or folder; default the newest
            complete run of the current dataset with ``modality`` features.
        modality: ``"image"`` or ``"text"``.
        target: Name in ``befa_viz.attribution.TARGETS``; default ``content_score`` (the
            content pathway's score for the item's users, comparable with and without the
            adapter), or ``user_score`` when ``user`` is given.
        method: Name in ``befa_viz.attribution.ATTRIBUTIONS``.
        n_steps: Integration steps (path methods).
        baseline: ``black``, ``white``, ``blur``, ``mean`` (images) or ``pad`` (text);
            default ``blur`` / ``pad``.
        user: Raw user id for ``user_score``.
        compare_adapter: Explain the paired run with the other adapter setting too (an error
            when there is none).
        use_cache: Read and write the attribution cache.
        cache: A :class:`~befa_viz.cache.Cache` (default: the workspace's).
        sanity: Also run the sanity controls (model / target randomisation, input only).
        q: Mass share defining the top regions of drift and omission.
        faithfulness_steps: Points of the deletion / insertion curves.
        batch_size: Items per attribution call.
        seed: Seed for random targets and noisy methods.
        progress: Show a progress bar.
        engine: A :class:`~befa_viz.distributed.RayEngine`: compute the maps and scores on
            Ray actors first (into the attribution cache, which this call then reads);
            ``None`` computes them here.

    Returns:
        One explanation per item, in the order asked (``top_drift``: most drifting first).

    Raises:
        UnknownNameError: Unknown item, user, target or method (closest names suggested).
        DataError: An item without an image (image modality) or without text, or without
            training users for ``content_score``.
        ConfigError: ``n_steps`` ≤ 0, no paired run for ``compare_adapter``, a run without
            ``modality`` features, a ``user`` with a target that takes none.
        StaleArtifactError: The run's features came from another encoder than the one
            available now.
    """
    from befa_viz.attribution import ATTRIBUTIONS, TARGETS, sanity_check
    from befa_viz.attribution.cache import AttributionCache, ScoreCache
    from befa_viz.cache import Cache
    from befa_viz.errors import ConfigError, DataError

    if (item_ids is None) == (top_drift is None):
        raise ConfigError("Give item ids or top_drift=N (not both, not neither).")
    if top_drift is not None and int(top_drift) < 1:
        raise ConfigError(f"top_drift must be >= 1; got {top_drift}.")
    if n_steps is not None and int(n_steps) < 1:
        raise ConfigError(f"n_steps (--steps) must be >= 1; got {n_steps}.")
    if modality not in DEFAULT_BASELINES:
        raise ConfigError(f"modality must be 'image' or 'text'; got {modality!r}.")
    if int(batch_size) < 1:
        raise ConfigError(f"batch_size must be >= 1; got {batch_size}.")
    if method is not None:
        ATTRIBUTIONS.get(method)
    ws = _attr_ws(workspace)
    main_run = resolve_attribution_run(ws, run, modality)
    recipe = None
    if method is None:  # the evidence-chosen default (befa_viz.attribution.default_method)
        method, target, baseline, n_steps, recipe = _default_recipe(
            ws, main_run, modality, target, baseline, n_steps, user)
    target = target or ("user_score" if user is not None else DEFAULT_TARGET)
    TARGETS.get(target)
    if user is not None and target != "user_score":
        raise ConfigError(f"A user was given but target {target!r} does not use one; use "
                          "target 'user_score' (--target user_score) or drop --user.")
    runs = {_variant_of(main_run): main_run}
    if compare_adapter:
        pair_dir = _find_paired_dir(ws, main_run)
        pair = None if pair_dir is None else _open_run(pair_dir, main_run.device)
        if pair is None:
            other = "none" if _variant_of(main_run) == "with" else "befa"
            raise ConfigError(
                f"Run {main_run.name} has no paired run with adapter {other!r} (same dataset "
                f"{main_run.info.get('dataset')!r}, model {main_run.config.model!r}, seed "
                f"{main_run.config.seed}, features). Train it with 'befa-viz train --model "
                f"{main_run.config.model} --adapter {other} --seed {main_run.config.seed} "
                f"--dataset {main_run.info.get('dataset')}', or use --compare none."
            )
        runs[_variant_of(pair)] = pair
    runs = {v: runs[v] for v in VARIANTS if v in runs}
    encoder = encoder_for_run(main_run, modality)
    for r in runs.values():
        _feature_of(r, modality)
    ds = main_run.dataset
    user_idx = ds.user_index_of(user) if user is not None else None
    train_users = np.bincount(ds.interactions.train().item_idx, minlength=ds.n_items)
    needs_users = target in ("content_score", "adapted_alignment")

    if top_drift is not None:
        if modality == "image":
            pool = [i for i in range(ds.n_items) if ds.catalog.has_image(i)]
        else:
            feat = main_run.features["text"]
            pool = [i for i in range(ds.n_items) if _item_text(ds, i, feat).strip()]
        if needs_users:
            pool = [i for i in pool if train_users[i] > 0]
        log.info("top_drift: explaining %d of %d items (the rest lack %s%s)", len(pool),
                 ds.n_items, modality, " or training users" if needs_users else "")
        idx = pool
        if not idx:
            raise DataError(f"No item of dataset {ds.name!r} can be explained with {modality}.")
    else:
        ids = [item_ids] if isinstance(item_ids, (str, int)) else list(item_ids)
        if not ids:
            raise ConfigError("No item ids given.")
        idx = [ds.catalog.index_of(i) for i in ids]
        for i in idx:
            iid = ds.catalog.item_ids[i]
            if modality == "image" and not ds.catalog.has_image(i):
                raise DataError(f"Item {iid!r} has no image in dataset {ds.name!r}; explain "
                                "its text instead (--modality text).")
            if needs_users and train_users[i] == 0:
                raise DataError(
                    f"Item {iid!r} has no training interactions, so target {target!r} (its "
                    "users' content score) is undefined. Use --target behaviour_alignment, "
                    "or --user ID with --target user_score.")
        if modality == "text":
            feat = main_run.features["text"]
            empty = [ds.catalog.item_ids[i] for i in idx if not _item_text(ds, i, feat).strip()]
            if empty:
                raise DataError(f"Item {empty[0]!r} has no text in dataset {ds.name!r}; "
                                "explain its image instead (--modality image).")

    options = _method_options(method, modality, n_steps, baseline, ds, encoder)
    cache_obj = cache if isinstance(cache, Cache) else (Cache(cache) if cache else ws.cache())
    if engine is not None:  # the same calls on Ray actors, one batch of items per task
        from befa_viz.pipeline.on_ray import prefill_attributions

        engine.progress = engine.progress or progress
        prefill_attributions(
            explain_items, [ds.catalog.item_ids[i] for i in idx],
            {"workspace": str(ws.root), "run": str(main_run.path), "modality": modality,
             "target": target, "method": method, "n_steps": n_steps, "baseline": baseline,
             "user": user, "compare_adapter": compare_adapter, "use_cache": use_cache,
             "cache": str(cache_obj.root), "q": q, "faithfulness_steps": faithfulness_steps,
             "batch_size": batch_size, "seed": seed}, engine, items_per_task=int(batch_size))
    job = _Job(ws=ws, ds=ds, encoder=encoder, runs=runs, modality=modality, target=target,
               method=method, options=options, user_idx=user_idx, user=user, seed=seed,
               cache=AttributionCache(cache_obj), scores=ScoreCache(cache_obj),
               use_cache=use_cache,
               batch_size=int(batch_size), dataset_fingerprint=ds.fingerprint())

    gt = _ground_truth(ds)
    rel_variant = "without" if "without" in runs else next(iter(runs))
    need_rel_maps = gt is None or modality == "text" or \
        not all(gt.is_usable(i) for i in idx)  # unusable garment masks: behaviour relevance
    total = len(idx) * (len(runs) + (1 if need_rel_maps else 0))
    if progress:
        from tqdm.auto import tqdm

        job.bar = tqdm(total=total, desc=f"{method} {modality}", unit="map")
    try:
        maps: dict[str, list[Any]] = {}
        hits: dict[str, list[bool]] = {}
        rel_hits: list[bool] = []
        for v in runs:
            maps[v], hits[v] = _attributions(job, v, idx, _target_for(v, target))
        rel_maps: list[Any] | None = None
        if need_rel_maps:
            if target == "behaviour_alignment" and rel_variant in maps:
                rel_maps = maps[rel_variant]
            else:
                rel_maps, rel_hits = _attributions(job, rel_variant, idx,
                                                   "behaviour_alignment")
    except KeyboardInterrupt:
        from befa_viz.errors import Interrupted

        if not use_cache:
            raise Interrupted("interrupted; nothing kept (--no-cache)") from None
        raise Interrupted(f"interrupted; {job.kept} of {total} maps kept in the cache, rerun "
                          "resumes") from None
    finally:
        if job.bar is not None:
            job.bar.close()
    n_hits = sum(map(sum, hits.values())) + sum(rel_hits)
    if use_cache and 0 < n_hits < total:
        log.info("resumed: %d of %d maps came from the cache, %d computed", n_hits, total,
                 job.kept)

    sanity_out: dict[str, Any] = {}
    if sanity:
        for v, r in runs.items():
            with _COMPUTE_LOCK:
                rep = sanity_check(encoder, r.model, _inputs(job, idx), idx,
                                   target=_target_for(v, target), method=method, seed=seed,
                                   attributions=maps[v], modality=modality,
                                   users=ds.interactions.train(), user_idx=user_idx,
                                   **options)
            sanity_out[v] = rep

    text_field = (main_run.features[modality].manifest.get("policies") or {}).get(
        "text_field", "text") if modality == "text" else None
    from befa_viz.viz.verdict import map_verdict

    bench = benchmark_verdicts(ws, ds.name) if modality == "image" else None
    out: list[ItemExplanation] = []
    for j, i in enumerate(idx):
        iid = ds.catalog.item_ids[i]
        relevance: dict[str, Any]
        rel_map, is_mask = None, False
        if gt is not None and modality == "image" and gt.is_usable(i):
            rel_map, is_mask = gt.relevant[i], True
            relevance = {"source": "ground_truth",
                         "note": "planted product mask of the synthetic shop" if gt.planted
                         else "garment mask from the packshot background"}
        elif gt is not None and modality == "text" and text_field in ("text", "title"):
            rel_map = _text_truth(gt, iid, str(text_field), _inputs(job, [i])[0],
                                  maps[next(iter(maps))][j])
            is_mask = rel_map is not None
            relevance = {"source": "ground_truth",
                         "note": "planted relevant words" if gt.planted else
                         "weak labels: attribute words (colour, type, pattern) in the text"}
        if rel_map is None:
            assert rel_maps is not None
            rel_map = np.asarray(rel_maps[j].values, dtype=np.float64)
            relevance = {"source": "behaviour_alignment",
                         "note": f"{method} map of cos(projected content, behaviour embedding)"
                                 f" of run {runs[rel_variant].name}"}
            if gt is not None:
                relevance["note"] += " (the ground-truth words could not be aligned)"
        relevance["map"] = rel_map
        scores: dict[str, dict[str, Any]] = {}
        scores_hit: dict[str, bool] = {}
        for v in runs:
            sc, scores_hit[v] = _variant_scores(job, v, i, _target_for(v, target), maps[v][j],
                                                rel_map, is_mask, q, faithfulness_steps)
            scores[v] = {**sc, "relevance": relevance["source"]}
        san = None
        if sanity:
            san = {v: {"rho": {c: _num(rep.rho[c][j]) for c in rep.rho},
                       "passes": bool(rep.item_passes[j]),
                       "method_passes": bool(rep.passes), "max_rho": rep.max_rho}
                   for v, rep in sanity_out.items()}
        for v in runs:  # every map carries its verdict (figures read params["verdict"])
            verdict = map_verdict(maps[v][j], benchmark=bench,
                                  sanity=None if san is None else san.get(v))
            maps[v][j].params["verdict"] = verdict.to_dict()
            scores[v]["verdict"] = verdict.label()
        out.append(ItemExplanation(
            item_id=iid, item_idx=int(i), modality=modality,
            item=_item_meta(ds, i, int(train_users[i])),
            attributions={v: maps[v][j] for v in runs}, scores=scores, relevance=relevance,
            runs={v: r.name for v, r in runs.items()},
            gate={v: _item_gate(r, modality, i) for v, r in runs.items()},
            params={"target": target, "method": method, **options, "run": main_run.name,
                    "default_from": None if recipe is None else recipe.source,
                    "variant": _variant_of(main_run),
                    "user": user, "seed": seed, "encoder": encoder.key,
                    "encoder_fingerprint": encoder.fingerprint(), "dataset": ds.name,
                    "dataset_fingerprint": job.dataset_fingerprint, "q": q},
            cached={v: hits[v][j] for v in runs}, sanity=san, scores_cached=scores_hit))
    if top_drift is not None:
        rank_v = _variant_of(main_run)

        def drift_of(e: ItemExplanation) -> float:
            d = e.scores[rank_v]["drift"]
            return -1.0 if d is None else float(d)

        out = sorted(out, key=drift_of, reverse=True)[: int(top_drift)]
    return out


def explain_item(
    item_id: str | int,
    *,
    workspace: Workspace | str | os.PathLike[str] | None = None,
    run: Any = None,
    modality: str = "image",
    target: str | None = None,
    method: str | None = None,
    n_steps: int | None = None,
    baseline: str | None = None,
    user: str | None = None,
    compare_adapter: bool = True,
    use_cache: bool = True,
    sanity: bool = False,
    progress: bool = False,
    **kwargs: Any,
) -> ItemExplanation:
    """Explain one item's image or text without and with the BeFA adapter, with scores.

    See :func:`explain_items` for the arguments, the relevance map and the errors.

    Returns:
        The item's :class:`ItemExplanation` (``attributions``, ``scores``, ``gate``, ...).

    Example:
        >>> from befa_viz.testing import toy_workspace
        >>> ws = toy_workspace()
        >>> e = explain_item("i3", workspace=ws, n_steps=4)
        >>> e.variants, e.relevance["source"], {"drift", "deletion_auc"} <= set(e.scores["with"])
        (['without', 'with'], 'behaviour_alignment', True)
    """
    return explain_items(
        [item_id], workspace=workspace, run=run, modality=modality, target=target,
        method=method, n_steps=n_steps, baseline=baseline, user=user,
        compare_adapter=compare_adapter, use_cache=use_cache, sanity=sanity,
        progress=progress, **kwargs)[0]
