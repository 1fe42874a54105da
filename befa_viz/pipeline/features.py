"""Precomputed features (no raw media): attribution over dimensions and modalities."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from befa_viz.pipeline.runs import _attr_ws, resolve_attribution_run
from befa_viz.workspace import Workspace

__all__ = ["FeatureExplanation", "explain_features"]


@dataclass
class FeatureExplanation:
    """One item's precomputed-feature attribution and its modalities' shares.

    Attributes:
        item_id: Raw item id.
        attribution: IG over the feature dimensions of ``modality`` (see
            :func:`befa_viz.attribution.features.feature_attribution`).
        shares: Each modality's share of the content score change from the baseline.
        verdict: The map's verdict (:func:`befa_viz.viz.verdict.map_verdict`).
        run: The run explained.
    """

    item_id: str
    attribution: Any
    shares: dict[str, dict[str, float]]
    verdict: Any
    run: str

    def top_dims(self, k: int = 5) -> list[tuple[int, float]]:
        vals = np.asarray(self.attribution.values)
        return [(int(d), float(vals[d])) for d in self.attribution.extras["top_dims"][:k]]


def explain_features(
    item_ids: Any,
    *,
    workspace: Workspace | str | os.PathLike[str] | None = None,
    run: Any = None,
    modality: str = "audio",
    target: str = "content_score",
    baseline: str = "mean",
    n_steps: int | None = None,
) -> list[FeatureExplanation]:
    """Explain items of a modality that has only precomputed features (e.g. MMRec audio).

    Pixel or token maps need the raw media; without them the content pathway is still a
    function of the feature vector, so this attributes the target to the feature dimensions
    (Captum IG from the dataset's mean vector) and splits the item's content score by
    modality.

    Args:
        item_ids: Original item id(s).
        workspace: Workspace (or folder).
        run: Run name or folder (default: the newest run with ``modality`` features).
        modality: Feature modality of the run.
        target: ``content_score`` or ``behaviour_alignment``.
        baseline: ``"mean"`` or ``"zeros"`` feature vector.
        n_steps: Integration steps (``None``: chosen by the completeness error).

    Returns:
        One explanation per item.

    Raises:
        ConfigError: If the run has no ``modality`` features.
        DataError: If an item is unknown or (``content_score``) has no training users.
    """
    from befa_viz.attribution.features import feature_attribution, modality_shares
    from befa_viz.errors import ConfigError
    from befa_viz.viz.verdict import map_verdict

    ws = _attr_ws(workspace)
    r = resolve_attribution_run(ws, run, modality)
    if modality not in getattr(r.model, "modalities", []):
        raise ConfigError(f"Run {r.name} has no {modality!r} features (it has "
                          f"{', '.join(r.model.modalities) or 'none'}); pass --run or another "
                          f"--modality.")
    ds = r.dataset
    ids = [item_ids] if isinstance(item_ids, (str, int)) else list(item_ids)
    idx = [ds.catalog.index_of(str(i)) for i in ids]
    users = ds.interactions.train()
    atts = feature_attribution(r.model, modality, idx, target=target, users=users,
                               item_ids=[ds.catalog.item_ids[i] for i in idx],
                               baseline=baseline, n_steps=n_steps)
    return [FeatureExplanation(item_id=a.item_id, attribution=a,
                               shares=modality_shares(r.model, i, users=users,
                                                      baseline=baseline),
                               verdict=map_verdict(a), run=r.name)
            for a, i in zip(atts, idx, strict=True)]
