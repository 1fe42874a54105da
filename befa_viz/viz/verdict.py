"""Every map carries its verdict: does it pass its controls, is it complete, can it be scored?

A heatmap is only evidence when its method passed its controls on the data at hand
(:mod:`befa_viz.benchmark` on a planted-truth dataset; otherwise the per-item sanity check of
:mod:`befa_viz.attribution.sanity`), when its path integral is complete (IG's |δ| small next
to |f(x) − f(b)|) and when there is something to score at all. This module turns those facts
into one :class:`Verdict` per map, which figures, CLI tables and the explorer show next to it:

* ``passes`` — ``True`` / ``False`` from the benchmark row of this method × target × variant
  (``source="benchmark …"``), else from the item's sanity result (``source="sanity"``), else
  ``None`` (``"not checked"``);
* ``relative_delta`` — |δ| / |f(x) − f(b)|, with ``delta_warning`` above
  :data:`COMPLETENESS_WARN`;
* ``unscored`` — why drift / omission / AUC numbers are withheld: an all-zero map, a
  near-constant map, or a target that barely moves between input and baseline (then the
  path integral explains numerical noise).

:func:`pair_ratio` gives the magnitude ratio of a with/without pair (Σ|with| / Σ|without|):
per-map normalisation hid gaps of 10⁷ (DESIGN.md), so figures print it.

The functions only read an :class:`Attribution` and plain tables; nothing here runs a model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

    from befa_viz.attribution.result import Attribution

__all__ = ["COMPLETENESS_WARN", "MIN_TARGET_CHANGE", "Verdict", "benchmark_table_verdicts",
           "map_verdict", "pair_ratio", "unscored_reason"]

#: |δ| above this share of |f(x) − f(b)| gets a visible warning.
COMPLETENESS_WARN = 0.1
#: A target that changes by less than this share of its size between baseline and input
#: "barely moves": its attribution explains rounding noise and is not scored.
MIN_TARGET_CHANGE = 1e-3
#: Relative spread under which a map counts as constant.
_CONSTANT_RTOL = 1e-6


@dataclass(frozen=True)
class Verdict:
    """What a map can be trusted for.

    Attributes:
        passes: Whether its method × target × variant passed the controls (``None``: unknown).
        source: Where ``passes`` comes from (``"benchmark shop (…/table.csv)"``,
            ``"sanity"``, ``"not checked"``).
        detail: The numbers behind ``passes`` (margins and p-values, or ρ with controls).
        relative_delta: |δ| / |f(x) − f(b)| (``None`` for methods without a path).
        unscored: Why no drift / omission / AUC numbers are given (``None``: scored).
    """

    passes: bool | None
    source: str
    detail: str = ""
    relative_delta: float | None = None
    unscored: str | None = None

    @property
    def delta_warning(self) -> bool:
        """Whether the completeness error is above :data:`COMPLETENESS_WARN`."""
        return self.relative_delta is not None and self.relative_delta > COMPLETENESS_WARN

    @property
    def status(self) -> str:
        """``"passes controls"``, ``"FAILS controls"`` or ``"controls not checked"``."""
        if self.passes is None:
            return "controls not checked"
        return "passes controls" if self.passes else "FAILS controls"

    def label(self) -> str:
        """One short line for a figure panel or a table cell.

        Example:
            >>> Verdict(False, "sanity", relative_delta=0.54).label()
            'FAILS controls (sanity) · ⚠ completeness error 54%'
        """
        parts = [f"{self.status} ({self.source.split(' (')[0]})" if self.passes is not None
                 else self.status]
        if self.relative_delta is not None:
            parts.append(f"⚠ completeness error {self.relative_delta:.0%}" if self.delta_warning
                         else f"completeness error {self.relative_delta:.0%}")
        if self.unscored:
            parts.append(f"not scored: {self.unscored}")
        return " · ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "delta_warning": self.delta_warning, "label": self.label()}


def _relative_delta(att: Attribution) -> float | None:
    p = att.params
    if att.delta is None or p.get("target_value") is None or p.get("baseline_value") is None:
        return None
    fx, fb = float(p["target_value"]), float(p["baseline_value"])
    scale = max(abs(fx - fb), 1e-3 * max(abs(fx), abs(fb)), 1e-12)
    return float(abs(att.delta) / scale)


def unscored_reason(att: Attribution) -> str | None:
    """Why a map gets no drift / omission / AUC numbers, or ``None`` if it can be scored.

    Example:
        >>> from befa_viz.testing import synthetic_attribution
        >>> a = synthetic_attribution(0)
        >>> unscored_reason(a) is None
        True
        >>> import dataclasses, numpy as np
        >>> unscored_reason(dataclasses.replace(a, values=np.zeros((32, 32))))
        'all-zero map'
    """
    v = np.abs(np.asarray(att.values, dtype=np.float64))
    if v.size == 0 or not np.all(np.isfinite(v)):
        return "map has no finite values"
    top = float(v.max())
    if top == 0.0:
        return "all-zero map"
    if float(v.max() - v.min()) <= _CONSTANT_RTOL * top:
        return "constant map"
    p = att.params
    if p.get("target_value") is not None and p.get("baseline_value") is not None:
        fx, fb = float(p["target_value"]), float(p["baseline_value"])
        size = max(abs(fx), abs(fb))
        if abs(fx - fb) <= MIN_TARGET_CHANGE * size or abs(fx - fb) < 1e-9:
            return (f"target barely moves between input and baseline "
                    f"(f(x) − f(b) = {fx - fb:.2g} of |f| ≈ {size:.2g})")
    return None


def pair_ratio(without: Attribution, with_: Attribution) -> float | None:
    """Σ|with| / Σ|without| of a pair (``None`` when the without-adapter map is all zero).

    Example:
        >>> from befa_viz.testing import synthetic_attribution
        >>> a = synthetic_attribution(0, "without")
        >>> pair_ratio(a, a)
        1.0
    """
    s0 = float(np.abs(np.asarray(without.values, dtype=np.float64)).sum())
    s1 = float(np.abs(np.asarray(with_.values, dtype=np.float64)).sum())
    return None if s0 == 0 else s1 / s0


def _variant(att: Attribution) -> str:
    v = att.params.get("variant")
    if v in ("without", "with", "model-free"):
        return str(v)
    if att.target in ("content_focus", "random"):
        return "model-free"
    return "with" if att.params.get("adapter") else "without"


def _target_key(att: Attribution) -> str:
    # the benchmark files the with-adapter content score under content_score
    return "content_score" if att.target == "adapted_alignment" else att.target


def benchmark_table_verdicts(table: pd.DataFrame, source: str
                             ) -> dict[tuple[str, str, str], dict[str, Any]]:
    """A benchmark table (``befa-viz benchmark``'s ``table.csv``) keyed by (variant, method,
    target), image rows only.

    Rows carry ``passes`` (the benchmark's rule), the margins and p-values, and ``source``
    (where the table came from, shown with the verdict). The verb that reads the workspace
    is :func:`befa_viz.pipeline.benchmark_verdicts`.
    """
    out: dict[tuple[str, str, str], dict[str, Any]] = {}
    for row in table[table["modality"] == "image"].to_dict("records"):
        row["source"] = source
        out[(str(row["variant"]), str(row["method"]), str(row["target"]))] = row
    return out


def _fmt_row(row: Mapping[str, Any]) -> str:
    def f(k: str, fmt: str) -> str:
        v = row.get(k)
        return "–" if v is None or (isinstance(v, float) and not np.isfinite(v)) \
            else format(float(v), fmt)

    return (f"Δ {f('margin_random_target', '+.3f')} over random target (p {f('p_random_target', '.2g')}),"
            f" {f('margin_input', '+.3f')} over |x − blur(x)| (p {f('p_input', '.2g')}), "
            f"{int(row.get('n_items', 0))} items; the benchmark passes a map beating both "
            f"at p < 0.05")


def map_verdict(att: Attribution, *,
                benchmark: Mapping[tuple[str, str, str], Mapping[str, Any]] | None = None,
                sanity: Mapping[str, Any] | None = None) -> Verdict:
    """The verdict of one map.

    Args:
        att: The map.
        benchmark: :func:`benchmark_table_verdicts` of the map's dataset (preferred when it has
            the map's method × target × variant).
        sanity: The item's sanity result (``{"passes": bool, "rho": {control: ρ}}``, as
            ``ItemExplanation.sanity[variant]``).

    Returns:
        The verdict; ``passes`` is ``None`` when neither source covers the map.
    """
    rel = _relative_delta(att)
    reason = unscored_reason(att)
    row = None if benchmark is None else benchmark.get((_variant(att), att.method,
                                                        _target_key(att)))
    if row is not None and row.get("passes") is not None and not (
            isinstance(row.get("passes"), float) and np.isnan(row["passes"])):
        return Verdict(bool(row["passes"]), str(row.get("source", "benchmark")),
                       _fmt_row(row), rel, reason)
    if sanity is not None and sanity.get("passes") is not None:
        rho = sanity.get("rho", {})
        detail = ", ".join(f"ρ {k} {float(v):.2f}" for k, v in rho.items()
                           if v is not None and np.isfinite(float(v)))
        return Verdict(bool(sanity["passes"]), "sanity", detail, rel, reason)
    return Verdict(None, "not checked", "", rel, reason)
