"""Quantus model- and target-randomisation metrics: re-run an attribution method and compare.

They live here rather than in :mod:`befa_viz.metrics.standard` because they call
:func:`~befa_viz.attribution.attribute` (metrics sit below attribution); the Quantus plumbing
(:class:`~befa_viz.metrics.standard.TargetModel`, map shapes) is shared with that module.

==========================  ================================================================
:func:`model_randomisation` MPRT — Spearman ρ between the map and the same method on the model
                            with its layers re-initialised top-down (cascading; Adebayo et al.
                            2018). High ρ: the map does not depend on the weights.
:func:`random_logit`        RandomLogit — similarity between the map of the target and of a
                            random output direction (Sixt et al. 2020).
==========================  ================================================================
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from befa_viz.attribution.methods import attribute
from befa_viz.attribution.targets import RandomDirectionTarget
from befa_viz.errors import ConfigError
from befa_viz.metrics.standard import TargetModel, _call, _maps, _pixels_np, _quantus

__all__ = ["model_randomisation", "random_logit"]


def _explainer(method: str, options: Mapping[str, Any]) -> Any:
    def explain_func(model: nn.Module, inputs: np.ndarray, targets: Any, **_: Any
                     ) -> np.ndarray:
        tm = model if isinstance(model, TargetModel) else None
        if tm is None:
            raise ConfigError("Quantus passed a model that is not a TargetModel.")
        x = torch.as_tensor(np.asarray(inputs), dtype=torch.float32)
        cls = np.asarray(targets).reshape(-1) if targets is not None else np.zeros(len(x), int)
        heads = [tm.target, *tm.extra]
        out = np.zeros((len(x), 1, *x.shape[2:]), dtype=np.float64)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # completeness: recorded elsewhere
            for k in np.unique(cls):
                res = attribute(method, tm.encoder, heads[int(k)], x, **dict(options))
                for b in np.flatnonzero(cls == k):
                    out[b, 0] = res[b].values
        return out

    return explain_func


def model_randomisation(encoder: nn.Module, target: nn.Module, pixels: torch.Tensor,
                        maps: Sequence[np.ndarray] | np.ndarray, method: str,
                        options: Mapping[str, Any] | None = None, *, cascade: bool = True,
                        seed: int = 0) -> dict[str, np.ndarray]:
    """Quantus MPRT (cascading, top-down): ρ between the map and the randomised model's map.

    Args:
        encoder: The encoder the maps were computed with.
        target: The target (an ``AttributionTarget``; its own layers are randomised first).
        pixels: The inputs ``[B, 3, S, S]`` in ``[0, 1]``.
        maps: The real maps ``[B, S, S]``.
        method: Registered attribution method to re-run on each randomised model.
        options: Its options.
        cascade: ``True``: one ρ per randomised layer, top-down (every layer costs one
            explanation per item); ``False``: only the fully randomised model (Quantus'
            ``skip_layers``; one explanation per item).
        seed: Seed of the re-initialisation.

    Returns:
        Layer name → Spearman ρ per item (the last entry is the fully randomised model).
    """
    q = _quantus()
    a = _maps(maps)
    model = TargetModel(encoder, target).eval()
    metric = q.MPRT(layer_order="top_down", seed=int(seed), skip_layers=not cascade,
                    abs=True, normalise=True, disable_warnings=True)
    x = _pixels_np(pixels)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = metric(model=model, x_batch=x, y_batch=np.zeros(len(x), dtype=int), a_batch=a,
                     explain_func=_explainer(method, options or {}), batch_size=len(x),
                     softmax=False, channel_first=True, device="cpu")
    return {str(k): np.asarray(v, dtype=np.float64) for k, v in dict(out).items()}


def random_logit(encoder: nn.Module, target: nn.Module, pixels: torch.Tensor,
                 maps: Sequence[np.ndarray] | np.ndarray, method: str,
                 options: Mapping[str, Any] | None = None, *, n_random: int = 1,
                 seed: int = 0) -> np.ndarray:
    """Quantus RandomLogit: SSIM between the target's map and a random direction's map.

    The "other classes" are ``n_random`` random unit directions in the encoder's output space
    (:class:`~befa_viz.attribution.targets.RandomDirectionTarget`); low similarity means the
    map depends on what is explained.
    """
    q = _quantus()
    a = _maps(maps)
    dim = int(getattr(encoder, "dim", 0))
    extra = [RandomDirectionTarget(dim, seed=int(seed) + k) for k in range(int(n_random))]
    model = TargetModel(encoder, target, extra).eval()
    metric = q.RandomLogit(num_classes=1 + int(n_random), seed=int(seed), abs=True,
                           normalise=True, disable_warnings=True)
    x = _pixels_np(pixels)
    return _call(metric, model=model, x_batch=x, y_batch=np.zeros(len(x), dtype=int),
                 a_batch=a, explain_func=_explainer(method, options or {}),
                 batch_size=len(x), softmax=False, channel_first=True, device="cpu")
