"""The side of data-parallel training that the training loop sees.

:func:`befa_viz.train.trainer.fit` asks :func:`active` whether this process is one rank of a
data-parallel job and, if so, calls the hooks of its :class:`DDPContext` (start, shard,
sync_grads, end_epoch; see :mod:`befa_viz.distributed.ddp`, which launches the ranks and
sets the context). This module imports nothing from :mod:`befa_viz.train`, so the training
loop can import it while the launcher imports the training loop: no import circle.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from befa_viz.errors import ConfigError

if TYPE_CHECKING:
    from befa_viz.train.trainer import TrainState

__all__ = ["DDPContext", "active", "set_active", "torchrun_env"]


_ACTIVE: DDPContext | None = None


def active() -> DDPContext | None:
    """The context of the DDP worker this process is, or ``None`` (a plain process)."""
    return _ACTIVE


def set_active(ctx: DDPContext | None) -> None:
    """Mark this process as the rank ``ctx`` of a job (``None``: a plain process again)."""
    global _ACTIVE
    _ACTIVE = ctx


class _NothingToTrain(Exception):
    """Rank 0 finished without training (a complete run, or an error before the first epoch)."""


@dataclass
class DDPContext:
    """One rank of a data-parallel job (the hooks :func:`~befa_viz.train.trainer.fit` calls).

    Attributes:
        rank: This process's rank.
        world_size: Number of processes.
        device: Torch device of this rank's tensors.
        started: Whether :meth:`start` ran (rank 0 tells the others when it never will).
    """

    rank: int
    world_size: int
    device: torch.device
    started: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def start(self, model: torch.nn.Module, state: TrainState | None) -> TrainState | None:
        """Give every rank rank 0's training state and weights; returns the state to use."""
        import torch.distributed as dist

        self.started = True
        box: list[Any] = [("train", state if self.is_main else None)]
        dist.broadcast_object_list(box, src=0)
        kind, state = box[0]
        if kind != "train":
            raise _NothingToTrain
        with torch.no_grad():
            for t in [*model.parameters(), *model.buffers()]:
                if t.layout == torch.strided:  # sparse graph buffers are built from the data
                    dist.broadcast(t.data, src=0)
        return state

    def stop(self) -> None:
        """Rank 0: tell the other ranks that no training follows."""
        import torch.distributed as dist

        if self.is_main and not self.started:
            dist.broadcast_object_list([("stop", None)], src=0)

    def shard(self, users: np.ndarray, pos: np.ndarray, neg: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        """This rank's contiguous share of a batch and its weight (share of the batch size).

        A rank whose share is empty (a last batch smaller than the world) computes the first
        triple with weight 0, so that every rank still joins the gradient all-reduce.
        """
        m = len(users)
        lo, hi = m * self.rank // self.world_size, m * (self.rank + 1) // self.world_size
        if hi == lo:
            return users[:1], pos[:1], neg[:1], 0.0
        return users[lo:hi], pos[lo:hi], neg[lo:hi], (hi - lo) / m

    def sync_grads(self, params: list[torch.nn.Parameter]) -> None:
        """Sum the weighted gradients of all ranks (one flat all-reduce)."""
        import torch.distributed as dist

        grads = []
        for p in params:
            g = p.grad
            if g is None:
                g = torch.zeros_like(p)
            elif g.is_sparse:
                g = g.to_dense()
            grads.append(g.reshape(-1))
        flat = torch.cat(grads)
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        offset = 0
        for p in params:
            n = p.numel()
            p.grad = flat[offset: offset + n].view_as(p).clone()
            offset += n

    def reduce_sum(self, value: float) -> float:
        """Sum a number over the ranks."""
        import torch.distributed as dist

        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return float(t.item())

    def end_epoch(self, state: TrainState) -> None:
        """Adopt rank 0's early-stopping decision and torch RNG state."""
        import torch.distributed as dist

        box: list[Any] = [(bool(state.stopped_early), torch.get_rng_state())]
        dist.broadcast_object_list(box, src=0)
        state.stopped_early = bool(box[0][0])
        torch.set_rng_state(box[0][1])


def torchrun_env() -> tuple[int, int, int, int] | None:
    """``(rank, world size, local rank, local world size)`` when a launcher started this
    process as one rank of a job (``torchrun``, or anything that sets ``RANK``,
    ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``), else ``None``.

    Example:
        >>> torchrun_env() is None  # a plain process
        True
    """
    env = os.environ
    if not all(env.get(k) for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")):
        return None
    try:
        rank, world = int(env["RANK"]), int(env["WORLD_SIZE"])
        local = int(env.get("LOCAL_RANK", rank))
        local_world = int(env.get("LOCAL_WORLD_SIZE", world))
    except ValueError:
        raise ConfigError(f"RANK={env['RANK']!r}, WORLD_SIZE={env['WORLD_SIZE']!r}, "
                          f"LOCAL_RANK, LOCAL_WORLD_SIZE must be integers (set by torchrun)."
                          ) from None
    return rank, world, local, local_world
