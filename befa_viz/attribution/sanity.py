"""Sanity checks: is a heatmap about the model and the target, or about the input?

Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018 (arXiv:1810.03292). A first
experiment (DESIGN.md) found pixel IG on a CNN dominated by the input and the baseline: maps of
a randomly initialised network and of random target directions looked like the real ones. So
every method is run next to three controls on the same items, and the real map's Spearman
rank correlation with each control is reported:

* ``"model"`` — model randomisation: the same method and target on a copy of the encoder with
  every parameter re-initialised, and a copy of the recommender whose content projection (and
  adapter) are re-initialised (behaviour embeddings and user vectors kept);
* ``"target"`` — target randomisation: the same method with a random direction in the
  encoder's output space (:class:`~befa_viz.attribution.targets.RandomDirectionTarget`, one per
  item);
* ``"input"`` — input only: the model-free |x − blur(x)| map (``input_x_blur``).

Maps are compared as they are displayed: magnitudes |A|. A control **passes** when the median
ρ over the items is below its threshold (default 0.5 for each: a map sharing less than about a
quarter of its rank variance with the control); the method passes when every control passes.
A ρ that is NaN (a constant map) fails. The thresholds are recorded in the report.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from befa_viz.attribution.explain import content_params, explain, prepare_inputs
from befa_viz.attribution.result import Attribution
from befa_viz.errors import ConfigError
from befa_viz.metrics.attribution import crop_box, spearman

__all__ = ["CONTROLS", "DEFAULT_MAX_RHO", "SanityReport", "randomised_copy", "sanity_check"]

CONTROLS: tuple[str, ...] = ("model", "target", "input")
#: Largest median Spearman ρ with each control that still passes.
DEFAULT_MAX_RHO: dict[str, float] = {"model": 0.5, "target": 0.5, "input": 0.5}


@dataclass(frozen=True)
class SanityReport:
    """Rank correlations of a method's maps with its controls, and the verdict.

    Attributes:
        method: Method name.
        target: Target name.
        item_ids: Items checked.
        rho: Control name → Spearman ρ per item between |real map| and |control map|.
        max_rho: Thresholds used (median ρ must be below).
        median_rho: Control name → median ρ over the items.
        control_passes: Control name → whether it passes.
        passes: Whether every control passes.
        item_passes: Per item, whether its ρ is below every threshold.
        params: How the check was run (seed, method options).
    """

    method: str
    target: str
    item_ids: list[str]
    rho: dict[str, np.ndarray]
    max_rho: dict[str, float]
    median_rho: dict[str, float]
    control_passes: dict[str, bool]
    passes: bool
    item_passes: np.ndarray
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary (NaN becomes ``None``)."""

        def num(v: float) -> float | None:
            return None if not np.isfinite(v) else float(v)

        return {
            "method": self.method, "target": self.target, "item_ids": list(self.item_ids),
            "rho": {k: [num(x) for x in v] for k, v in self.rho.items()},
            "median_rho": {k: num(v) for k, v in self.median_rho.items()},
            "max_rho": dict(self.max_rho), "control_passes": dict(self.control_passes),
            "passes": bool(self.passes), "item_passes": [bool(x) for x in self.item_passes],
            "params": dict(self.params),
        }

    def summary(self) -> str:
        """One line, e.g. ``ig/behaviour_alignment: FAIL (model ρ=0.78 ≥ 0.5, ...)``."""
        parts = [
            f"{k} ρ={self.median_rho[k]:.2f} {'<' if self.control_passes[k] else '≥'} "
            f"{self.max_rho[k]:.2f}" for k in self.rho
        ]
        return (f"{self.method}/{self.target}: {'PASS' if self.passes else 'FAIL'} "
                f"({', '.join(parts)}; {len(self.item_ids)} items)")


def randomised_copy(module: nn.Module, seed: int = 0) -> nn.Module:
    """A deep copy of ``module`` with every parameter re-initialised.

    Submodules with ``reset_parameters`` use it (their default initialisation; normalisation
    layers also reset their running statistics); any other parameter (e.g. a ViT's class and
    position embeddings) is redrawn from a normal with the parameter's own standard deviation.
    The original is not touched and the global RNG state is restored.

    Example:
        >>> lin = nn.Linear(3, 2)
        >>> bool(torch.equal(randomised_copy(lin).weight, lin.weight))
        False
    """
    dup = copy.deepcopy(module)
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(int(seed))
        done: set[int] = set()
        for m in dup.modules():
            if hasattr(m, "reset_parameters") and callable(m.reset_parameters):
                m.reset_parameters()
                done.update(id(p) for p in m.parameters(recurse=False))
            if hasattr(m, "reset_running_stats") and callable(m.reset_running_stats):
                m.reset_running_stats()
        for p in dup.parameters():
            if id(p) in done:
                continue
            std = float(p.std()) if p.numel() > 1 else 0.0
            p.normal_(0.0, std if std > 0 else 0.02)
    return dup


def _randomised_model(model: nn.Module, modality: str, seed: int) -> nn.Module:
    dup = copy.deepcopy(model)
    for name in ("projections", "adapters"):
        mods = getattr(dup, name, None)
        if mods is not None and modality in mods:
            mods[modality] = randomised_copy(mods[modality], seed)
    return dup


def _magnitudes(results: Sequence[Attribution]) -> list[np.ndarray]:
    """|values| inside each map's content box (the pad of a padded input is not compared)."""
    return [crop_box(np.abs(np.asarray(r.values, dtype=np.float64)),
                     r.params.get("content_box") if r.modality == "image" else None)
            for r in results]


def sanity_check(
    encoder: nn.Module,
    model: nn.Module | None,
    items: Any,
    item_idx: Sequence[int] | torch.Tensor | None = None,
    *,
    target: str = "behaviour_alignment",
    method: str = "ig",
    controls: Sequence[str] = CONTROLS,
    max_rho: Mapping[str, float] | None = None,
    seed: int = 0,
    attributions: Sequence[Attribution] | None = None,
    **kwargs: Any,
) -> SanityReport:
    """Compare a method's maps with its model-, target- and input-only controls.

    Args:
        encoder: The frozen encoder.
        model: The trained recommender (``None`` for model-free targets).
        items: PIL images or strings (or prepared inputs), as for
            :func:`~befa_viz.attribution.explain.explain`.
        item_idx: Each item's index in the model.
        target: Target name (a name, so the randomised model can build its own).
        method: Method name.
        controls: Which controls to run (subset of :data:`CONTROLS`).
        max_rho: Thresholds per control (missing ones use :data:`DEFAULT_MAX_RHO`).
        seed: Seed of the re-initialisation and of the random targets.
        attributions: The real maps if already computed (else they are computed here).
        **kwargs: Passed to ``explain`` (``users``, ``user_idx``, ``n_steps``, ``baseline``,
            ...).

    Returns:
        The report; ``passes`` is the verdict.

    Example:
        >>> from befa_viz.testing import tiny_image_encoder, toy_images
        >>> images, _ = toy_images(2)
        >>> rep = sanity_check(tiny_image_encoder(), None, images, target="content_focus",
        ...                    method="input_x_blur")
        >>> rep.control_passes["target"]  # the model-free map ignores the target
        False
    """
    if not isinstance(target, str):
        raise ConfigError("sanity_check needs a target name so the controls can rebuild it.")
    bad = [c for c in controls if c not in CONTROLS]
    if bad or not controls:
        raise ConfigError(f"Unknown sanity controls {bad}; accepted: {', '.join(CONTROLS)}.")
    thresholds = {**DEFAULT_MAX_RHO, **dict(max_rho or {})}
    modality = kwargs.pop("modality", None) or getattr(encoder, "modality", "image")
    if not isinstance(items, (torch.Tensor, Mapping)):
        items = list(items)
    content = content_params(encoder, items, kwargs.pop("content_boxes", None))
    inputs = prepare_inputs(encoder, items)
    common = dict(kwargs, modality=modality, seed=seed)
    if content is not None:
        common["content_boxes"] = [p["content_box"] for p in content]
    real = list(attributions) if attributions is not None else explain(
        encoder, model, inputs, item_idx, target=target, method=method, **common)
    item_ids = [r.item_id for r in real]
    common["item_ids"] = item_ids
    ctrl_maps: dict[str, list[Attribution]] = {}
    for c in controls:
        if c == "model":
            enc_r = randomised_copy(encoder, seed)
            model_r = None if model is None else _randomised_model(model, modality, seed)
            ctrl_maps[c] = explain(enc_r, model_r, inputs, item_idx, target=target,
                                   method=method, **common)
        elif c == "target":
            ctrl_maps[c] = explain(encoder, None, inputs, item_idx, target="random",
                                   method=method, **common)
        else:
            blur = {k: v for k, v in kwargs.items() if k == "blur_sigma"}
            if content is not None:
                blur["content_boxes"] = common["content_boxes"]
            ctrl_maps[c] = explain(encoder, None, inputs, item_idx, target="random",
                                   method="input_x_blur", modality=modality,
                                   item_ids=item_ids, **blur)
    real_m = _magnitudes(real)
    rho = {c: np.array([spearman(a, b)
                        for a, b in zip(real_m, _magnitudes(ctrl_maps[c]), strict=True)])
           for c in controls}
    median = {c: float(np.median(v)) if np.all(np.isfinite(v)) else float("nan")
              for c, v in rho.items()}
    ok = {c: bool(np.isfinite(median[c]) and median[c] < thresholds[c]) for c in controls}
    item_ok = np.array([all(np.isfinite(rho[c][i]) and rho[c][i] < thresholds[c]
                            for c in controls) for i in range(len(real))])
    params = {"seed": int(seed), "controls": list(controls),
              **{k: v for k, v in kwargs.items() if isinstance(v, (int, float, str, bool))}}
    return SanityReport(
        method=method, target=real[0].target if real else target, item_ids=item_ids, rho=rho,
        max_rho={c: float(thresholds[c]) for c in controls}, median_rho=median,
        control_passes=ok, passes=all(ok.values()), item_passes=item_ok, params=params,
    )
