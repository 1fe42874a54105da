"""Scale-out: the map-style jobs on Ray, training on several processes with DDP.

* :class:`RayEngine` runs ``encode`` (:func:`encode_catalog_ray`) and the attribution maps of
  ``heatmap --top-drift`` (:func:`befa_viz.pipeline.on_ray.prefill_attributions`) and
  ``benchmark`` (:func:`befa_viz.benchmark.on_ray.prefill_benchmark`) on a pool of Ray
  actors (those two modules say what an actor runs; this package never imports a verb); each actor
  loads its encoder / runs once and writes into the same feature store and attribution cache
  as the single-process path (same keys, same manifests, same resume).
* :func:`train_ddp` trains one run on ``N`` processes with ``torch.distributed`` (gloo on CPU,
  nccl on GPU), or joins a ``torchrun`` job (several nodes) from the environment; see
  :mod:`befa_viz.distributed.ddp`.

Ray is optional (``pip install 'befa-viz[ray]'``); nothing here imports it until a job runs.
"""

from __future__ import annotations

from befa_viz.distributed.context import DDPContext, torchrun_env
from befa_viz.distributed.ddp import train_ddp
from befa_viz.distributed.ray_jobs import (
    RayEngine,
    RayWorkerLost,
    encode_catalog_ray,
    require_ray,
)

__all__ = [
    "DDPContext",
    "RayEngine",
    "RayWorkerLost",
    "encode_catalog_ray",
    "require_ray",
    "torchrun_env",
    "train_ddp",
]
