"""Data-parallel training on several processes with ``torch.distributed``.

:func:`train_ddp` spawns ``N`` processes on this machine (gloo on CPU, nccl with one GPU per
process) or, in a process started by ``torchrun`` (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``
set; any number of nodes), joins the launcher's job from the environment instead; and
:func:`befa_viz.train.trainer.fit` asks :func:`active` whether it runs inside one; if so it
calls the few hooks of :class:`DDPContext`:

* **start** — rank 0 broadcasts its :class:`~befa_viz.train.TrainState` (fresh, or loaded from
  the run's checkpoint on ``--resume``) and its weights, so every rank starts identical;
* **shard** — every rank draws the epoch's permutation and negatives from the same seeded
  generator (so the checkpoint's one RNG state resumes all ranks exactly) and trains on its
  own contiguous share of each mini-batch; its loss is weighted by its share of the batch;
* **sync_grads** — one all-reduce (sum) of the flattened gradients after each backward, so
  every rank takes the optimiser step of the *whole* batch: for batch-mean losses the update
  equals the single-process one up to floating-point summation order;
* **end_epoch** — rank 0 alone evaluates, checkpoints and decides early stopping; it
  broadcasts the stop flag and its torch RNG state (dropout masks stay in step).

What does not scale: graph backbones (LightGCN, FREEDOM, LATTICE, ...) propagate over the
whole graph on every rank for every batch, so only the per-triple part of their work is split;
evaluation runs on rank 0 while the others wait.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from befa_viz.distributed.context import (
    DDPContext,
    _NothingToTrain,
    active,
    set_active,
    torchrun_env,
)
from befa_viz.errors import BefaVizError, ConfigError

if TYPE_CHECKING:
    from befa_viz.data.types import RecDataset
    from befa_viz.train.config import TrainConfig

__all__ = ["DDPContext", "active", "torchrun_env", "train_ddp"]

log = logging.getLogger(__name__)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rank_main(rank: int, world: int, local_rank: int, backend: str, init_method: str,
               dataset: RecDataset, config: TrainConfig, kwargs: dict[str, Any],
               threads: int) -> str | None:
    """One rank's share of a job; returns the run folder (rank 0 sends it to every rank),
    or ``None`` on ranks other than 0 when nothing was trained (e.g. a complete run)."""
    import torch.distributed as dist

    from befa_viz.train.run import select_features, train
    from befa_viz.train.trainer import build_model, fit

    torch.set_num_threads(threads)
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend, init_method=init_method, rank=rank, world_size=world,
                            timeout=timedelta(minutes=30))
    device = torch.device(f"cuda:{local_rank}" if backend == "nccl" else "cpu")
    ctx = DDPContext(rank, world, device)
    set_active(ctx)
    try:
        box: list[Any] = [None]
        if rank == 0:
            try:
                run = train(dataset, config, **kwargs)
            finally:
                ctx.stop()
            box = [str(run.path)]
            if ctx.started:
                dist.broadcast_object_list(box, src=0)
                dist.barrier()  # nobody tears the group down while another still receives
        else:
            features = select_features(config, dataset.n_items, dataset.fingerprint())
            model = build_model(config, dataset, {m: f.values for m, f in features.items()})
            try:
                fit(model, dataset, config)
            except _NothingToTrain:
                return None
            dist.broadcast_object_list(box, src=0)
            dist.barrier()
        return None if box[0] is None else str(box[0])
    finally:
        set_active(None)
        dist.destroy_process_group()


def _worker(rank: int, world: int, backend: str, init_method: str, dataset: RecDataset,
            config: TrainConfig, kwargs: dict[str, Any], threads: int, out: str) -> None:
    """A process of :func:`torch.multiprocessing.spawn` (files report back to the parent)."""
    try:
        path = _rank_main(rank, world, rank, backend, init_method, dataset, config, kwargs,
                          threads)
        if rank == 0:
            Path(out, "result.json").write_text(json.dumps({"path": path}))
    except BefaVizError as e:
        Path(out, f"error-{rank}.json").write_text(json.dumps(
            {"type": type(e).__name__, "message": str(e)}))
        raise


def train_ddp(
    dataset: RecDataset,
    config: TrainConfig,
    *,
    runs_dir: str | os.PathLike[str],
    n_procs: int,
    name: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = False,
    backend: str | None = None,
) -> Any:  # -> befa_viz.train.Run
    """Train one run with ``n_procs`` data-parallel processes on this machine.

    Rank 0 is :func:`befa_viz.train.train` itself (run directory, checkpoints, resume,
    evaluation, provenance); the other ranks only contribute gradients. The run is the same
    kind of folder as a single-process run and resumes with or without DDP.

    In a process started by ``torchrun`` (:func:`torchrun_env`; one or several nodes), this
    process is one rank of the launcher's job: it joins it from the environment
    (``env://``) and spawns nothing; ``n_procs`` must equal ``WORLD_SIZE``, the workspace
    must be at the same path on every node (a shared filesystem), and nccl ranks use GPU
    ``LOCAL_RANK``.

    Args:
        dataset: Dataset with train/valid/test splits.
        config: Resolved training configuration (``device`` ``cpu`` or ``cuda``).
        runs_dir: Parent folder of run directories.
        n_procs: Processes (CPU: each gets ``cpu_count // n_procs`` torch threads; GPU: one
            device each).
        name: Run directory name; default :func:`~befa_viz.train.run_name`.
        resume: As :func:`~befa_viz.train.train`.
        overwrite: As :func:`~befa_viz.train.train`.
        progress: Progress bar (rank 0).
        backend: ``"gloo"`` or ``"nccl"``; default nccl for a CUDA device, else gloo.

    Returns:
        The complete :class:`~befa_viz.train.Run` (under torchrun: on every rank, or
        ``None`` on ranks other than 0 when nothing was trained, e.g. a complete run).

    Raises:
        ConfigError: ``n_procs`` < 1, more GPU processes than GPUs, an unknown backend,
            ``n_procs`` other than torchrun's ``WORLD_SIZE``; the errors of
            :func:`~befa_viz.train.train` (re-raised from rank 0).
    """
    import torch.multiprocessing as mp

    from befa_viz import errors
    from befa_viz.train import Run, train

    if n_procs < 1:
        raise ConfigError(f"--devices must be >= 1; got {n_procs}.")
    launched = torchrun_env()
    if launched is not None and launched[1] > 1:
        return _train_launched(launched, dataset, config, n_procs, backend, {
            "runs_dir": str(runs_dir), "name": name, "resume": resume, "overwrite": overwrite,
            "progress": progress})
    if n_procs == 1:
        return train(dataset, config, runs_dir=runs_dir, name=name, resume=resume,
                     overwrite=overwrite, progress=progress)
    cuda = str(config.device).startswith("cuda")
    backend = backend or ("nccl" if cuda else "gloo")
    if backend not in ("gloo", "nccl"):
        raise ConfigError(f"backend {backend!r} is not one of 'gloo', 'nccl'.")
    if cuda and torch.cuda.device_count() < n_procs:
        raise ConfigError(f"--devices {n_procs} with device {config.device!r} needs {n_procs} "
                          f"GPUs; this machine has {torch.cuda.device_count()}.")
    if backend == "nccl" and not cuda:
        raise ConfigError("backend 'nccl' needs device 'cuda'; use gloo on CPU.")
    threads = max(1, (os.cpu_count() or 1) // n_procs)
    kwargs = {"runs_dir": str(runs_dir), "name": name, "resume": resume,
              "overwrite": overwrite, "progress": progress}
    init_method = f"tcp://127.0.0.1:{_free_port()}"
    with tempfile.TemporaryDirectory(prefix="befa-ddp-") as out:
        try:
            mp.spawn(_worker, args=(n_procs, backend, init_method, dataset, config, kwargs,
                                    threads, out), nprocs=n_procs, join=True)
        except mp.ProcessRaisedException:
            for f in sorted(Path(out).glob("error-*.json")):
                err = json.loads(f.read_text())
                cls = getattr(errors, err["type"], None)
                if isinstance(cls, type) and issubclass(cls, BefaVizError):
                    raise cls(err["message"]) from None
            raise
        path = json.loads(Path(out, "result.json").read_text())["path"]
    return Run.load(path, device=config.device)


def _train_launched(launched: tuple[int, int, int, int], dataset: RecDataset,
                    config: TrainConfig, n_procs: int, backend: str | None,
                    kwargs: dict[str, Any]) -> Any:  # -> befa_viz.train.Run | None
    """This process is one rank of a ``torchrun`` job: join it (``env://``), no spawning."""
    from befa_viz.train import Run

    rank, world, local_rank, local_world = launched
    if n_procs != world:
        raise ConfigError(f"--devices {n_procs} but the launcher started {world} processes "
                          "(WORLD_SIZE); drop --devices under torchrun, or make them equal.")
    cuda = str(config.device).startswith("cuda")
    backend = backend or ("nccl" if cuda else "gloo")
    if backend not in ("gloo", "nccl"):
        raise ConfigError(f"backend {backend!r} is not one of 'gloo', 'nccl'.")
    if backend == "nccl" and not cuda:
        raise ConfigError("backend 'nccl' needs device 'cuda'; use gloo on CPU.")
    if cuda and torch.cuda.device_count() <= local_rank:
        raise ConfigError(f"rank {rank} is local rank {local_rank} but this node has "
                          f"{torch.cuda.device_count()} GPU(s); start at most that many "
                          "processes per node (torchrun --nproc-per-node).")
    threads = max(1, (os.cpu_count() or 1) // max(1, local_world))
    log.info("rank %d of %d (torchrun), %s", rank, world, backend)
    path = _rank_main(rank, world, local_rank, backend, "env://", dataset, config, kwargs,
                      threads)
    return None if path is None else Run.load(path, device=config.device)
