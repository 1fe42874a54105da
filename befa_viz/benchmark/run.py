"""Running the benchmark: sample items, compute (or reuse) every method x target map, score them."""

from __future__ import annotations

import hashlib
import inspect
import logging
import os
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from befa_viz.benchmark.report import _examples, _write_report
from befa_viz.benchmark.result import BenchmarkResult
from befa_viz.benchmark.scoring import (
    _CONTROL_METHOD,
    _KEY_TARGET_PARAMS,
    _MODEL_FREE,
    _P_PASS,
    BENCHMARK_VERSION,
    CHEAP_METHODS,
    DEFAULT_METHODS,
    DEFAULT_TARGETS,
    _word_labels,
    aggregate,
    random_map,
    score_image_maps,
    score_text_maps,
    sign_test,
)
from befa_viz.errors import ConfigError, DataError
from befa_viz.workspace import Workspace

log = logging.getLogger(__name__)

__all__ = ["benchmark_options", "run_benchmark", "sample_items"]


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
    from befa_viz.pipeline.maps import _dataset_mean_pixel

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
            mean_px = _dataset_mean_pixel(ds, encoder)
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
            from befa_viz.benchmark.on_ray import prefill_benchmark

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
