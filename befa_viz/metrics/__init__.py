"""Metrics: ranking metrics for recommenders; attribution metrics (drift, omission, ...)."""

from __future__ import annotations

# ---- ranking metrics (train/evaluate helper) -----------------------------------------------
from befa_viz.metrics.ranking import (
    DEFAULT_KS,
    METRIC_NAMES,
    MostPopular,
    metric_keys,
    metrics_from_hits,
    rank_metrics,
    topk_hits,
)

__all__ = [
    "DEFAULT_KS",
    "METRIC_NAMES",
    "MostPopular",
    "metric_keys",
    "metrics_from_hits",
    "rank_metrics",
    "topk_hits",
]
# ---- end ranking metrics -------------------------------------------------------------------

# ---- attribution metrics (attribution helper) ----------------------------------------------
from befa_viz.metrics.attribution import (  # noqa: E402
    crop_box,
    deletion_auc,
    drift,
    drift_omission,
    fit_to_box,
    insertion_auc,
    localisation_margin,
    mass_in_mask,
    omission,
    perturbation_auc,
    pointing_game,
    relevant_region,
    resize_map,
    spearman,
    top_mass_region,
)

__all__ += [
    "crop_box",
    "deletion_auc",
    "drift",
    "drift_omission",
    "fit_to_box",
    "insertion_auc",
    "localisation_margin",
    "mass_in_mask",
    "omission",
    "perturbation_auc",
    "pointing_game",
    "relevant_region",
    "resize_map",
    "spearman",
    "top_mass_region",
]
# ---- end attribution metrics ---------------------------------------------------------------
