"""Attribution for precomputed features (MMRec ``*_feat.npy``; audio; no raw media).

A TikTok-style dataset ships feature vectors, not images or clips, so pixel maps are
impossible; the recommender's content pathway is still a function of those vectors, and two
questions remain answerable:

* **which feature dimensions** drive the target — Captum integrated gradients on the item's
  raw feature vector (the "encoder" is the identity), from a baseline vector (the dataset's
  mean feature by default, or zeros), with the adaptive step schedule;
* **which modality** drives the content score — each modality's share of the content
  pathway's score change from its baseline, (1/|U_i|) Σ_u ⟨u_m, pathway_m(c_m)⟩ −
  the same at the baseline vector, per modality (the modalities add up in the score of every
  built-in backbone, so the shares are exact there).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from befa_viz.attribution._steps import (
    MAX_STEPS,
    STEP_TOL,
    adaptive_steps,
    check_schedule,
    finish_steps,
)
from befa_viz.attribution.result import Attribution
from befa_viz.attribution.targets import _eval_mode, create_target
from befa_viz.errors import ConfigError

__all__ = ["feature_attribution", "modality_shares"]


def _baseline(feats_all: torch.Tensor, n: int, baseline: str) -> torch.Tensor:
    if baseline == "mean":
        return feats_all.mean(0, keepdim=True).expand(n, -1).clone()
    if baseline == "zeros":
        return torch.zeros(n, feats_all.shape[1], dtype=feats_all.dtype,
                           device=feats_all.device)
    raise ConfigError(f"Unknown feature baseline {baseline!r}; accepted: 'mean' (the dataset's "
                      f"mean feature vector) or 'zeros'.")


def feature_attribution(
    model: nn.Module,
    modality: str,
    item_idx: Sequence[int],
    *,
    target: str = "content_score",
    users: Any = None,
    item_ids: Sequence[str] | None = None,
    baseline: str = "mean",
    n_steps: int | None = None,
    max_steps: int = MAX_STEPS,
    tol: float = STEP_TOL,
) -> list[Attribution]:
    """Integrated gradients over an item's precomputed feature dimensions (Captum).

    Args:
        model: Trained recommender holding the features (``model.raw_features(modality)``).
        modality: Any modality the model was built with (``"audio"``, ``"image"``, ...).
        item_idx: Item indices.
        target: ``content_score`` (default), ``behaviour_alignment`` or ``user_score``-free
            targets registered in ``TARGETS`` that take the model's embeddings.
        users: Training users per item (``dataset.interactions.train()``) for
            ``content_score``.
        item_ids: Raw ids for the results.
        baseline: ``"mean"`` (dataset mean vector) or ``"zeros"``.
        n_steps: Integration steps; ``None`` chooses them by the completeness error.
        max_steps: Cap of the adaptive schedule.
        tol: Relative completeness error the adaptive schedule aims for.

    Returns:
        One attribution per item: ``values`` ``[D_m]`` (one score per dimension),
        ``extras["top_dims"]`` the dimensions by decreasing |score|, completeness in
        ``delta``.

    Example:
        >>> from befa_viz.models import MODELS
        >>> from befa_viz.testing import toy_dataset
        >>> ds = toy_dataset()
        >>> m = MODELS.create("vbpr", n_users=ds.n_users, n_items=ds.n_items, dim=4,
        ...                   features={"audio": torch.randn(ds.n_items, 6)})
        >>> a = feature_attribution(m, "audio", [3], users=ds.interactions.train())
        >>> a[0].values.shape, a[0].method
        ((6,), 'ig_features')
    """
    import captum.attr as ca

    check_schedule(n_steps, max_steps, tol)
    raw = model.raw_features(modality).detach()  # type: ignore[operator]  # Recommender
    idx = [int(i) for i in item_idx]
    if not idx:
        raise ConfigError("No items given.")
    bad = [i for i in idx if not 0 <= i < raw.shape[0]]
    if bad:
        raise ConfigError(f"Item index {bad[0]} is out of range for {raw.shape[0]} items.")
    x = raw[idx].float()
    base = _baseline(raw.float(), len(idx), baseline)
    tgt = create_target(target, model=model, modality=modality, item_idx=idx, users=users,
                        dim=int(raw.shape[1]))
    ids = [str(i) for i in (item_ids if item_ids is not None else idx)]
    rows_all = torch.arange(len(idx), device=x.device)

    def f(v: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return tgt(v, rows)

    def run(sel: torch.Tensor, steps: int
            ) -> tuple[torch.Tensor, np.ndarray, np.ndarray, np.ndarray]:
        xs, bs, rows = x[sel], base[sel], rows_all[sel]
        a = ca.IntegratedGradients(f).attribute(xs, baselines=bs, additional_forward_args=(rows,),
                                                n_steps=steps).detach()
        with torch.no_grad():
            fx = f(xs, rows).double().cpu().numpy()
            fb = f(bs, rows).double().cpu().numpy()
        d = a.sum(1).double().cpu().numpy() - (fx - fb)
        return a, d, fx, fb

    with _eval_mode(model, tgt):
        attr, delta, fx, fb, used = adaptive_steps(run, len(idx), n_steps, max_steps, tol,
                                                   x.device)
    out = []
    for b, iid in enumerate(ids):
        vals = attr[b].float().cpu().numpy()
        out.append(Attribution(
            item_id=iid, modality=modality, method="ig_features", target=tgt.name,
            values=vals, delta=float(delta[b]),
            params={"kind": "feature_dims", "baseline": baseline, "item_idx": idx[b],
                    "target_value": float(fx[b]), "baseline_value": float(fb[b]),
                    "modality_key": modality},
            extras={"top_dims": np.argsort(-np.abs(vals), kind="stable").astype(np.int64)}))
    return finish_steps(out, used, delta, fx, fb, tol, n_steps is None, "ig_features")


def modality_shares(model: nn.Module, item_idx: int, *, users: Any = None,
                    baseline: str = "mean") -> dict[str, dict[str, float]]:
    """Each modality's share of the item's content score change from the baseline features.

    Args:
        model: Trained multimodal recommender.
        item_idx: Item index.
        users: Training users (``dataset.interactions.train()``).
        baseline: ``"mean"`` or ``"zeros"`` feature vectors per modality.

    Returns:
        ``{modality: {"score", "baseline_score", "change", "share"}}``; shares of |change|
        sum to 1 (all 0 when nothing changes).
    """
    mods = list(getattr(model, "modalities", []))
    if not mods:
        raise ConfigError(f"{type(model).__name__} has no content modalities.")
    out: dict[str, dict[str, float]] = {}
    with torch.no_grad(), _eval_mode(model):
        for m in mods:
            raw = model.raw_features(m).float()  # type: ignore[operator]  # Recommender
            tgt = create_target("content_score", model=model, modality=m, item_idx=[item_idx],
                                users=users, dim=int(raw.shape[1]))
            s = float(tgt(raw[item_idx: item_idx + 1])[0])
            s0 = float(tgt(_baseline(raw, 1, baseline))[0])
            out[m] = {"score": s, "baseline_score": s0, "change": s - s0}
    total = sum(abs(v["change"]) for v in out.values())
    for v in out.values():
        v["share"] = abs(v["change"]) / total if total > 0 else 0.0
    return out
