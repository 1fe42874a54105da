"""Map-style jobs on Ray: encode a catalog, attribute many items.

Both jobs keep the single-process code as the unit of work and only decide *who* runs which
part, so that results, cache keys, manifests and resume are those of the single-process path:

* **encode** (:func:`encode_catalog_ray`): the driver writes the entry's plan (the chunk grid
  of :func:`~befa_viz.encoders.store.encode_catalog`), then a pool of actors runs
  ``encode_catalog(shard=(i, n), merge=False)`` for the shards that still have missing chunks.
  Every finished chunk is written atomically by the worker that computed it, so an interrupted
  job (Ctrl-C, a lost node) resumes from the chunks on disk; the driver merges once at the end.
* **attribution** (:func:`befa_viz.pipeline.on_ray.prefill_attributions`): actors run
  :func:`~befa_viz.pipeline.explain_items` on batches of item ids; every map and score lands in
  the workspace's attribution cache (atomic entries), and the driver's own ``explain_items``
  then serves everything from the cache (ranking, report, sanity checks).
* **benchmark** (:func:`befa_viz.benchmark.on_ray.prefill_benchmark`): the driver finds which of the benchmark's maps
  are not cached yet, actors compute them (one task per batch of items, the batches of the
  single-process path) through the benchmark's own map function, and the benchmark then
  serves every map from the cache and scores it as usual.

This module is the engine (the actor pool, its bar, statistics and errors, and the encode job);
the two verb-level jobs live beside their verbs and hand the pool what an actor runs, so the
engine never imports a verb.

Each actor builds its encoder (or opens its runs, through the pipeline's memos) once and reuses
it for all its tasks. Workers need the workspace (dataset, images, feature store, runs) at the
same path: a local Ray, or a cluster on a shared filesystem.
"""

from __future__ import annotations

import json
import logging
import math
import os
import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from befa_viz.cache import Cache
from befa_viz.data.types import Catalog
from befa_viz.errors import BefaVizError, ConfigError, Interrupted, MissingDependencyError

__all__ = ["RayEngine", "RayWorkerLost", "encode_catalog_ray", "require_ray"]

log = logging.getLogger(__name__)

#: Tasks per worker in a job: small enough tasks keep the workers busy to the end and move
#: the progress bar, few enough that the per-task overhead (a catalog scan) stays small.
TASKS_PER_WORKER = 4


class RayWorkerLost(BefaVizError, RuntimeError):
    """A Ray worker died (killed for memory, node lost); what it finished is kept."""


def require_ray() -> Any:
    """Import Ray, or raise one clear line naming the extra to install.

    Raises:
        MissingDependencyError: Ray is not installed.
    """
    try:
        import ray
    except ImportError:
        raise MissingDependencyError(
            "Ray is not installed; --engine ray needs it. Install with: "
            "pip install 'befa-viz[ray]'."
        ) from None
    return ray


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


@dataclass
class RayEngine:
    """Where and how wide a Ray job runs.

    Attributes:
        address: ``None`` starts a local Ray with ``num_workers`` CPUs (loopback only);
            ``"auto"`` joins the cluster this machine belongs to; ``"ray://host:10001"`` or
            ``"host:6379"`` joins that cluster.
        num_workers: Actors per job; default one per ``threads_per_worker`` CPUs of the
            cluster (local: of this machine).
        threads_per_worker: Torch threads (and Ray CPUs) per actor.
        gpus_per_worker: GPUs per actor (``device`` must then be ``cuda``).
        progress: Show a progress bar over the whole job.
        connect_timeout: Seconds to wait for the cluster at ``address`` before one clear
            error (a closed port fails at once; a port that answers but is no Ray head
            costs one of Ray's own connection attempts, about 40 s).
        stats: Filled by each job: ``workers``, ``tasks``, ``items``, ``seconds`` (wall),
            ``startup_seconds`` (``ray.init``), ``actor_start_seconds`` (pool created → the
            last actor's first task), ``worker_seconds`` / ``worker_cpu_seconds`` (summed
            over tasks), ``steady_items_per_min`` (once warm), ``peak_rss_mb`` per worker;
            the benchmark adds ``maps`` (computed on Ray).

    Example:
        >>> RayEngine(num_workers=2).address is None
        True
    """

    address: str | None = None
    num_workers: int | None = None
    threads_per_worker: int = 1
    gpus_per_worker: float = 0.0
    progress: bool = False
    connect_timeout: float = 30.0
    stats: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.connect_timeout <= 0:
            raise ConfigError(f"connect_timeout (--connect-timeout) must be > 0; got "
                              f"{self.connect_timeout}.")
        if self.num_workers is not None and self.num_workers < 1:
            raise ConfigError(f"num_workers (--workers) must be >= 1; got {self.num_workers}.")
        if self.threads_per_worker < 1:
            raise ConfigError(f"threads_per_worker must be >= 1; got {self.threads_per_worker}.")

    def init(self) -> Any:
        """Start or join Ray (once per process); returns the ``ray`` module."""
        ray = require_ray()
        if not ray.is_initialized():
            t0 = time.perf_counter()
            common = {"include_dashboard": False, "configure_logging": False,
                      "log_to_driver": False}
            if self.address is None:
                n = (self.num_workers or os.cpu_count() or 1) * self.threads_per_worker
                ray.init(num_cpus=n, _node_ip_address="127.0.0.1",
                         object_store_memory=256 * 1024**2, **common)
            else:
                self._join(ray, common)
            self.stats["startup_seconds"] = round(time.perf_counter() - t0, 3)
        return ray

    def _cannot_join(self, why: str) -> ConfigError:
        return ConfigError(
            f"Cannot join the Ray cluster at --address {self.address!r}: {why}. Check the "
            "head's address and port ('ray status' on the head; the default port is 6379, "
            "ray://HOST:10001 for Ray Client), start one with 'ray start --head' (and 'ray "
            "start --address HEAD:6379' on the other nodes), use --address auto on a node of "
            "the cluster, or drop --address for a local Ray.")

    def _join(self, ray: Any, common: dict[str, Any]) -> None:
        """Join ``self.address`` within about ``connect_timeout`` seconds, or one clear error.

        Ray itself retries a wrong address for minutes (20 GCS connection attempts of about
        40 s each). So the head's port is first probed over TCP (a closed port or an
        unreachable host fails at once or after ``connect_timeout``), and Ray's attempts
        are capped (``RAY_gcs_server_port_wait_time_s``, unless set) for a port that
        answers but is not a Ray head.
        """
        import socket

        target: str | None = self.address
        if self.address == "auto":  # RAY_ADDRESS, or the cluster 'ray start' last recorded
            from ray._private.services import canonicalize_bootstrap_address

            try:
                target = canonicalize_bootstrap_address("auto")
            except ConnectionError:
                raise self._cannot_join("no Ray cluster runs on this node (RAY_ADDRESS is "
                                        "unset and 'ray start' recorded none)") from None
        if target is not None:
            hostport = target.split("://", 1)[-1].rsplit("/", 1)[0]
            host, _, port = hostport.rpartition(":")
            if not host or not port.isdigit():
                raise self._cannot_join(f"{target!r} is not HOST:PORT")
            try:
                socket.create_connection((host.strip("[]"), int(port)),
                                         timeout=self.connect_timeout).close()
            except ConnectionRefusedError:
                raise self._cannot_join(f"nothing listens on {host}:{port}") from None
            except TimeoutError:
                raise self._cannot_join(f"no answer from {host}:{port} within "
                                        f"{self.connect_timeout:g} s") from None
            except OSError as e:  # unknown host, no route, ...
                raise self._cannot_join(f"{host}:{port}: {e.strerror or e}") from None
        var = "RAY_gcs_server_port_wait_time_s"  # GCS connection attempts, about 1 s each
        ours = var not in os.environ  # plus Ray's own per-attempt timeouts
        if ours:
            os.environ[var] = str(max(1, int(self.connect_timeout // 30)))
        try:
            ray.init(address=self.address, **common)
        except (ConnectionError, RuntimeError, ValueError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise self._cannot_join(first[:200]) from None
        finally:
            if ours:
                os.environ.pop(var, None)

    def workers(self, ray: Any) -> int:
        if self.num_workers is not None:
            return self.num_workers
        cpus = float(ray.cluster_resources().get("CPU", 1.0))
        return max(1, int(cpus // self.threads_per_worker))

    def _actor(self, ray: Any, cls: type) -> Any:
        return ray.remote(num_cpus=self.threads_per_worker, num_gpus=self.gpus_per_worker,
                          max_restarts=0)(cls)


def _set_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)


class _EncodeWorker:
    """One actor: one encoder, many shards."""

    def __init__(self, catalog: Catalog, key: str, modality: str, options: dict[str, Any],
                 threads: int) -> None:
        from befa_viz.encoders import create_encoder

        _set_threads(threads)
        self.catalog = catalog
        self.encoder = create_encoder(key, modality=modality, **options)

    def run(self, k: int, shard: tuple[int, int], kwargs: dict[str, Any]) -> dict[str, Any]:
        from befa_viz.encoders.store import encode_catalog

        t0, wall0, cpu0 = time.perf_counter(), time.time(), time.process_time()
        encode_catalog(self.catalog, self.encoder, shard=shard, merge=False, progress=False,
                       **kwargs)
        return _task_result(k, t0, wall0, cpu0)


def _task_result(k: int, t0: float, wall0: float, cpu0: float, **extra: Any
                 ) -> dict[str, Any]:
    return {"k": k, "seconds": time.perf_counter() - t0, "start": wall0,
            "cpu_seconds": time.process_time() - cpu0, "pid": os.getpid(),
            "rss_mb": _peak_rss_mb(), **extra}


def _cause(ray: Any, err: Exception) -> BaseException:
    """The worker's own exception (a BefaVizError, Ctrl-C) rather than Ray's wrapper."""
    cause = getattr(err, "cause", None)
    if isinstance(cause, (BefaVizError, KeyboardInterrupt)):
        return cause
    return err


def _run_pool(ray: Any, engine: RayEngine, make_actor: Callable[[], Any], n_workers: int,
              tasks: Sequence[tuple[Any, ...]], sizes: Sequence[int], desc: str, unit: str,
              kept: Callable[[], str]) -> list[dict[str, Any]]:
    """Run ``actor.run(*task)`` over an actor pool; a bar counts ``sizes`` of finished tasks."""
    from ray.util import ActorPool

    engine.stats["pool_start"] = time.time()
    actors = [make_actor() for _ in range(min(n_workers, len(tasks)))]
    pool = ActorPool(actors)
    bar = None
    if engine.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=int(sum(sizes)), desc=desc, unit=unit)
    out: list[dict[str, Any]] = []
    try:
        for k, task in enumerate(tasks):
            pool.submit(lambda a, v: a.run.remote(*v), (k, *task))
        while pool.has_next():
            try:
                res = pool.get_next_unordered()
            except ray.exceptions.RayTaskError as e:
                raise _cause(ray, e) from None
            except ray.exceptions.RayActorError as e:  # e.g. Ray's memory monitor killed it
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise RayWorkerLost(
                    f"A Ray worker of '{desc}' died ({first[:200]}); {kept()}, a rerun "
                    "resumes. If it ran out of memory, use fewer workers (--workers) or a "
                    "smaller batch (--batch-size).") from None
            out.append({**res, "size": sizes[res["k"]]})
            if bar is not None:
                bar.update(sizes[res["k"]])
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted; {kept()}, rerun resumes") from None
    finally:
        if bar is not None:
            bar.close()
        for a in actors:
            ray.kill(a)
        if len(out) < len(tasks):  # stopped early: wait until the actors are gone, so that
            for a in actors:  # nothing is written after the error reaches the caller
                try:
                    ray.get(a.__ray_ready__.remote(), timeout=30)
                except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
                    pass  # dead, as asked (or still dying after 30 s: Ray's to finish)
    return out


def _summarise(engine: RayEngine, results: list[dict[str, Any]], n_workers: int,
               n_tasks: int, seconds: float) -> None:
    """Job figures: wall, summed task and task CPU seconds (the last is robust to other
    load on the machine), peak RSS per worker, and start-up apart
    from steady state: ``actor_start_seconds`` (pool created → the last actor's first task
    starts: process, imports, encoder and runs) and ``steady_items_per_min`` (the workers'
    items per second of task time, summed over workers: the rate once actors are warm)."""
    rss: dict[int, float] = {}
    busy: dict[int, float] = {}
    items: dict[int, int] = {}
    first: dict[int, float] = {}
    for r in results:
        p = r["pid"]
        rss[p] = max(rss.get(p, 0.0), float(r["rss_mb"]))
        busy[p] = busy.get(p, 0.0) + float(r["seconds"])
        items[p] = items.get(p, 0) + int(r["size"])
        first[p] = min(first.get(p, math.inf), float(r["start"]))
    pool_start = engine.stats.pop("pool_start", None)
    engine.stats.update(
        workers=n_workers, tasks=n_tasks, items=sum(items.values()), seconds=round(seconds, 3),
        worker_seconds=round(sum(busy.values()), 3),
        worker_cpu_seconds=round(sum(float(r.get("cpu_seconds", 0.0)) for r in results), 3),
        steady_items_per_min=round(sum(60.0 * items[p] / busy[p] for p in busy if busy[p] > 0),
                                   2),
        peak_rss_mb={str(p): round(v, 1) for p, v in sorted(rss.items())})
    if pool_start is not None and first:
        engine.stats["actor_start_seconds"] = round(max(first.values()) - pool_start, 3)


def encode_catalog_ray(
    catalog: Catalog,
    encoder_key: str,
    *,
    modality: str,
    engine: RayEngine,
    dataset_fingerprint: str,
    cache: Cache,
    dataset_name: str,
    encoder_options: dict[str, Any] | None = None,
    batch_size: int = 32,
    chunk_size: int = 512,
    device: str = "cpu",
    missing: str = "error",
    text_field: str = "text",
    _on_batch: Callable[[int], None] | None = None,
) -> Any:  # -> FeatureTable
    """Encode a catalog into the feature store on a pool of Ray actors.

    The entry (key, manifest, chunk grid, files) is exactly the one
    :func:`~befa_viz.encoders.store.encode_catalog` writes for the same arguments; a complete
    entry is reused, a partial one (interrupted, here or single-process) is resumed.

    Args:
        catalog: The items (shipped once to every actor).
        encoder_key: ``backend:model[:weights]``; every actor builds this encoder once.
        modality: ``"image"`` or ``"text"``.
        engine: Where to run.
        dataset_fingerprint: As in ``encode_catalog``.
        cache: The feature cache (a folder every worker can write).
        dataset_name: Sub-folder of the cache.
        encoder_options: Extra ``create_encoder`` options (``resize``, ``pad_fill``).
        batch_size: Items per forward pass.
        chunk_size: Items per resumable chunk (a new entry only; a resumed one keeps its grid).
        device: Torch device inside the workers.
        missing: ``"error"`` or ``"zeros"``.
        text_field: Text encoders: which text.

    Returns:
        The complete :class:`~befa_viz.encoders.store.FeatureTable`.

    Raises:
        MissingDependencyError: Ray is not installed.
        DataError: As ``encode_catalog`` (raised by the worker that met it).
    """
    from befa_viz.encoders import create_encoder
    from befa_viz.encoders.store import (
        _PARTIAL,
        _PLAN,
        _atomic_json,
        _chunk_path,
        _chunks,
        encode_catalog,
        merge_features,
    )

    ray = engine.init()
    t0 = time.perf_counter()
    opts = dict(encoder_options or {})
    encoder = create_encoder(encoder_key, modality=modality, **opts)
    kwargs: dict[str, Any] = {
        "dataset_fingerprint": dataset_fingerprint, "cache": cache, "dataset_name": dataset_name,
        "batch_size": batch_size, "chunk_size": chunk_size, "device": device,
        "missing": missing, "text_field": text_field, "_on_batch": _on_batch}
    # A shard that owns no chunk (index n of n + 1 > number of chunks): the call checks the
    # inputs, reuses a complete entry, or writes the plan (chunk grid, manifest) that every
    # worker then shares, without encoding anything.
    n = len(catalog)
    head = encode_catalog(catalog, encoder, shard=(n, n + 1), merge=False,
                          **{k: v for k, v in kwargs.items() if k != "_on_batch"})
    if head.manifest.get("complete", True) is not False:
        engine.stats.update(workers=0, tasks=0, seconds=round(time.perf_counter() - t0, 3))
        return head
    folder = head.path
    assert folder is not None
    partial = folder / _PARTIAL
    plan = json.loads((partial / _PLAN).read_text())
    ranges = _chunks(int(plan["n_items"]), int(plan["chunk_size"]))
    present = {j for j in range(len(ranges)) if _chunk_path(partial, j).is_file()}
    n_workers = engine.workers(ray)
    n_tasks = min(len(ranges), TASKS_PER_WORKER * n_workers)
    shards = [(i, n_tasks) for i in range(n_tasks)
              if any(j not in present for j in range(i, len(ranges), n_tasks))]
    sizes = [sum(len(ranges[j]) for j in range(i, len(ranges), n_tasks) if j not in present)
             for i, _ in shards]
    if present:
        log.info("resumed: %d of %d chunks were kept by an interrupted run", len(present),
                 len(ranges))
    results: list[dict[str, Any]] = []
    if shards:
        catalog_ref = ray.put(catalog)
        worker = engine._actor(ray, _EncodeWorker)

        def kept() -> str:
            done = sum(_chunk_path(partial, j).is_file() for j in range(len(ranges)))
            return f"{done} of {len(ranges)} chunks kept"

        results = _run_pool(
            ray, engine,
            lambda: worker.remote(catalog_ref, encoder_key, modality, opts,
                                  engine.threads_per_worker),
            n_workers, [(s, kwargs) for s in shards], sizes,
            f"encode {modality} ({encoder_key}) on Ray", "item", kept)
    seconds = time.perf_counter() - t0
    plan["manifest"]["seconds"] = round(seconds, 3)
    _atomic_json(partial / _PLAN, plan)
    table = merge_features(folder)
    table.manifest["reused"] = False
    table.manifest["resumed_chunks"] = len(present)
    _summarise(engine, results, min(n_workers, len(shards)), len(shards), seconds)
    return table
