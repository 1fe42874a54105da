"""Evidence decides the default: rank benchmark rows by their margin over controls.

A benchmark row (:func:`befa_viz.benchmark.run_benchmark`) is one method × target × variant
on one baseline. It **clears the bar** when, over at least ``min_items`` items, its map puts
more mass on the planted product than both controls — the same method on a random target
direction, and the model-free |x − blur(x)| map — with a two-sided sign test p < ``alpha``
against each (default 0.01; the benchmark's own ``passes`` uses 0.05). Rows are ranked by
the *smaller* of the two mean margins (a method is only as good as its worst control).

The recorded default (:mod:`befa_viz.attribution.defaults`) is the best IG-family row that
clears the bar (the mission asks for integrated gradients); when none does, the best row of
any method that does, with the best IG row kept as an alternative one flag away; when nothing
clears the bar, the best row by margin, marked as not passing.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from befa_viz.attribution.defaults import MethodDefault, workspace_defaults_path, write_defaults

__all__ = ["BEHAVIOUR_TARGETS", "IG_FAMILY", "choose_default", "merge_rankings",
           "rank_methods", "record_defaults"]

#: Targets driven by behaviour (the bar is about these).
BEHAVIOUR_TARGETS = ("behaviour_alignment", "content_score")
#: Methods of the integrated-gradients family.
IG_FAMILY = frozenset({"ig", "ig_smooth", "layer_ig", "ig_expected", "ig_blur_path",
                       "ig_region", "ig_similarity"})


def _baseline_of(options: dict[str, Any], method: str) -> str:
    o = options.get(method, {})
    if "references" in o or method == "ig_expected":
        return f"distribution:{o.get('references', 'blur_scales')}"
    if method == "ig_blur_path":
        return "blur_path"
    return str(o.get("baseline", "-"))


def rank_methods(table: Any, options: dict[str, Any] | None = None, *, alpha: float = 0.01,
                 min_items: int = 24) -> Any:
    """Behaviour-driven image rows ranked by their worst margin over the two controls.

    Args:
        table: A benchmark table (``BenchmarkResult.table``).
        options: Method options of the run (``BenchmarkResult.params["options"]``), for the
            baseline column.
        alpha: Sign-test level each control must be beaten at.
        min_items: Fewest items a row needs.

    Returns:
        A DataFrame: variant, method, target, baseline, n_items, ratio, both margins and
        p-values, ``worst_margin``, ``clears_bar``, ``ig_family``; best first.
    """
    import pandas as pd

    t = table[(table["modality"] == "image") & table["target"].isin(BEHAVIOUR_TARGETS)].copy()
    if t.empty:
        return pd.DataFrame(columns=["variant", "method", "target", "baseline", "n_items",
                                     "worst_margin", "clears_bar", "ig_family"])
    opts = options or {}
    t["baseline"] = [_baseline_of(opts, m) for m in t["method"]]
    t["worst_margin"] = np.minimum(t["margin_random_target"], t["margin_input"])
    t["clears_bar"] = ((t["margin_random_target"] > 0) & (t["margin_input"] > 0)
                       & (t["p_random_target"] < alpha) & (t["p_input"] < alpha)
                       & (t["n_items"] >= min_items))
    t["ig_family"] = t["method"].isin(IG_FAMILY)
    cols = [c for c in ("variant", "method", "target", "baseline", "n_items", "ratio",
                        "margin_random_target", "p_random_target", "margin_input", "p_input",
                        "rho_random_target", "worst_margin", "clears_bar", "ig_family",
                        "seconds_per_map") if c in t.columns]
    return t.sort_values(["clears_bar", "worst_margin"], ascending=[False, False])[cols] \
        .reset_index(drop=True)


def merge_rankings(tables: list[Any]) -> Any:
    """Several :func:`rank_methods` tables (e.g. one benchmark run per baseline) as one
    ranking; a row present in several (same variant, method, target, baseline) keeps the
    first."""
    import pandas as pd

    t = pd.concat(tables, ignore_index=True)
    t = t.drop_duplicates(["variant", "method", "target", "baseline"], keep="first")
    return t.sort_values(["clears_bar", "worst_margin"], ascending=[False, False]) \
        .reset_index(drop=True)


def _row_evidence(row: Any, meta: dict[str, Any]) -> dict[str, Any]:
    def plain(v: Any) -> Any:
        v = v.item() if hasattr(v, "item") else v
        return None if isinstance(v, float) and not np.isfinite(v) else v  # strict JSON

    return {**{k: plain(v) for k, v in row.items()}, **meta}


def choose_default(ranked: Any, meta: dict[str, Any] | None = None) -> MethodDefault:
    """The default recipe from :func:`rank_methods`' table (see the module docstring).

    Raises:
        ValueError: If the table has no rows.
    """
    if len(ranked) == 0:
        raise ValueError("No behaviour-driven image rows in the benchmark table; run the "
                         "benchmark with a behaviour target (behaviour_alignment, "
                         "content_score).")
    meta = dict(meta or {})
    ig = ranked[ranked["ig_family"]]
    ig_pass = ig[ig["clears_bar"]]
    any_pass = ranked[ranked["clears_bar"]]
    pick = ig_pass.iloc[0] if len(ig_pass) else (
        any_pass.iloc[0] if len(any_pass) else ranked.iloc[0])
    alt: dict[str, Any] = {}
    if len(ig) and pick["method"] not in IG_FAMILY:
        alt = {str(ig.iloc[0]["method"]): _row_evidence(ig.iloc[0], {})}
    base = str(pick["baseline"])
    steps = meta.pop("n_steps", None)
    return MethodDefault(
        method=str(pick["method"]), target=str(pick["target"]),
        baseline=base if base in ("black", "white", "blur", "mean") else None,
        n_steps=None if pick["method"] in ("layer_ig", "ig_similarity", "ig_region",
                                           "ig_expected", "ig_blur_path") else steps,
        passes=bool(pick["clears_bar"]), evidence=_row_evidence(pick, meta), alternatives=alt)


def record_defaults(result: Any, encoder_key: str, *,
                    workspace: Any = None, alpha: float = 0.01,
                    min_items: int = 24, command: str = "") -> tuple[MethodDefault, Any]:
    """Rank a benchmark result and write the winner to the workspace's defaults file.

    Args:
        result: A :class:`~befa_viz.benchmark.BenchmarkResult`.
        encoder_key: Encoder the benchmark ran (the entry's key).
        workspace: Workspace whose ``defaults/attribution.json`` is written (``None``: only
            return the choice).
        alpha: Sign-test level.
        min_items: Fewest items a row needs.
        command: The command that produced the benchmark (recorded as evidence).

    Returns:
        The chosen recipe and the ranked table.
    """
    params = getattr(result, "params", {})
    ranked = rank_methods(result.table, params.get("options"), alpha=alpha,
                          min_items=min_items)
    meta = {"dataset": getattr(result, "dataset", ""), "runs": getattr(result, "runs", {}),
            "alpha": alpha, "min_items": min_items, "command": command,
            "n_steps": params.get("n_steps")}
    choice = choose_default(ranked, meta)
    if workspace is not None:
        write_defaults(workspace_defaults_path(workspace), {encoder_key: choice})
    return choice, ranked
