"""Standard attribution metrics from Quantus (Hedström et al., JMLR 2023, arXiv:2202.06861).

befa-viz keeps its own code only where the question is recommendation-specific (drift,
omission, with/without-adapter pairing, :mod:`befa_viz.metrics.attribution`); the textbook
metrics come from Quantus, so their definitions are the community's:

==========================  ================================================================
:func:`relevance_mass`      RelevanceMassAccuracy — share of the (non-negative) map inside the
                            mask (Arras et al. 2022); equals our ``mass_in_mask`` on |A|.
:func:`relevance_rank`      RelevanceRankAccuracy — share of the top-|mask| pixels in the mask.
:func:`pointing`            PointingGame — the map's maximum lies in the mask.
:func:`sparseness`          Sparseness — Gini index of |A| (Chalasani et al. 2020).
:func:`faithfulness_corr`   FaithfulnessCorrelation — correlation of summed attribution with
                            the target drop over random pixel subsets (Bhatt et al. 2020).
==========================  ================================================================

Not adopted: Quantus 0.6's ROAD fails on 3-channel images (it ranks the C·H·W attribution
values but its noisy linear imputation indexes H·W pixels: ``IndexError`` in
``noisy_linear_imputation``), so deletion / insertion AUC stay befa-viz's own
(:func:`~befa_viz.metrics.attribution.deletion_auc`).

Model-based metrics see the attributed scalar as a one-"logit" classifier
(:class:`TargetModel`: the encoder followed by the target, item b of the batch being row b of
the target). The two that re-run an attribution method on a changed model or target (MPRT,
RandomLogit) live in :mod:`befa_viz.attribution.randomisation`: metrics never import
attribution.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from befa_viz.errors import ConfigError, MissingDependencyError

__all__ = ["TargetModel", "faithfulness_corr", "pointing", "relevance_mass", "relevance_rank",
           "sparseness"]


def _quantus() -> Any:
    try:
        import quantus
    except ImportError as e:  # pragma: no cover - quantus is a core dependency
        raise MissingDependencyError(
            "quantus is not installed. Install with: pip install befa-viz (quantus is a core "
            "dependency).") from e
    return quantus


def _maps(a: Sequence[np.ndarray] | np.ndarray, name: str = "maps") -> np.ndarray:
    """Maps ``[B, H, W]`` → Quantus' ``[B, 1, H, W]`` float64."""
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise ConfigError(f"{name} must be [B, H, W] (or one [H, W] map); got shape "
                          f"{arr.shape}.")
    if not np.all(np.isfinite(arr)):
        raise ConfigError(f"{name} contain NaN or inf; Quantus metrics need finite maps.")
    return arr[:, None]


def _masks(m: Sequence[np.ndarray] | np.ndarray, like: np.ndarray) -> np.ndarray:
    arr = np.asarray(m).astype(bool)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.shape != like.shape[:1] + like.shape[2:]:
        raise ConfigError(f"masks have shape {arr.shape} but the maps are "
                          f"{like.shape[:1] + like.shape[2:]}; resize the masks to the maps.")
    if not arr.reshape(arr.shape[0], -1).any(1).all():
        raise ConfigError("A mask is empty; localisation metrics need at least one pixel "
                          "inside every mask.")
    return arr[:, None].astype(np.float64)


def _dummy_x(maps: np.ndarray) -> np.ndarray:
    return np.zeros((maps.shape[0], 3, *maps.shape[2:]), dtype=np.float32)


def _call(metric: Any, **kw: Any) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = metric(**kw)
    return np.asarray(out, dtype=np.float64)


def relevance_mass(maps: Sequence[np.ndarray] | np.ndarray,
                   masks: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    """Quantus RelevanceMassAccuracy of |maps| per map.

    Example:
        >>> m = np.zeros((4, 4)); m[:2, :2] = 1; m[3, 3] = 1
        >>> float(relevance_mass(m, m[None] > 0.5)[0])
        1.0
    """
    a = np.abs(_maps(maps))
    s = _masks(masks, a)
    return _call(_quantus().RelevanceMassAccuracy(abs=True, normalise=False,
                                                  disable_warnings=True),
                 model=None, x_batch=_dummy_x(a), y_batch=np.zeros(len(a), dtype=int),
                 a_batch=a, s_batch=s)


def relevance_rank(maps: Sequence[np.ndarray] | np.ndarray,
                   masks: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    """Quantus RelevanceRankAccuracy: share of the top-|mask| pixels of |A| inside the mask."""
    a = np.abs(_maps(maps))
    s = _masks(masks, a)
    return _call(_quantus().RelevanceRankAccuracy(abs=True, normalise=False,
                                                  disable_warnings=True),
                 model=None, x_batch=_dummy_x(a), y_batch=np.zeros(len(a), dtype=int),
                 a_batch=a, s_batch=s)


def pointing(maps: Sequence[np.ndarray] | np.ndarray,
             masks: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    """Quantus PointingGame: 1.0 where the maximum of |A| lies inside the mask, else 0.0."""
    a = np.abs(_maps(maps))
    s = _masks(masks, a)
    return _call(_quantus().PointingGame(abs=True, normalise=False, disable_warnings=True),
                 model=None, x_batch=_dummy_x(a), y_batch=np.zeros(len(a), dtype=int),
                 a_batch=a, s_batch=s).astype(np.float64)


def sparseness(maps: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    """Quantus Sparseness (Gini index of |A|): 0 for a uniform map, → 1 for one hot pixel."""
    a = np.abs(_maps(maps))
    if not (a.reshape(len(a), -1).max(1) > 0).all():
        raise ConfigError("An all-zero map has no sparseness; drop it (it explains nothing).")
    return _call(_quantus().Sparseness(abs=True, normalise=False, disable_warnings=True),
                 model=None, x_batch=_dummy_x(a), y_batch=np.zeros(len(a), dtype=int),
                 a_batch=a)


class TargetModel(nn.Module):
    """Encoder → target as a classifier Quantus can perturb and randomise.

    Output ``[B, 1 + K]``: column 0 is the target, columns 1..K the ``extra`` targets (e.g.
    random directions, for :func:`random_logit`). Item ``b`` of a batch is row ``b`` of every
    target, so a batch must hold exactly the items the targets were built for, in order.
    """

    def __init__(self, encoder: nn.Module, target: nn.Module,
                 extra: Sequence[nn.Module] = ()) -> None:
        super().__init__()
        self.encoder = encoder
        self.target = target
        self.extra = nn.ModuleList(extra)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = getattr(self.target, "n_items", None)
        if n is not None and x.shape[0] != n:
            raise ConfigError(f"TargetModel got a batch of {x.shape[0]} images for a target "
                              f"built for {n} items; pass batch_size = the number of items.")
        rows = torch.arange(x.shape[0], device=x.device)
        e = self.encoder(x)
        return torch.stack([self.target(e, rows), *[t(e, rows) for t in self.extra]], 1)


def _pixels_np(pixels: torch.Tensor) -> np.ndarray:
    return pixels.detach().float().cpu().numpy()


def faithfulness_corr(encoder: nn.Module, target: nn.Module, pixels: torch.Tensor,
                      maps: Sequence[np.ndarray] | np.ndarray, *, subset_size: int = 224,
                      n_runs: int = 50, seed: int = 0) -> np.ndarray:
    """Quantus FaithfulnessCorrelation: Pearson ρ of Σ attribution vs target drop per subset.

    Args:
        encoder: Encoder.
        target: Target (``AttributionTarget``).
        pixels: Inputs ``[B, 3, S, S]``.
        maps: Maps ``[B, S, S]``.
        subset_size: Pixels set to the baseline (0) per run.
        n_runs: Random subsets per item.
        seed: Seed of the subsets (global RNG state restored).
    """
    q = _quantus()
    a = _maps(maps)
    model = TargetModel(encoder, target).eval()
    x = _pixels_np(pixels)
    metric = q.FaithfulnessCorrelation(
        nr_runs=int(n_runs), subset_size=int(subset_size), perturb_baseline="black",
        abs=False, normalise=False, return_aggregate=False, disable_warnings=True)
    with _np_seed(seed):
        return _call(metric, model=model, x_batch=x, y_batch=np.zeros(len(x), dtype=int),
                     a_batch=a, batch_size=len(x), softmax=False, channel_first=True,
                     device="cpu")


class _np_seed:  # noqa: N801 - used as a context manager, reads like a function
    """Seed numpy's global RNG (Quantus draws subsets from it) and restore it afterwards."""

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)

    def __enter__(self) -> None:
        self.state = np.random.get_state()
        np.random.seed(self.seed)

    def __exit__(self, *exc: object) -> None:
        np.random.set_state(self.state)
