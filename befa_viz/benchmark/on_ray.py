"""``benchmark --engine ray``: the benchmark's missing maps computed on Ray actors.

The driver finds which of the benchmark's maps are not cached yet, actors compute them (one
task per batch of items, the batches of the single-process path) through the benchmark's own
map function, and the benchmark then serves every map from the cache and scores it as usual.
The actor pool is :mod:`befa_viz.distributed.ray_jobs`'s; this module says what each actor runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from befa_viz import pipeline
from befa_viz.attribution.cache import AttributionCache
from befa_viz.cache import Cache
from befa_viz.distributed.ray_jobs import (
    RayEngine,
    _run_pool,
    _set_threads,
    _summarise,
    _task_result,
)
from befa_viz.errors import ConfigError

__all__ = ["prefill_benchmark"]

class _MissingProbe:
    """Stands in for a benchmark job's attribution cache: records which maps are missing
    instead of computing them (every request answers "cached", with no map)."""

    def __init__(self, cache: Any) -> None:
        self.cache = cache
        self.missing: list[int] = []

    def get_or_compute(self, keys: Sequence[Any], compute: Any, *, use_cache: bool = True
                       ) -> tuple[list[Any], list[bool]]:
        self.missing = [i for i, k in enumerate(keys) if self.cache.get(k) is None]
        return [None] * len(keys), [True] * len(keys)


class _BenchmarkWorker:
    """One actor: opens each benchmark job (runs, dataset, encoder) once, computes many
    batches of maps through the benchmark's own map function (so keys and batches are the
    single-process ones)."""

    def __init__(self, threads: int, specs: dict[str, Any]) -> None:
        _set_threads(threads)
        self.jobs: dict[str, Any] = {}
        self.error: BaseException | None = None
        try:
            for name, spec in specs.items():  # opened when the actor starts, not in a task
                runs = {v: pipeline.load_run(spec.ws, p) for v, p in spec.runs.items()}
                for r in runs.values():
                    _ = r.model
                self.jobs[name] = replace(
                    spec, runs=runs, ds=runs["without"].dataset,
                    encoder=pipeline.encoder_for_run(runs["without"], spec.modality),
                    cache=AttributionCache(Cache(spec.cache)))
        except Exception as e:  # raised by the first task (see _ExplainWorker)
            self.error = e

    def run(self, k: int, name: str, maps: Callable[..., Any], variant: str, method: str,
            target: str, idx: list[int]) -> dict[str, Any]:
        if self.error is not None:
            raise self.error
        t0, wall0, cpu0 = time.perf_counter(), time.time(), time.process_time()
        job = self.jobs[name]
        before = job.n_computed
        maps(job, variant, method, target, idx)
        return _task_result(k, t0, wall0, cpu0, maps=job.n_computed - before)


def prefill_benchmark(jobs: Mapping[str, Any],
                      calls: Sequence[tuple[str, str, str, str, list[int]]],
                      maps: Callable[..., Any], engine: RayEngine) -> dict[str, Any]:
    """Compute the benchmark's missing maps on Ray, into its attribution cache.

    ``maps(job, variant, method, target, idx)`` is the benchmark's map function: it builds
    the cache keys, serves what is cached and computes the rest in batches of
    ``job.batch_size`` items through ``job.cache.get_or_compute``. The driver first runs it
    with a probe in place of the cache to learn which maps are missing (nothing is
    computed, and Ray is not started when nothing is missing); each batch of missing items
    of a call is then one actor task running ``maps`` on it, so the batches (and the maps)
    are those of the single-process path. Finished batches stay in the cache: an
    interrupted job resumes, with or without Ray.

    Args:
        jobs: The benchmark's jobs by modality (dataclasses with ``ws``, ``runs``,
            ``modality``, ``cache``, ``batch_size``, ``use_cache`` and counters).
        calls: ``(modality, variant, method, target, item indices)``: every ``maps`` call
            the benchmark will make.
        maps: The benchmark's map function (shipped to the actors by reference).
        engine: Where to run.

    Returns:
        ``engine.stats`` of this job, with ``maps`` (computed on Ray).

    Raises:
        ConfigError: The jobs do not use the cache (the cache is how maps come back).
    """
    if not all(j.use_cache for j in jobs.values()):
        raise ConfigError("--engine ray writes the maps into the attribution cache and reads "
                          "them back; it cannot run with --no-cache.")
    t0 = time.perf_counter()
    tasks: list[tuple[Any, ...]] = []
    for modality, variant, method, target, idx in calls:
        job = jobs[modality]
        probe = _MissingProbe(job.cache)
        maps(replace(job, cache=probe, bar=None, n_computed=0, n_cached=0), variant, method,
             target, list(idx))
        todo = [idx[p] for p in probe.missing]
        for s in range(0, len(todo), job.batch_size):
            tasks.append((modality, variant, method, target, todo[s: s + job.batch_size]))
    n_maps = sum(len(t[-1]) for t in tasks)
    engine.stats.update(maps=n_maps, maps_requested=sum(len(c[-1]) for c in calls))
    if not tasks:
        engine.stats.update(workers=0, tasks=0, seconds=round(time.perf_counter() - t0, 3))
        return engine.stats
    ray = engine.init()
    # what the actors need to reopen each job: paths, not runs, encoders or datasets
    specs = {m: replace(j, ds=None, encoder=None, bar=None, n_computed=0, n_cached=0,
                        runs={v: str(r.path) for v, r in j.runs.items()},
                        cache=str(j.cache.cache.root))
             for m, j in jobs.items() if any(t[0] == m for t in tasks)}
    n_workers = engine.workers(ray)
    worker = engine._actor(ray, _BenchmarkWorker)
    results = _run_pool(
        ray, engine, lambda: worker.remote(engine.threads_per_worker, specs), n_workers,
        [(m, maps, v, meth, tg, idx) for m, v, meth, tg, idx in tasks],
        [len(t[-1]) for t in tasks], "benchmark maps on Ray", "map",
        lambda: "finished batches of maps are kept in the cache")
    _summarise(engine, results, min(n_workers, len(tasks)), len(tasks),
               time.perf_counter() - t0)
    return engine.stats
