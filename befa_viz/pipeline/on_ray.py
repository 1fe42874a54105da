"""``heatmap --engine ray``: the attribution maps of many items computed on Ray actors.

Actors run :func:`~befa_viz.pipeline.explain_items` on batches of item ids; every map and score
lands in the workspace's attribution cache (atomic entries), and the driver's own
``explain_items`` then serves everything from the cache (ranking, report, sanity checks). The
actor pool, its progress bar and its statistics are :mod:`befa_viz.distributed.ray_jobs`'s;
this verb-level module only says what each actor runs (so the engine never imports a verb).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from befa_viz.distributed.ray_jobs import (
    TASKS_PER_WORKER,
    RayEngine,
    _run_pool,
    _set_threads,
    _summarise,
    _task_result,
)
from befa_viz.errors import ConfigError
from befa_viz.pipeline.runs import encoder_for_run, resolve_attribution_run

__all__ = ["prefill_attributions"]


class _ExplainWorker:
    """One actor: opens the run and its encoder once, when it starts (pipeline memos, so
    its first task is as fast as the others), then explains many batches."""

    def __init__(self, threads: int, kwargs: dict[str, Any]) -> None:
        _set_threads(threads)
        self.error: BaseException | None = None
        try:
            modality = kwargs.get("modality", "image")
            run = resolve_attribution_run(kwargs["workspace"], kwargs["run"], modality)
            _ = run.model
            encoder_for_run(run, modality)
        except Exception as e:  # raised by the first task: Ray keeps only the text of
            self.error = e  # an exception raised here, and we want the error itself

    def run(self, k: int, explain: Callable[..., Any], item_ids: list[str],
            kwargs: dict[str, Any]) -> dict[str, Any]:
        if self.error is not None:
            raise self.error
        t0, wall0, cpu0 = time.perf_counter(), time.time(), time.process_time()
        explain(item_ids, progress=False, **kwargs)
        return _task_result(k, t0, wall0, cpu0)


def prefill_attributions(explain: Callable[..., Any], item_ids: Sequence[str],
                         kwargs: dict[str, Any], engine: RayEngine, *,
                         items_per_task: int = 8) -> dict[str, Any]:
    """Compute every map and score :func:`~befa_viz.pipeline.explain_items` needs, on Ray.

    Actors call ``explain(batch, **kwargs)`` (the pipeline passes
    :func:`~befa_viz.pipeline.explain_items`; it reaches the actors by reference) on batches of at most ``items_per_task``
    items, fewer when that gives each worker at least :data:`TASKS_PER_WORKER` tasks (so the
    workers finish together); results land in the attribution cache named in ``kwargs``
    (entries are atomic, so a batch that was interrupted is recomputed and a finished one is
    served from the cache).

    Args:
        explain: The verb the actors run, :func:`~befa_viz.pipeline.explain_items`.
        item_ids: Raw item ids to explain.
        kwargs: ``explain_items`` keyword arguments (``workspace`` and ``run`` as paths,
            ``use_cache`` true).
        engine: Where to run.
        items_per_task: Most items per actor call (and per attribution batch).

    Returns:
        ``engine.stats`` of this job.

    Raises:
        ConfigError: ``use_cache`` is false (the cache is how results come back).
    """
    if not kwargs.get("use_cache", True):
        raise ConfigError("--engine ray writes the maps into the attribution cache and reads "
                          "them back; it cannot run with --no-cache.")
    if items_per_task < 1:
        raise ConfigError(f"items_per_task must be >= 1; got {items_per_task}.")
    ray = engine.init()
    t0 = time.perf_counter()
    ids = [str(i) for i in item_ids]
    n_workers = engine.workers(ray)
    size = min(int(items_per_task), max(1, -(-len(ids) // (TASKS_PER_WORKER * n_workers))))
    batches = [ids[s: s + size] for s in range(0, len(ids), size)]
    worker = engine._actor(ray, _ExplainWorker)
    results = _run_pool(
        ray, engine, lambda: worker.remote(engine.threads_per_worker, kwargs), n_workers,
        [(explain, b, kwargs) for b in batches], [len(b) for b in batches],
        "attribute on Ray", "item", lambda: "finished batches are kept in the cache")
    _summarise(engine, results, min(n_workers, len(batches)), len(batches),
               time.perf_counter() - t0)
    return engine.stats
